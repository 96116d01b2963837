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
  -- 1000 elements: 4 blocks of 256, the last mask word partial.
  relu_mask_fwd = { { COUNT = 1000 }, "relu_mask_fwd_count1000_v0", { 4, 1, 1 }, 256, "x y mask" },
  relu_mask_bwd = { { COUNT = 1000 }, "relu_mask_bwd_count1000_v0", { 4, 1, 1 }, 256, "dy mask dx" },
  maxpool_fwd = { { N = 2, C = 3, H = 9, W = 11 }, "maxpool_fwd_n2c3h9w11_r3s2p1_v0", { 1, 1, 1 }, 256,
    "x y argmax" },
  -- 7x9 by 4: 2x3 windows per image, 2*6*5 = 60 threads; 9x11 max-pooled to 5x6, by 2: 3x3.
  bn_apply_pool = { { N = 2, C = 5, H = 7, W = 9, RELU = 1, ADD = 1, SAVE_BF16 = 1, POOL_F = 4, POOL_F2 = 2 },
    "bn_apply_pool_n2c5h7w9_relu_add_bf16_f4f2avg_v0", { 1, 1, 1 }, 256,
    "y mean invstd gamma beta residual out mask y_bf16 xp xp2" },
  maxpool_fwd_pool = { { N = 2, C = 3, H = 9, W = 11, POOL_F = 2, POOL_MAX = 1 },
    "maxpool_fwd_pool_n2c3h9w11_r3s2p1_f2max_v0", { 1, 1, 1 }, 256, "x y argmax xp xp2" },
  maxpool_bwd = { { N = 2, C = 3, H = 9, W = 11, R = 2, STRIDE = 2, PAD = 0 }, "maxpool_bwd_n2c3h9w11_r2s2p0_v0",
    { 3, 1, 1 }, 256, "dy argmax dx" },
  avgpool_fwd = { { N = 3, C = 100, HW = 49 }, "avgpool_fwd_n3c100hw49_v0", { 39, 1, 1 }, 256, "x y" },
  avgpool_bwd = { { N = 3, C = 100, HW = 49 }, "avgpool_bwd_n3c100hw49_v0", { 58, 1, 1 }, 256, "dy dx" },
  fc_fwd = { { N = 256, IN = 2048, OUT = 1000 }, "fc_fwd_n256in2048out1000_v0", { 4, 16, 1 }, 256, "x w b y" },
  fc_bwd_data = { { N = 3, IN = 2048, OUT = 1000 }, "fc_bwd_data_n3in2048out1000_v0", { 1, 32, 1 }, 256, "dy w dx" },
  fc_bwd_weight = { { N = 256, IN = 2048, OUT = 1000 }, "fc_bwd_weight_n256in2048out1000_v0", { 16, 32, 1 }, 256,
    "dy x dw db" },
  softmax_ce = { { N = 256, CLASSES = 1000 }, "softmax_ce_n256k1000_v0", { 1, 1, 1 }, 512,
    "logits labels loss dlogits" },
  bn_stats_merge = { { C = 64, PARTS = 100, M = 3136 }, "bn_stats_merge_c64parts100m3136_v0", { 64, 1, 1 }, 128,
    "partials mean invstd running_mean running_var" },
  bn_stats_part = { { N = 2, C = 16, HW = 64, SLICES = 3 }, "bn_stats_part_n2c16hw64_s3_v0", { 2, 3, 1 }, 128,
    "y partials" },
  bn_backward_sums = { { N = 3, C = 7, HW = 3000, SLICES = 5, MASK = 1, BF16 = 1 },
    "bn_backward_sums_n3c7hw3000_s5_mask_bf16_v0", { 1, 5, 1 }, 256, "dout mask y mean invstd partials" },
  bn_backward_dx = { { N = 3, C = 7, HW = 3000, SLICES = 5, MASK = 1, BF16 = 1, RES = 1 },
    "bn_backward_dx_n3c7hw3000_s5_mask_bf16_res_v0", { 1, 5, 1 }, 256,
    "dout mask y mean invstd gamma partials dgamma dbeta dy dres" },
  softmax_ce_rows = { { N = 256, CLASSES = 1000 }, "softmax_ce_rows_n256k1000_v0", { 256, 1, 1 }, 32,
    "logits labels rows dlogits" },
  softmax_ce_reduce = { { N = 256 }, "softmax_ce_reduce_n256_v0", { 1, 1, 1 }, 512, "rows loss" },
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

