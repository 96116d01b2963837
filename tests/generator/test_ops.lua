-- test_ops.lua: unit tests of generator/poolprop/ops.lua: every builder's kernel (name,
-- geometry, args, source structure), names that follow the parameters, parameter errors,
-- and that the training plans of the models build every op kernel with arguments the
-- plan binds. The kernels' arithmetic is tested in tests/kernels/test_train_ops.c.
-- Run: lua5.4 tests/generator/test_ops.lua <repo root>
local root = arg[1]
assert(root, "usage: test_ops.lua ROOT")
package.path = root .. "/generator/?.lua;" .. root .. "/tests/generator/?.lua;" .. package.path
require("poolprop.files").root = root

local api = require("poolprop.api")
local ops = require("poolprop.ops")

local H = require("harness")
local test, eq, has, raises = H.test, H.eq, H.has, H.raises

-- op -> { params, name, grid, block, args }
local cases = {
  bn_stats = { { N = 2, C = 16, HW = 64 }, "bn_stats_n2c16hw64_v0", { 2, 1, 1 }, 128,
    "y mean invstd running_mean running_var" },
  bn_apply = { { N = 2, C = 5, HW = 49, RELU = 1, ADD = 1, SAVE_BF16 = 1 }, "bn_apply_n2c5hw49_relu_add_bf16_v0",
    { 2, 1, 1 }, 256, "y mean invstd gamma beta residual out mask y_bf16 running_mean running_var" },
  bn_backward = { { N = 3, C = 7, HW = 3000, MASK = 1, BF16 = 1, RES = 1 }, "bn_backward_n3c7hw3000_mask_bf16_res_v0",
    { 1, 1, 1 }, 512, "dout mask y mean invstd gamma dgamma dbeta dy dres" },
  maxpool_fwd = { { N = 2, C = 3, H = 9, W = 11 }, "maxpool_fwd_n2c3h9w11_r3s2p1_v0", { 1, 1, 1 }, 256,
    "x y argmax" },
  maxpool_bwd = { { N = 2, C = 3, H = 9, W = 11, R = 2, STRIDE = 2, PAD = 0 }, "maxpool_bwd_n2c3h9w11_r2s2p0_v0",
    { 3, 1, 1 }, 256, "dy argmax dx" },
  avgpool_fwd = { { N = 3, C = 100, HW = 49 }, "avgpool_fwd_n3c100hw49_v0", { 39, 1, 1 }, 256, "x y" },
  avgpool_bwd = { { N = 3, C = 100, HW = 49 }, "avgpool_bwd_n3c100hw49_v0", { 58, 1, 1 }, 256, "dy dx" },
  fc_fwd = { { N = 256, IN = 2048, OUT = 1000 }, "fc_fwd_n256in2048out1000_v0", { 4, 16, 1 }, 256, "x w b y" },
  fc_bwd_data = { { N = 3, IN = 2048, OUT = 1000 }, "fc_bwd_data_n3in2048out1000_v0", { 1, 32, 1 }, 256, "dy w dx" },
  fc_bwd_weight = { { N = 256, IN = 2048, OUT = 1000 }, "fc_bwd_weight_n256in2048out1000_v0", { 16, 32, 1 }, 256,
    "dy x dw db" },
  softmax_ce = { { N = 256, CLASSES = 1000 }, "softmax_ce_n256k1000_v0", { 1, 1, 1 }, 512, "logits labels loss dlogits" },
  bn_stats_merge = { { C = 64, PARTS = 100, M = 3136 }, "bn_stats_merge_c64parts100m3136_v0", { 64, 1, 1 }, 128,
    "partials mean invstd running_mean running_var" },
  sgd = { { COUNT = 1000 }, "sgd_count1000_v0", { 4, 1, 1 }, 256,
    "params grads momentum_buf lr momentum weight_decay" },
}