-- ResNet-50 at batch 64, 224x224: the BN shapes (C, H*W) of its stages.
local resnet50_bn = { { 64, 112 * 112 }, { 64, 56 * 56 }, { 128, 56 * 56 }, { 256, 56 * 56 }, { 128, 28 * 28 },
  { 512, 28 * 28 }, { 256, 14 * 14 }, { 1024, 14 * 14 }, { 512, 7 * 7 }, { 2048, 7 * 7 } }

test("sliced BN reductions: enough blocks for a 132-SM GPU, slices of at least 512 rows", function()
  for _, c in ipairs(resnet50_bn) do
    local C, HW, N = c[1], c[2], 64
    local m = N * HW
    local s = ops.bn_slices(m, C)
    local one = ops.kernel("bn_backward", { N = N, C = C, HW = HW, MASK = 1 })
    local what = string.format("C %d HW %d", C, HW)
    assert(s > 1, what .. ": not sliced")
    assert(m // s >= 512, what .. ": slices under 512 rows")
    for _, op in ipairs { "bn_backward_sums", "bn_backward_dx", "bn_stats_part" } do
      local k = ops.kernel(op, { N = N, C = C, HW = HW, SLICES = s, MASK = op ~= "bn_stats_part" and 1 or nil })
      eq(k.grid[1], one.grid[1], what .. " " .. op .. " channel blocks")
      eq(k.grid[2], s, what .. " " .. op .. " slices")
      -- 264 blocks (2 per SM), unless the 512-row minimum stops the slicing first.
      assert(k.grid[1] * k.grid[2] >= 264 or (m // (s + 1)) < 512, what .. ": " .. k.grid[1] * k.grid[2] .. " blocks")
      has(k.source, "constexpr int SLICES = " .. s .. ";", what .. " " .. op .. " SLICES")
    end
  end
  -- C = 64 at 112x112: 8 channel blocks before, 8 x 33 = 264 after.
  eq(ops.bn_slices(64 * 112 * 112, 64), 33, "C 64 at 112x112")
  eq(ops.bn_slices(64 * 7 * 7, 2048), 2, "C 2048 at 7x7")
  -- Small channels: one pass (the existing kernels).
  eq(ops.bn_slices(2 * 64, 16), 1, "M 128")
  eq(ops.bn_slices(1023, 3), 1, "M 1023")
  eq(ops.bn_slices(1024, 3), 2, "M 1024: two slices of 512")
  -- Many channel blocks already: no slicing.
  eq(ops.bn_slices(1 << 20, 4096), 1, "C 4096")
  -- The sliced kernels take as many threads as a slice's rows call for.
  eq(ops.kernel("bn_stats_part", { N = 64, C = 64, HW = 49, SLICES = 6 }).block[1], 128, "523 rows per slice")
  eq(ops.kernel("bn_stats_merge", { C = 64, PARTS = 33, M = 802816, SHIFT = 1 }).name,
    "bn_stats_merge_c64parts33m802816_shift_v0", "SHIFT in the name")
  has(ops.kernel("bn_stats_merge", { C = 64, PARTS = 33, M = 802816, SHIFT = 1 }).source, "constexpr int SHIFT = 1;",
    "SHIFT constant")
  raises(function() ops.kernel("bn_stats_part", { N = 1, C = 3, HW = 4, SLICES = 5 }) end,
    "bn_stats_part: SLICES = 5 exceeds N%*HW = 4", "too many slices")
  raises(function() ops.kernel("bn_backward_dx", { N = 1, C = 3, HW = 4, SLICES = 0 }) end,
    "SLICES must be a positive integer", "zero slices")
end)

test("softmax: one block up to 16 rows, one warp per row over many blocks beyond", function()
  eq(ops.softmax_multi_block(16), false, "16 rows")
  eq(ops.softmax_multi_block(17), true, "17 rows")
  eq(ops.kernel("softmax_ce_rows", { N = 64, CLASSES = 1000 }).grid[1], 64, "batch 64: 64 blocks")
  -- No shared-memory row table: no row limit.
  eq(ops.kernel("softmax_ce_rows", { N = 5000, CLASSES = 10 }).grid[1], 5000, "5000 rows")
  eq(ops.kernel("softmax_ce_reduce", { N = 5000 }).block[1],
    ops.kernel("softmax_ce", { N = 16, CLASSES = 10 }).block[1], "the reduction adds with softmax_ce's thread count")
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
        eq(seen.bn_stats_part, nil, case[1] .. ": no separate pass over conv outputs for BN statistics")
        for _, op in ipairs { "bn_stats_merge", "bn_apply", "bn_backward", "maxpool_fwd", "maxpool_bwd", "avgpool_fwd",
          "avgpool_bwd", "fc_fwd", "fc_bwd_data", "fc_bwd_weight", "softmax_ce", "sgd" } do
          -- The pool-save forms stand for bn_apply / maxpool_fwd where they feed a pooled conv.
          if not (cifar and op:find("maxpool")) then
            assert(seen[op] or seen[op .. "_pool"], case[1] .. ": plan lacks " .. op)
          end
        end
      end
    end
  end
end)

test("pool-save forms: constants, names, factor errors", function()
  local k = ops.kernel("bn_apply_pool", { N = 2, C = 48, H = 7, W = 9, POOL_F = 8, POOL_F2 = 4, POOL_MAX = 1 })
  eq(k.name, "bn_apply_pool_n2c48h7w9_f8f4max_v0", "name")
  for _, c in ipairs { "CG = 16", "POOL_F = 8", "POOL_F2 = 4", "HP = 1", "WP = 2", "HP2 = 2", "WP2 = 3",
    "WINDOWS = 4", "XH = 7", "XW = 9" } do
    has(k.source, "constexpr int " .. c .. ";", c)
  end
  has(k.source, '#line 1 "templates/pool_save.cuh"', "pool_save part")
  has(k.source, '#line 1 "templates/bn_apply_value.cuh"', "shared BN value")
  has(ops.kernel("bn_apply", { N = 2, C = 3, HW = 5 }).source, '#line 1 "templates/bn_apply_value.cuh"',
    "bn_apply shares the value")
  has(ops.kernel("bn_apply_pool", { N = 1, C = 64, H = 3, W = 3, POOL_F = 2 }).source, "constexpr int CG = 32;",
    "CG 32")
  has(ops.kernel("bn_apply_pool", { N = 1, C = 3, H = 3, W = 3, POOL_F = 2 }).source, "constexpr int CG = 1;", "CG 1")
  has(ops.kernel("maxpool_fwd", { N = 1, C = 3, H = 5, W = 5 }).source, '#line 1 "templates/maxpool_window.cuh"',
    "maxpool_fwd shares the window")
  raises(function() ops.kernel("bn_apply_pool", { N = 1, C = 3, H = 4, W = 4, POOL_F = 2, POOL_F2 = 2 }) end,
    "POOL_F2 = 2 must be 1 or a proper divisor of POOL_F = 2", "equal factors")
  raises(function() ops.kernel("maxpool_fwd_pool", { N = 1, C = 3, H = 9, W = 9, POOL_F = 2, POOL_F2 = 4 }) end,
    "POOL_F2 = 4 must be 1 or a proper divisor", "larger second factor")
  raises(function() ops.kernel("bn_apply_pool", { N = 1, C = 3, H = 4, W = 4 }) end, "missing parameter POOL_F",
    "no factor")
  raises(function() ops.kernel("bn_apply_pool", { N = 1, C = 3, H = 4, W = 4, POOL_F = 3 }) end,
    "POOL_F must be one of 2, 4, 8", "factor 3")
end)

test("bf16 activation storage: ACT_BF16 names, signatures and option errors", function()
  -- Every op with the option: ACT_BF16 = 1 appends _actbf16, keeps the args, emits the
  -- constant; ACT_BF16 = 0 is the default kernel (its name and source).
  local with_act = {
    bn_stats = { N = 2, C = 5, HW = 49 },
    bn_stats_part = { N = 2, C = 5, HW = 49, SLICES = 3 },
    bn_apply = { N = 2, C = 5, HW = 49, RELU = 1, ADD = 1 },
    bn_apply_pool = { N = 2, C = 5, H = 7, W = 9, RELU = 1, POOL_F = 4, POOL_F2 = 2 },
    bn_backward = { N = 3, C = 7, HW = 30, MASK = 2, RES = 1 },
    bn_backward_sums = { N = 3, C = 7, HW = 30, SLICES = 5, MASK = 1 },
    bn_backward_dx = { N = 3, C = 7, HW = 30, SLICES = 5, MASK = 1, RES = 1 },
    maxpool_fwd = { N = 2, C = 3, H = 9, W = 11 },
    maxpool_fwd_pool = { N = 2, C = 3, H = 9, W = 11, POOL_F = 2 },
    maxpool_bwd = { N = 2, C = 3, H = 9, W = 11 },
    avgpool_fwd = { N = 3, C = 100, HW = 49 },
    avgpool_bwd = { N = 3, C = 100, HW = 49 },
  }
  for op, params in pairs(with_act) do
    local fp32 = ops.kernel(op, params)
    local copy = {}
    for k, v in pairs(params) do copy[k] = v end
    copy.ACT_BF16 = 0
    local zero = ops.kernel(op, copy)
    eq(zero.name, fp32.name, op .. ": ACT_BF16 = 0 is the default kernel")
    eq(zero.source, fp32.source, op .. ": ACT_BF16 = 0 source")
    eq(fp32.name:find("actbf16", 1, true), nil, op .. ": no storage tag on the fp32 kernel")
    has(fp32.source, "constexpr int ACT_BF16 = 0;", op .. " fp32 constant")
    copy.ACT_BF16 = 1
    local bf = ops.kernel(op, copy)
    eq(bf.name, fp32.name:gsub("_v0$", "_actbf16_v0"), op .. ": ACT_BF16 = 1 name")
    has(bf.source, "constexpr int ACT_BF16 = 1;", op .. " bf16 constant")
    eq(table.concat(bf.args, " "), table.concat(fp32.args, " "), op .. ": same args")
    eq(table.concat(bf.grid, ","), table.concat(fp32.grid, ","), op .. ": same grid")
    copy.ACT_BF16 = true
    eq(ops.kernel(op, copy).name, bf.name, op .. ": ACT_BF16 = true")
    copy.ACT_BF16 = 2
    raises(function() ops.kernel(op, copy) end, op .. ": parameter ACT_BF16 must be 0 or 1, got 2",
      op .. " ACT_BF16 = 2")
  end
  -- Ops without activations take no ACT_BF16.
  for _, case in ipairs { { "fc_fwd", { N = 2, IN = 3, OUT = 4 } }, { "softmax_ce", { N = 2, CLASSES = 3 } },
    { "bn_stats_merge", { C = 3, PARTS = 2, M = 8 } }, { "sgd", { COUNT = 8 } } } do
    case[2].ACT_BF16 = 1
    raises(function() ops.kernel(case[1], case[2]) end, "unknown parameter 'ACT_BF16'", case[1] .. " takes no ACT_BF16")
  end
  -- SAVE_BF16 is meaningless with bf16 activations.
  raises(function() ops.kernel("bn_apply", { N = 2, C = 3, HW = 5, SAVE_BF16 = 1, ACT_BF16 = 1 }) end,
    "bn_apply: SAVE_BF16 = 1 with ACT_BF16 = 1: y is already stored in bf16", "bn_apply SAVE_BF16 with ACT_BF16")
  raises(function()
    ops.kernel("bn_apply_pool", { N = 1, C = 3, H = 4, W = 4, SAVE_BF16 = 1, ACT_BF16 = 1, POOL_F = 2 })
  end, "bn_apply_pool: SAVE_BF16 = 1 with ACT_BF16 = 1", "bn_apply_pool SAVE_BF16 with ACT_BF16")
  -- BF16 (y in bf16) is implied by ACT_BF16: both spellings are one kernel.
  for _, op in ipairs { "bn_backward", "bn_backward_sums", "bn_backward_dx" } do
    local a = ops.kernel(op, { N = 3, C = 7, HW = 30, SLICES = op ~= "bn_backward" and 5 or nil, MASK = 1,
      ACT_BF16 = 1 })
    local b = ops.kernel(op, { N = 3, C = 7, HW = 30, SLICES = op ~= "bn_backward" and 5 or nil, MASK = 1,
      ACT_BF16 = 1, BF16 = 1 })
    eq(a.name, b.name, op .. ": BF16 with ACT_BF16, name")
    eq(a.source, b.source, op .. ": BF16 with ACT_BF16, source")
    has(a.source, "constexpr int BF16 = 1;", op .. ": ACT_BF16 sets BF16")
    local f = ops.kernel(op, { N = 3, C = 7, HW = 30, SLICES = op ~= "bn_backward" and 5 or nil, MASK = 1, BF16 = 1 })
    assert(f.name ~= a.name, op .. ": BF16 alone is another kernel")
  end
  eq(ops.kernel("bn_backward", { N = 2, C = 3, HW = 5, MASK = 1, RES = 1, ACT_BF16 = 1 }).name,
    "bn_backward_n2c3hw5_mask_res_actbf16_v0", "bn_backward name")
  eq(ops.kernel("maxpool_fwd_pool", { N = 2, C = 3, H = 9, W = 11, POOL_F = 2, POOL_MAX = 1, ACT_BF16 = 1 }).name,
    "maxpool_fwd_pool_n2c3h9w11_r3s2p1_f2max_actbf16_v0", "maxpool_fwd_pool name")
  -- The kernels' signatures: activations as unsigned short where ACT_BF16 = 1.
  has(ops.kernel("avgpool_fwd", { N = 1, C = 3, HW = 4, ACT_BF16 = 1 }).source,
    "using act_t = pp_select_t<ACT_BF16 == 1, unsigned short, float>;", "act_t")
end)

test("sgd SHADOW: the bf16 weight shadow after momentum_buf", function()
  local plain = ops.kernel("sgd", { COUNT = 1000 })
  local zero = ops.kernel("sgd", { COUNT = 1000, SHADOW = 0 })
  eq(zero.name, plain.name, "SHADOW = 0 name")
  eq(zero.source, plain.source, "SHADOW = 0 source")
  local k = ops.kernel("sgd", { COUNT = 1000, SHADOW = 1 })
  eq(k.name, "sgd_count1000_shadow_v0", "SHADOW = 1 name")
  eq(table.concat(k.args, " "), "params grads momentum_buf shadow lr momentum weight_decay", "SHADOW = 1 args")
  eq(table.concat(k.grid, ","), table.concat(plain.grid, ","), "same grid")
  has(k.source, '#line 1 "templates/sgd_shadow.cu"', "shadow template")
  has(k.source, '#line 1 "templates/sgd_step.cuh"', "the shared step")
  has(plain.source, '#line 1 "templates/sgd_step.cuh"', "the shared step (SHADOW 0)")
  has(k.source, "unsigned short %*__restrict__ shadow", "shadow parameter")
  raises(function() ops.kernel("sgd", { COUNT = 10, SHADOW = 2 }) end, "sgd: parameter SHADOW must be 0 or 1, got 2",
    "SHADOW = 2")
end)

-- The steps of plan with op, in order.
local function steps_of(plan, op)
  local r = {}
  for i, s in ipairs(plan.steps) do
    if s.op == op then r[#r + 1] = { index = i, step = s } end
  end
  return r
end

local function buffer_of(plan, name)
  for _, b in ipairs(plan.buffers) do
    if b.name == name then return b end
  end
end

test("training plans: sliced BN backward, sliced BN statistics and multi-block softmax, with their workspaces",
  function()
  local network = require("poolprop.network")
  local policy = require("poolprop.policy")
  local train = require("poolprop.train")
  local f = assert(io.open(root .. "/models/cifar_resnet8.lua"))
  local text = f:read("a")
  f:close()
  -- Batch 32 at 32x32: stage 1 has M = 32768 rows of 16 channels (sliced), stage 3 M = 2048
  -- rows of 64 channels (sliced: 8 blocks x 4); 32 rows for the loss (multi-block).
  local g = network.instantiate(network.load_string(text, "cifar_resnet8"), { batch = 32, classes = 10,
    height = 32, width = 32 })
  -- Make the first BN read the network input (widened to its 16 channels) instead of
  -- conv1's output: no convolution epilogue to take its statistics from.
  local bn1 = g.layers[2]
  eq(bn1.name, "bn1", "second layer")
  table.remove(g.layers, 1)
  bn1.input = "x"
  g.tensors.x = { 32, 16, 32, 32 }
  local p = policy.parse("2", { file = "policy", line = 0 })
  policy.resolve(p, g, { file = "policy", line = 0 })
  local plan = train.build(g, p, { sources = true })
  for _, s in ipairs(plan.steps) do eq(#s.refs, #s.kernel.args, s.kernel.name .. " refs") end

  -- BN statistics of x: bn_stats_part, then bn_stats_merge with SHIFT 1 over its partials.
  local part, merge = steps_of(plan, "bn_stats_part"), steps_of(plan, "bn_stats_merge")
  eq(#part, 1, "one sliced statistics pass")
  local sl = ops.bn_slices(32 * 1024, 16)
  eq(part[1].step.kernel.grid[2], sl, "slices")
  local ws = buffer_of(plan, "bnstats:bn1")
  assert(ws, "no bnstats:bn1 workspace")
  eq(ws.kind, "workspace", "kind")
  eq(ws.bytes, (sl * 16 * 3 + 16) * 4, "bnstats bytes")
  eq(ws.first, part[1].index, "bnstats first")
  eq(ws.last, part[1].index + 1, "bnstats last: the merge right after")
  eq(plan.steps[part[1].index + 1].kernel.name, string.format("bn_stats_merge_c16parts%dm32768_shift_v0", sl), "merge")
  eq(plan.steps[part[1].index + 1].refs[1], "buf:bnstats:bn1", "merge reads the partials")
  local bns = 0
  for _, l in ipairs(g.layers) do bns = bns + (l.op == "bn" and 1 or 0) end
  eq(#merge, bns, "the other BNs merge their conv's partials")

  -- BN backward: sums then dx per sliced layer, each with its own short-lived workspace.
  local sums, dx = steps_of(plan, "bn_backward_sums"), steps_of(plan, "bn_backward_dx")
  assert(#sums > 0 and #sums == #dx, "sliced backward pairs")
  eq(#sums + #steps_of(plan, "bn_backward"), bns, "one backward per BN")
  for i, s in ipairs(sums) do
    local d = dx[i]
    eq(d.index, s.index + 1, s.step.layer .. ": dx right after the sums")
    eq(d.step.layer, s.step.layer, "same layer")
    eq(d.step.kernel.grid[2], s.step.kernel.grid[2], s.step.layer .. ": same slices")
    local b = buffer_of(plan, "bnsums:" .. s.step.layer)
    assert(b, "no bnsums workspace for " .. s.step.layer)
    local l
    for _, gl in ipairs(g.layers) do if gl.name == s.step.layer then l = gl end end
    eq(b.bytes, s.step.kernel.grid[2] * l.C * 2 * 4, s.step.layer .. " bnsums bytes")
    eq(b.first, s.index, "bnsums first")
    eq(b.last, d.index, "bnsums last")
  end
  -- The planner's figures count the workspaces: a step's live bytes include them.
  assert(plan.report.largest_transient >= buffer_of(plan, "bnsums:" .. sums[1].step.layer).bytes, "transient")

  -- The loss over 32 rows: softmax_ce_rows then softmax_ce_reduce through rowloss:loss.
  local rows, red = steps_of(plan, "softmax_ce_rows"), steps_of(plan, "softmax_ce_reduce")
  eq(#rows, 1, "rows pass")
  eq(#red, 1, "reduce pass")
  eq(#steps_of(plan, "softmax_ce"), 0, "no one-block softmax")
  eq(red[1].index, rows[1].index + 1, "reduce right after the rows")
  eq(rows[1].step.kernel.grid[1], 32, "a block per row")
  local rl = buffer_of(plan, "rowloss:loss")
  eq(rl.bytes, 32 * 2 * 4, "rowloss bytes")
  eq(rl.first, rows[1].index, "rowloss first")
  eq(rl.last, red[1].index, "rowloss last")
  eq(red[1].step.refs[2], "buf:loss", "the reduce writes loss")

  -- Batch 2: one-pass BN kernels and the one-block softmax, as before.
  local small = network.instantiate(network.load_string(text, "cifar_resnet8"), { batch = 2, classes = 10,
    height = 8, width = 8 })
  policy.resolve(p, small, { file = "policy", line = 0 })
  local sp = train.build(small, p, { sources = false })
  for _, op in ipairs {
    "bn_stats_part", "bn_backward_sums", "bn_backward_dx", "softmax_ce_rows", "softmax_ce_reduce",
  } do
    eq(#steps_of(sp, op), 0, "batch 2: no " .. op)
  end
  eq(#steps_of(sp, "softmax_ce"), 1, "batch 2: one-block softmax")
end)

-- A training plan of a models/ file at batch 3 under policy text.
local function model_plan(model, ptext, size)
  local network = require("poolprop.network")
  local policy = require("poolprop.policy")
  local train = require("poolprop.train")
  local f = assert(io.open(root .. "/models/" .. model .. ".lua"))
  local text = f:read("a")
  f:close()
  local g = network.instantiate(network.load_string(text, model), { batch = 3, classes = 10, height = size,
    width = size })
  local p = policy.parse(ptext, { file = "policy", line = 0 })
  policy.resolve(p, g, { file = "policy", line = 0 })
  return train.build(g, p, { sources = true }), g
end

test("training plans: the producer of a conv input writes its pool-save; only the stem conv pools x", function()
  -- resnet50: the max pool feeds layer1.0.conv1 (f 2) and layer1.0.downsample.0 (f 4): one
  -- kernel writes both. resnet18: layer1.1's output feeds layer2.0.conv1 (f 4) and the
  -- projection (f 2). cifar_resnet8 with max: stage 1 has 16 channels (the atomic mask runs).
  for _, case in ipairs { { "resnet50", "layer1.0.downsample.0=4,default=2", 64 },
    { "resnet18", "layer2.0.conv1=4,default=2", 64 }, { "cifar_resnet8", "2,mode=max", 16 } } do
    local plan, g = model_plan(case[1], case[2], case[3])
    local where = case[1] .. " " .. case[2]
    local layer_of = {}
    for _, l in ipairs(g.layers) do layer_of[l.name] = l end
    local producer_step = {}
    local two = 0
    for i, s in ipairs(plan.steps) do
      if s.op == "bn_apply_pool" or s.op == "maxpool_fwd_pool" then
        eq(s.phase, "forward", where .. " " .. s.layer .. " phase")
        for a, arg in ipairs(s.kernel.args) do
          if arg == "xp" or arg == "xp2" then
            local ref = s.refs[a]
            if ref ~= "null" then producer_step[ref:match("^buf:(.*)$")] = i end
          end
        end
        if s.kernel.source:find("constexpr int POOL_F2 = [24];") then two = two + 1 end
        if case[2]:find("max") then has(s.kernel.source, "constexpr int POOL_MAX = 1;", where .. " max") end
      elseif s.op == "conv_fwd" and s.phase == "forward" then
        local l = layer_of[s.layer]
        local stem = l.input == g.input
        eq(s.refs[4] ~= "null", stem, where .. " " .. s.layer .. ": only the stem conv binds xp")
        eq(s.kernel.name:find("_nosave", 1, true) ~= nil, not stem, where .. " " .. s.layer .. " kernel")
      end
    end
    eq(two, case[1] == "cifar_resnet8" and 0 or 1, where .. ": one producer writes two factors")
    -- Every pooled copy but the stem's is written by its producer, whose step starts its life.
    local copies = 0
    for _, b in ipairs(plan.buffers) do
      if b.name:find("^xp:") then
        copies = copies + 1
        if b.name:find("^xp:x:") then
          eq(producer_step[b.name], nil, where .. " stem copy")
        else
          eq(b.first, producer_step[b.name], where .. " " .. b.name .. " first step: its producer's")
          assert(b.saved, where .. " " .. b.name .. " saved")
        end
      end
    end
    -- Traffic: one entry per pooled conv; a copy counted once; producers' copies move xp only.
    local by_copy, total = {}, { before = 0, after = 0 }
    for _, e in ipairs(plan.save_traffic) do
      local l = layer_of[e.layer]
      eq(e.x_bytes, l.N * l.C * l.H * l.W * 4, e.layer .. " x bytes")
      eq(e.xp_bytes, l.N * l.C * ((l.H + e.f - 1) // e.f) * ((l.W + e.f - 1) // e.f) * 4, e.layer .. " xp bytes")
      local name = string.format("xp:%s:f%d%s", e.input, e.f, e.mode)
      if e.by == "shared" then
        assert(by_copy[name], e.layer .. ": shared before counted")
        eq(e.before + e.after, 0, e.layer .. " shared bytes")
      else
        assert(not by_copy[name], e.layer .. ": counted twice")
        by_copy[name] = true
        eq(e.before, e.x_bytes + e.xp_bytes, e.layer .. " before")
        eq(e.after, e.by == "conv" and e.before or e.xp_bytes, e.layer .. " after")
        eq(e.by == "conv", l.input == g.input, e.layer .. " by " .. e.by)
      end
      total.before, total.after = total.before + e.before, total.after + e.after
    end
    local counted = 0
    for _ in pairs(by_copy) do counted = counted + 1 end
    eq(counted, copies, where .. ": every copy counted once")
    eq(plan.save_traffic_total.before, total.before, "total before")
    eq(plan.save_traffic_total.after, total.after, "total after")
    assert(total.after < total.before, where .. ": the producers save traffic")
    for _, s in ipairs(plan.infer_steps) do
      assert(not s.op:find("_pool$"), where .. ": inference saves nothing (" .. s.op .. ")")
    end
  end
end)

test("element counts are multiplied without overflow; parameters and grids stay in int range", function()
  -- (2^31-1)^3 wraps in 64 bits; the count must still be refused, with its factors named.
  local big = 2147483647
  raises(function() ops.kernel("bn_apply", { N = big, C = big, HW = big }) end,
    "bn_apply: N%*C%*HW = about 9%.9%d*e%+27 elements, beyond the 2147483647 an int indexes", "wrapped product")
  raises(function() ops.kernel("bn_stats_part", { N = 1, C = 65536, HW = 65536, SLICES = 2 }) end,
    "N%*C%*HW = 4294967296 elements", "exact product")
  raises(function() ops.kernel("bn_stats_merge", { C = 65536, PARTS = 16384, M = 4 }) end,
    "PARTS%*C%*3 %+ C = 3221225472 elements", "product plus a term")
  raises(function() ops.kernel("sgd", { COUNT = 1 << 40 }) end,
    "sgd: parameter COUNT = 1099511627776 is beyond the 2147483647 an int holds", "parameter beyond an int")
  raises(function() ops.kernel("maxpool_fwd", { N = 1, C = 1, H = 8, W = 8, R = 1 << 32, PAD = 0 }) end,
    "parameter R = 4294967296 is beyond", "R whose square wraps")
  -- COUNT fits, but its 256-thread blocks would index up to 2^31.
  raises(function() ops.kernel("sgd", { COUNT = big }) end,
    "sgd: kernel sgd_count2147483647_v0: 8388608 blocks of 256 along x span 2147483648 elements", "grid extent")
  assert(ops.kernel("sgd", { COUNT = big - 255 }), "the largest COUNT whose blocks stay in range")
  -- Several unknown parameters: the first by name, every run (util.check_fields).
  for _ = 1, 10 do
    raises(function() ops.kernel("sgd", { COUNT = 5, zz = 1, aa = 2 }) end, "sgd: unknown parameter 'aa'",
      "first unknown")
  end
end)

H.finish()