test("every builder: name, geometry, args, source structure", function()
  local names = {}
  for op in pairs(ops.builders) do names[#names + 1] = op end
  table.sort(names)
  for _, op in ipairs(names) do
    local c = cases[op]
    assert(c, "no case for builder " .. op)
    local k = ops.kernel(op, c[1])
    eq(k.name, c[2], op .. " name")
    eq(k.op, op, op .. " op")
    eq(table.concat(k.grid, ","), table.concat(c[3], ","), op .. " grid")
    eq(table.concat(k.block, ","), c[4] .. ",1,1", op .. " block")
    eq(table.concat(k.args, " "), c[5], op .. " args")
    has(k.source, 'extern "C" __global__', op .. " entry")
    has(k.source, "PP_KERNEL_EXPORT%(" .. k.name .. "%)", op .. " export")
    has(k.source, "namespace pp_" .. k.name .. " {", op .. " namespace")
    has(k.source, '#line 1 "templates/' .. op .. '.cu"', op .. " line mapping")
    has(k.source, "constexpr int THREADS = " .. c[4] .. ";", op .. " THREADS")
    -- The template's opening comment states what it computes, shapes and the launch.
    has(k.source, "// " .. op .. "%.cu %- ", op .. " template comment")
    has(k.source, "Launch: grid", op .. " launch geometry comment")
    eq(k.source:find("${", 1, true), nil, op .. " placeholders substituted")
  end
  for op in pairs(cases) do assert(ops.builders[op], "case for a missing builder " .. op) end
end)

test("channels-last reductions: CT channels per block (8, or the next power of two >= C)", function()
  for _, c in ipairs { { 3, 4, 1 }, { 8, 8, 1 }, { 33, 8, 5 }, { 1, 1, 1 } } do
    local st = ops.kernel("bn_stats", { N = 2, C = c[1], HW = 64 })
    has(st.source, "constexpr int CT = " .. c[2] .. ";", "bn_stats CT for C = " .. c[1])
    has(st.source, "constexpr int PG = " .. 128 // c[2] .. ";", "bn_stats PG for C = " .. c[1])
    eq(st.grid[1], c[3], "bn_stats grid for C = " .. c[1])
    local bw = ops.kernel("bn_backward", { N = 2, C = c[1], HW = 64 })
    has(bw.source, "constexpr int CT = " .. c[2] .. ";", "bn_backward CT for C = " .. c[1])
    eq(bw.grid[1], c[3], "bn_backward grid for C = " .. c[1])
    local av = ops.kernel("avgpool_fwd", { N = 3, C = c[1], HW = 49 })
    eq(av.block[1], 32 * c[2], "avgpool_fwd block for C = " .. c[1])
    eq(av.grid[1], 3 * c[3], "avgpool_fwd grid for C = " .. c[1])
  end
end)

test("names: identical parameters give identical kernels; each option changes the name", function()
  local a = ops.kernel("bn_apply", { N = 2, C = 3, HW = 5, RELU = 1 })
  local b = ops.kernel("bn_apply", { HW = 5, RELU = true, C = 3, N = 2, EPS = 1e-5 })
  eq(a.name, b.name, "same name")
  eq(a.source, b.source, "same source")
  local seen = {}
  for combo = 0, 15 do
    local k = ops.kernel("bn_apply", { N = 2, C = 3, HW = 5, RELU = combo & 1, ADD = (combo >> 1) & 1,
      SAVE_BF16 = (combo >> 2) & 1, EVAL = (combo >> 3) & 1 })
    assert(not seen[k.name], "duplicate name " .. k.name)
    seen[k.name] = true
  end
  for mask = 0, 2 do
    for bf16 = 0, 1 do
      for res = 0, 1 do
        local k = ops.kernel("bn_backward", { N = 2, C = 3, HW = 5, MASK = mask, BF16 = bf16, RES = res })
        assert(not seen[k.name], "duplicate name " .. k.name)
        seen[k.name] = true
      end
    end
  end
  eq(ops.kernel("bn_stats", { N = 2, C = 3, HW = 5, MOMENTUM = 0.2, EPS = 1e-3 }).name,
    "bn_stats_n2c3hw5_momentum0p2_eps0p001_v0", "float parameters in the name")
  -- A double that rounds to the same float32 as the default gives the default kernel.
  eq(ops.kernel("bn_stats", { N = 2, C = 3, HW = 5, MOMENTUM = 0.1 + 1e-12 }).name, "bn_stats_n2c3hw5_v0",
    "float32-equal parameter")
end)

test("parameter errors name the op and the parameter", function()
  raises(function() ops.kernel("bn_stats", { N = 2, C = 3 }) end, "bn_stats: missing parameter HW", "missing")
  raises(function() ops.kernel("fc_fwd", { N = 2, IN = 0, OUT = 3 }) end,
    "fc_fwd: parameter IN must be a positive integer, got 0", "zero")
  raises(function() ops.kernel("sgd", { COUNT = -5 }) end, "COUNT must be a positive integer, got %-5", "negative")
  raises(function() ops.kernel("sgd", { COUNT = 5, count = 5 }) end, "unknown parameter 'count'", "unknown")
  raises(function() ops.kernel("maxpool_fwd", { N = 1, C = 1, H = 4, W = 4, R = 3, PAD = 2 }) end,
    "PAD = 2 exceeds R/2", "padding")
  raises(function() ops.kernel("softmax_ce", { N = 1, CLASSES = 1.5 }) end, "CLASSES must be a positive integer",
    "fraction")
  raises(function() ops.kernel("nope", {}) end, "unknown op 'nope'", "unknown op")
  local k, msg, kind = api.op_kernel("bn_apply", "{ N = 2, C = 3, HW = 4, EVAL = 3 }")
  eq(k, nil, "api result")
  has(msg, "EVAL must be 0 or 1", "api message")
  eq(kind, "shape", "api kind")
end)

test("training plans build every op kernel, with every argument bound", function()
  local network = require("poolprop.network")
  local policy = require("poolprop.policy")
  local train = require("poolprop.train")
  for _, case in ipairs { { "cifar_resnet8", "2" }, { "resnet18", "4,mode=max" } } do
    local f = assert(io.open(root .. "/models/" .. case[1] .. ".lua"))
    local text = f:read("a")
    f:close()
    local cifar = case[1]:find("cifar") ~= nil
    local g = network.instantiate(network.load_string(text, case[1]), { batch = 3, classes = 10,
      height = cifar and 32 or 64, width = cifar and 32 or 64 })
    for _, ptext in ipairs { case[2], case[2] .. ",bn=bf16", "baseline", "1,relu=full" } do
      local p = policy.parse(ptext, { file = "policy", line = 0 })
      do
        policy.resolve(p, g, { file = "policy", line = 0 })
        local plan = train.build(g, p, { sources = true })
        local seen = {}
        for _, s in ipairs(plan.steps) do
          assert(s.kernel and s.kernel.source, s.op .. ": no kernel source")
          eq(#s.refs, #s.kernel.args, s.kernel.name .. " refs")
          seen[s.op] = true
        end
        -- Every BN input here is a conv output: its statistics come from the conv's epilogue.
        eq(seen.bn_stats, nil, case[1] .. ": no separate pass over conv outputs for BN statistics")
        for _, op in ipairs { "bn_stats_merge", "bn_apply", "bn_backward", "maxpool_fwd", "maxpool_bwd", "avgpool_fwd",
          "avgpool_bwd", "fc_fwd", "fc_bwd_data", "fc_bwd_weight", "softmax_ce", "sgd" } do
          if not (cifar and op:find("maxpool")) then assert(seen[op], case[1] .. ": plan lacks " .. op) end
        end
      end
    end
  end
end)

H.finish()
