-- test_generator.lua: unit tests of the Lua generator: shape inference, variants, the
-- emitted sources (header, #line mapping, constants, exports) and description errors
-- with file:line. Run: lua5.4 tests/generator/test_generator.lua <repo root> <scratch dir>
local root, scratch = arg[1], arg[2]
assert(root and scratch, "usage: test_generator.lua ROOT SCRATCH_DIR")
package.path = root .. "/generator/?.lua;" .. root .. "/tests/generator/?.lua;" .. package.path
require("poolprop.files").root = root

local api = require("poolprop.api")
local describe = require("poolprop.describe")
local layer = require("poolprop.layer")
local variants = require("poolprop.variants")

local H = require("harness")
local test, eq, has, raises = H.test, H.eq, H.has, H.raises

local base = { N = 2, C = 3, H = 9, W = 7, K = 5, R = 3, S = 3, stride = 2, pad = 1, pool = 2 }
local function with(changes)
  local t = {}
  for k, v in pairs(base) do t[k] = v end
  for k, v in pairs(changes) do t[k] = v end
  return t
end

test("shape inference follows DESIGN.md section 1", function()
  local cases = {
    { d = with {}, P = 5, Q = 4, HP = 5, WP = 4 },
    { d = with { H = 32, W = 32, stride = 1, pad = 1, pool = 4 }, P = 32, Q = 32, HP = 8, WP = 8 },
    { d = with { H = 13, W = 11, R = 7, S = 7, stride = 2, pad = 3, pool = 8 }, P = 7, Q = 6, HP = 2, WP = 2 },
    { d = with { H = 5, W = 5, R = 1, S = 1, stride = 2, pad = 0, pool = 1 }, P = 3, Q = 3, HP = 5, WP = 5 },
  }
  for i, c in ipairs(cases) do
    local s = layer.shape(describe.validate(c.d, { file = "t", line = i }))
    eq(s.P, c.P, "P of case " .. i); eq(s.Q, c.Q, "Q of case " .. i)
    eq(s.HP, c.HP, "HP of case " .. i); eq(s.WP, c.WP, "WP of case " .. i)
  end
end)

test("variant spaces: default valid, several entries, all valid, fixed order", function()
  for _, op in ipairs(variants.ops) do
    local list = variants.list(op)
    assert(#list >= 2, op .. " declares fewer than two variants")
    assert(variants.valid(variants.get(op, 0)), op .. " default is not valid")
    for i, cfg in ipairs(list) do assert(variants.valid(cfg), op .. " variant " .. i .. " invalid") end
    eq(variants.get(op, 1), list[1], op .. " variant 1 is the first listed")
    local ok, msg = variants.get(op, #list + 1)
    eq(ok, nil, op .. " out-of-range variant")
    has(msg, "out of range", "message")
  end
end)

test("math modes: spaces hold fp32, TF32 and BF16 variants; the policy bounds them", function()
  for _, op in ipairs(variants.ops) do
    local seen = { [0] = 0, [1] = 0, [2] = 0 }
    for _, cfg in ipairs(variants.list(op)) do
      seen[cfg.MATH] = seen[cfg.MATH] + 1
      if cfg.MATH > 0 then
        eq(cfg.STAGES >= 2 and cfg.STAGES <= 4, true, op .. " tensor-core variants are pipelined, 2..4 stages")
        eq(cfg.BK % (cfg.MATH == 2 and 16 or 8), 0, op .. " BK is a multiple of the mma k")
        local tm, tn = variants.per_thread(cfg)
        eq(tm * tn <= variants.max_mma_accumulators, true, op .. " accumulators per thread")
      end
      eq(variants.allowed(cfg, "fp32"), cfg.MATH == 0, op .. " fp32 policy allows only FFMA")
      eq(variants.allowed(cfg, "bf16"), true, op .. " bf16 policy allows every mode")
    end
    for m = 0, 2 do eq(seen[m] > 0, true, op .. " has math mode " .. m) end
    eq(variants.default_index(op, "fp32"), 0, op .. " fp32 default")
    local tf = variants.get(op, variants.default_index(op, "tf32"))
    eq(tf.MATH, 1, op .. " tf32 default is a TF32 variant")
    eq(variants.get(op, variants.default_index(op, "bf16")).MATH, 2, op .. " bf16 default")
  end
  has(variants.space_version(), "^%x+$", "space version")
  eq(#variants.space_version(), 16, "space version length")
end)

test("tensor-core variants emit the mma and cp.async parts; fp32 ones do not use mma", function()
  local tf = variants.default_index("conv_fwd", "tf32")
  local r = layer.from_table(with { variant = { conv_fwd = tf } })
  local src = r.kernels[1].source
  has(src, "templates/ptx_mma.cuh", "mma part")
  has(src, "templates/gemm_mma.cuh", "mma tile")
  has(src, "constexpr int MATH = 1;", "math constant")
  has(src, "templates/ptx_ldmatrix.cuh", "ldmatrix part")
  has(src, "templates/gemm_mainloop.cuh", "shared main loop")
  has(src, "constexpr int STAGES = 3;", "stages constant")
  eq(r.kernels[1].math, "tf32", "kernel math")
  local plain = layer.from_table(with {}).kernels[1].source
  eq(plain:find("templates/ptx_mma.cuh", 1, true), nil, "no mma in the fp32 default")
  has(plain, "constexpr int STAGES = 1;", "default stages")
end)

test("tuning: keys, targets in candidate order, tuned variants reach the plan", function()
  local d = describe.validate(with {}, { file = "t", line = 1 })
  eq(layer.tuning_key("conv_fwd", d, "tf32"), "conv_fwd_n2c3h9w7_k5r3s3_s2p1_f2avg:tf32", "key")
  local f = io.open(root .. "/models/cifar_resnet8.lua")
  local text = f:read("a")
  f:close()
  local o = { batch = 1, height = 8, width = 8 }
  local t = assert(api.tuning_targets(text, "cifar_resnet8.lua", o, { text = "2,math=tf32" }))
  eq(t.math, "tf32", "math mode")
  eq(#t.targets, 23, "distinct conv kernels of cifar_resnet8's step (conv1 has no input gradient)")
  for _, target in ipairs(t.targets) do
    eq(target.op == "conv_bwd_data" and target.name == "conv1", false, "no target for the image's gradient")
  end
  local first = t.targets[1]
  eq(first.candidates[1], variants.default_index(first.op, "tf32"), "the mode's default first")
  eq(first.candidates[2], 0, "then the fp32 reference")
  local bf = 0
  for _, c in ipairs(first.candidates) do
    if c > 0 and variants.get(first.op, c).MATH == 2 then bf = bf + 1 end
  end
  eq(bf, 0, "a tf32 policy offers no BF16 variant")
  -- After the two defaults, the policy's own precision comes first, and on a large layer
  -- a large tile before a small one.
  eq(variants.get(first.op, first.candidates[3]).MATH, 1, "third candidate is TF32")
  local big = { N = 64, C = 64, H = 56, W = 56, K = 64, R = 3, S = 3, stride = 1, pad = 1, pool = 2, pool_mode = "avg" }
  local order = api.candidate_order("conv_fwd", big, "tf32")
  local c3 = variants.get("conv_fwd", order[3])
  eq(c3.BM * c3.BN >= 64 * 64, true, "a large layer tries large tiles early")
  local tiny = { N = 1, C = 3, H = 8, W = 8, K = 16, R = 3, S = 3, stride = 1, pad = 1, pool = 2, pool_mode = "avg" }
  local t3 = variants.get("conv_fwd", api.candidate_order("conv_fwd", tiny, "fp32")[2])
  eq(t3.BM * t3.BN <= 32 * 64, true, "a tiny layer tries small tiles early")
  local tuned = { [first.key] = 5 }
  local plan = assert(api.train_plan(text, "cifar_resnet8.lua", { batch = 1, height = 8, width = 8,
    sources = false, tuned = tuned }, { text = "2,math=tf32" }))
  eq(plan.math, "tf32", "plan math")
  local seen = false
  for _, l in ipairs(plan.graph.layers) do
    if l.name == first.name then
      eq(l.variant.conv_fwd, 5, "tuned variant on the layer")
      eq(l.variant.conv_bwd_data, variants.default_index("conv_bwd_data", "tf32"), "untuned: the default")
      seen = true
    end
  end
  eq(seen, true, "the first target's layer is in the plan")
  local bad = api.tuning_targets(text, "cifar_resnet8.lua", o, { text = "2,math=fp16" })
  eq(bad, nil, "bad math mode rejected")
end)

test("kernels: names, launch order, arguments, grid covers the problem", function()
  local r = layer.from_table(with {})
  eq(#r.kernels >= 3, true, "at least three kernels")
  eq(r.kernels[1].op, "conv_fwd", "first kernel")
  eq(r.kernels[2].op, "conv_bwd_data", "second kernel")
  eq(r.kernels[3].op, "conv_bwd_weight", "third kernel")
  has(r.kernels[1].name, "^conv_fwd_n2c3h9w7_k5r3s3_s2p1_f2avg_v0$", "fwd name")
  eq(table.concat(r.kernels[1].args, ","), "x,w,y,xp,null", "fwd args (no BN partials in a single layer)")
  eq(table.concat(r.kernels[2].args, ","), "dy,w,dx", "bwd data args")
  eq(r.kernels[3].args[2], "xp", "weight gradient reads the pooled input")
  local f1 = layer.from_table(with { pool = 1 })
  eq(f1.kernels[1].args[4], "null", "f=1 writes no xp")
  eq(f1.kernels[3].args[2], "x", "f=1 weight gradient reads x")
  for _, b in ipairs(f1.buffers) do assert(b.name ~= "xp", "f=1 has no xp buffer") end
end)

test("weight-gradient split covers the reduction with no empty split", function()
  for _, d in ipairs { with {}, with { N = 3, H = 56, W = 56, C = 64, K = 64, stride = 1 },
    with { N = 1, H = 3, W = 3, R = 1, S = 1, stride = 1, pad = 0 } } do
    for v = 0, 3 do
      d.variant = { conv_bwd_weight = v }
      local r = layer.from_table(d)
      local k = r.kernels[3]
      local consts = {}
      for name, value in k.source:gmatch("constexpr int ([%w_]+) = (%d+);") do consts[name] = tonumber(value) end
      local splits, per = consts.SPLITS, consts.M_PER_SPLIT
      eq(k.grid[3], splits, "grid.z is the split count")
      assert(per % consts.BK == 0, "split length is a multiple of BK")
      assert(splits * per >= consts.M, "splits cover M")
      assert((splits - 1) * per < consts.M, "no empty split")
      eq(r.kernels[4] ~= nil, splits > 1, "reduce kernel exactly when split")
    end
  end
end)

test("emitted source: header, extern C, export, constants, no placeholders", function()
  local r = layer.from_table(with { name = "res2a" })
  for _, k in ipairs(r.kernels) do
    local src = k.source
    has(src, "^// " .. k.name .. "%.cu: generated: do not edit%.", "header line 1")
    has(src, "\n// template:  templates/" .. k.op .. "%.cu\n", "template named")
    local bounds = k.op == "splitk_reduce" and "THREADS" or "THREADS, 1"
    has(src, 'extern "C" __global__ void __launch_bounds__%(' .. bounds .. '%)\n' .. k.name .. "%(", "extern C kernel")
    has(src, "PP_KERNEL_EXPORT%(" .. k.name .. "%)", "host export")
    assert(not src:find("%${"), "no unsubstituted placeholder")
    if k.op ~= "splitk_reduce" then
      has(src, "// layer:     res2a", "layer named")
      has(src, "// policy:    pool f=2 mode=avg", "policy named")
      has(src, "constexpr int STRIDE = 2;", "shape constant")
    end
  end
end)

test("#line directives map every line back to its template or the generated file", function()
  local r = layer.from_table(with {})
  for _, k in ipairs(r.kernels) do
    local lines = {}
    for line in (k.source):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
    local file, mapped = nil, nil
    local templates = {}
    for i, line in ipairs(lines) do
      local n, f = line:match('^#line (%d+) "([^"]+)"$')
      if n then
        file, mapped = f, tonumber(n)
      elseif file then
        if file:match("^templates/") then
          if not templates[file] then
            templates[file] = {}
            for t in require("poolprop.files").read(file):gmatch("([^\n]*)\n") do
              templates[file][#templates[file] + 1] = t
            end
          end
          local want = templates[file][mapped]
          if file == "templates/" .. k.op .. ".cu" then want = want and want:gsub("%${KERNEL}", k.name) end
          eq(line, want, string.format("%s line %d maps to %s:%d", k.name, i, file, mapped))
        else
          eq(file, k.name .. ".cu", "non-template lines are attributed to the generated file")
          eq(mapped, i, string.format("%s line %d", k.name, i))
        end
        mapped = mapped + 1
      end
    end
  end
end)

-- Writes a description file and returns its path.
local function description(name, text)
  local path = scratch .. "/" .. name
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

local function load_error(path)
  local f = assert(io.open(path))
  local text = f:read("a")
  f:close()
  local result, msg, kind = api.load_layers(text, path)
  eq(result, nil, "loading " .. path .. " must fail")
  return msg, kind
end

local good = 'layer { name = "a", N = 1, C = 3, H = 8, W = 8, K = 4, R = 3, S = 3, stride = 1, pad = 1, pool = 2 }\n'

test("description errors name file and line", function()
  local cases = {
    { "missing.lua", good .. "\nlayer { N = 1, C = 3, H = 8, W = 8, K = 4, R = 3 }\n", 3, "missing field 'S'" },
    { "negative.lua", good .. "layer { N = 1, C = -3, H = 8, W = 8, K = 4, R = 3, S = 3 }\n", 2,
      "field 'C' must be >= 1, got %-3" },
    { "toolarge.lua", "\n\nlayer { N = 1, C = 3, H = 4, W = 4, K = 4, R = 7, S = 7, pad = 1 }\n", 3,
      "kernel 7x7 is larger than the padded input 6x6" },
    { "factor.lua", "layer { N = 1, C = 3, H = 8, W = 8, K = 4, R = 3, S = 3, pool = 3 }\n", 1,
      "pool factor must be 1, 2, 4 or 8, got 3" },
    { "type.lua", "layer { N = 1, C = \"3\", H = 8, W = 8, K = 4, R = 3, S = 3 }\n", 1,
      "field 'C' must be an integer, got string" },
    { "float.lua", "layer { N = 1.5, C = 3, H = 8, W = 8, K = 4, R = 3, S = 3 }\n", 1,
      "field 'N' must be an integer, got number" },
    { "unknown.lua", "layer { N = 1, C = 3, H = 8, W = 8, K = 4, R = 3, S = 3, strid = 2 }\n", 1,
      "unknown field 'strid'" },
    { "mode.lua", "layer { N = 1, C = 3, H = 8, W = 8, K = 4, R = 3, S = 3, pool_mode = \"median\" }\n", 1,
      'pool_mode must be "avg" or "max"' },
    { "storage.lua", good .. "layer { N = 1, C = 3, H = 8, W = 8, K = 4, R = 3, S = 3, storage = \"fp16\" }\n", 2,
      'storage must be "fp32" or "bf16", got "fp16"' },
    { "storagetype.lua", "layer { N = 1, C = 3, H = 8, W = 8, K = 4, R = 3, S = 3, storage = 16 }\n", 1,
      "field 'storage' must be a string" },
    { "syntax.lua", good .. "layer { N = 1,, }\n", 2, "unexpected symbol" },
    { "runtime.lua", good .. "local x = nil + 1\n", 2, "attempt to perform arithmetic" },
    { "empty.lua", "-- nothing\n", 1, "no layer{...} in the description" },
    { "notable.lua", "layer(42)\n", 1, "layer description must be a table" },
    { "variant.lua", "layer { N = 1, C = 3, H = 8, W = 8, K = 4, R = 3, S = 3, variant = { conv_fwd = 99999 } }\n",
      1, nil },
  }
  for _, c in ipairs(cases) do
    local path = description(c[1], c[2])
    if c[4] then
      local msg, kind = load_error(path)
      eq(kind, "parse", c[1] .. " kind")
      has(msg, "^" .. path:gsub("%p", "%%%0") .. ":" .. c[3] .. ": error: ", c[1] .. " position")
      has(msg, c[4], c[1] .. " message")
    else
      -- Valid description; the bad variant index is found when kernels are generated.
      local f = assert(io.open(path)); local text = f:read("a"); f:close()
      local result, msg = api.generate_layers(text, path)
      eq(result, nil, "out-of-range variant must fail")
      has(msg, "^" .. path:gsub("%p", "%%%0") .. ":1: error: variant 99999 of conv_fwd is out of range",
        "variant message")
    end
  end
end)

test("all problems of a file are reported, each with its line", function()
  local path = description("many.lua", "layer { N = 0, C = 3, H = 8, W = 8, K = 4, R = 3, S = 3 }\n" ..
    good .. "layer { N = 1, C = 3, H = 8, W = 8, K = 4, R = 3, S = 3, pool = 5 }\n")
  local msg = load_error(path)
  has(msg, "many%.lua:1: error: field 'N' must be >= 1", "first problem")
  has(msg, "many%.lua:3: error: pool factor", "second problem")
end)

test("api.layer rejects impossible shapes with a clear message", function()
  local result, msg, kind = api.layer(with { R = 30 })
  eq(result, nil, "result")
  eq(kind, "shape", "kind")
  has(msg, "kernel 30x3 is larger than the padded input", "message")
  local huge, hmsg = api.layer(with { N = 4096, C = 512, H = 1024, W = 1024 })
  eq(huge, nil, "2^31 elements")
  has(hmsg, "32%-bit indexing", "message")
end)

test("bf16 storage: BF16 variants only, bf16 buffers but dw, ACT_BF16, half the shared memory", function()
  local d = describe.validate(with { storage = "bf16", C = 8, K = 16 }, { file = "t", line = 1 })
  local g = layer.generate(d)
  local dtype = {}
  for _, b in ipairs(g.buffers) do dtype[b.name] = b.dtype end
  for _, name in ipairs { "x", "w", "y", "dy", "dx", "xp" } do eq(dtype[name], "bf16", name .. " dtype") end
  eq(dtype.dw, "fp32", "dw dtype")
  for _, k in ipairs(g.kernels) do
    if k.op ~= "splitk_reduce" then
      local cfg = variants.get(k.op, k.variant)
      eq(k.variant, variants.default_index(k.op, "bf16"), k.op .. ": variant 0 means the BF16 default")
      has(k.name, "_bf16_v%d+$", k.op .. " name")
      has(k.source, "constexpr int ACT_BF16 = 1;", k.op .. " ACT_BF16")
      has(k.source, "constexpr int SMEM_BYTES = " .. variants.shared_bytes(cfg) // 2 .. ";", k.op .. " bf16 stages")
      eq(variants.shared_bytes(cfg, "bf16") <= variants.max_static_shared_bytes, true, k.op .. " default static")
      eq(variants.shared_bytes(cfg, "fp32") <= variants.max_static_shared_bytes, true, k.op .. " fp32 default static")
      eq(cfg.BK, k.op == "conv_bwd_weight" and 16 or 32, k.op .. " BF16 default K-tile")
    end
  end
  local fp32 = layer.generate(describe.validate(with { C = 8, K = 16 }, { file = "t", line = 1 }))
  has(fp32.kernels[1].source, "constexpr int ACT_BF16 = 0;", "fp32 storage")
  -- A TF32 variant with bf16 storage: refused as an invalid argument, with file:line.
  local tf32
  for i, cfg in ipairs(variants.list("conv_fwd")) do
    if cfg.MATH == 1 and not tf32 then tf32 = i end
  end
  local result, msg, kind = api.layer(with { storage = "bf16", variant = { conv_fwd = tf32 } })
  eq(result, nil, "TF32 variant with bf16 storage")
  eq(kind, "invalid", "kind")
  has(msg, "variant " .. tf32 .. " of conv_fwd computes in tf32, but bf16 storage needs a BF16", "message")
  -- variant_info reports both storages' shared memory.
  local info = api.variant_info("conv_fwd", variants.default_index("conv_fwd", "bf16"))
  eq(info.shared_bf16 * 2, info.shared, "bf16 shared memory")
  eq(api.variant_info("conv_fwd", tf32).shared_bf16, 0, "TF32 takes no bf16 storage")
end)

test("bundle: written on success, nothing written on error", function()
  local dir = scratch .. "/bundle_ok"
  os.execute("rm -rf '" .. dir .. "' && mkdir -p '" .. dir .. "/kernels'")
  local path = description("bundle.lua", good .. good:gsub('"a"', '"b"'))
  local f = assert(io.open(path)); local text = f:read("a"); f:close()
  local n, msg = api.write_bundle(text, path, dir)
  assert(n, msg)
  local plan = dofile(dir .. "/plan.lua")
  eq(#plan.layers, 2, "layers in plan")
  eq(plan.source, path, "plan names its source")
  local distinct = {}
  for _, l in ipairs(plan.layers) do
    for _, k in ipairs(l.kernels) do
      distinct[k.name] = true
      local h = assert(io.open(dir .. "/" .. k.file), "kernel file " .. k.file)
      has(h:read("a"), "generated: do not edit", k.file)
      h:close()
    end
  end
  local count = 0
  for _ in pairs(distinct) do count = count + 1 end
  eq(n, count + 1, "identical layers share their kernel files (plus plan.lua)")

  local bad_dir = scratch .. "/bundle_bad"
  os.execute("rm -rf '" .. bad_dir .. "' && mkdir -p '" .. bad_dir .. "/kernels'")
  local bad = good .. "layer { N = 1, C = 3, H = 8, W = 8, K = 4, R = 3, S = 3, pool = 3 }\n"
  local ok = api.write_bundle(bad, "bad.lua", bad_dir)
  eq(ok, nil, "bad description")
  local listing = io.popen("find '" .. bad_dir .. "' -type f | wc -l"):read("a")
  eq(tonumber(listing), 0, "files written for a bad description")
end)

test("sizes beyond 32-bit indexing: every product checked without overflow, errors name layer and tensor", function()
  -- N = C = math.maxinteger wraps every product (x, w, y, xp) to a small or negative count.
  local result, msg, kind = api.layer(with { name = "big", N = math.maxinteger, C = math.maxinteger })
  eq(result, nil, "N = C = maxinteger")
  eq(kind, "shape", "kind")
  local at = 0
  for _, t in ipairs { "tensor x %(N%*C%*H%*W = about", "tensor w %(K%*C%*R%*S = about", "tensor y %(N%*K%*P%*Q",
    "tensor xp %(N%*C%*HP%*WP" } do
    local hit = msg:find("layer 'big': " .. t, at + 1)
    assert(hit, "'" .. t .. "' after position " .. at .. " in:\n" .. msg)
    at = hit
  end
  -- The same message every time (the tensors in a fixed order, not pairs() order).
  for _ = 1, 20 do eq(select(2, api.layer(with { name = "big", N = math.maxinteger, C = math.maxinteger })), msg,
    "repeated message") end
  -- Factors that each fit, a product that does not: y = 65536 * 65536.
  local _, ymsg = api.layer { name = "wide", N = 65536, C = 1, H = 1, W = 1, K = 65536, R = 1, S = 1 }
  has(ymsg, "layer 'wide': tensor y %(N%*K%*P%*Q = 4294967296 elements%)", "exact count when it fits 64 bits")
  -- A pad of 2^31 (and one whose padded extent plus the stride passes 2^31-1) names x.
  for _, c in ipairs { { pad = 1 << 31, stride = 1 }, { pad = (1 << 30) - 1, stride = 1 << 30 },
    { pad = math.maxinteger, stride = 1 } } do
    local r, m = api.layer(with { name = "padded", pad = c.pad, stride = c.stride })
    eq(r, nil, "pad " .. c.pad)
    has(m, "layer 'padded': tensor x padded: its height H %+ 2%*pad plus the stride %(H=9, pad=" .. c.pad,
      "pad message")
  end
  -- Unnamed layers say so; values that are not integers, NaN, 1e300, zero, negative.
  has(select(2, api.layer(with { N = 1 << 40 })), "layer %(unnamed%): tensor x", "unnamed")
  for field, v in pairs { N = 1e300, C = 0 / 0, H = 2.5, pad = -1, K = 0, stride = math.huge } do
    local r, m = api.layer(with { [field] = v })
    eq(r, nil, field .. " = " .. tostring(v))
    has(m, "field '" .. field .. "' must be", field .. " message")
  end
  -- Large but inside: x of 2^30 elements.
  assert(api.layer { name = "large", N = 1, C = 1, H = 1, W = 1 << 30, K = 1, R = 1, S = 1 }, "2^30 elements")
end)

test("kernel grids: no block index times tile passes 2^31-1", function()
  -- x and y of 2^31-2 elements fit; the 64-row tiles of conv_fwd would index up to 2^31.
  local result, msg = api.layer { name = "edge", N = 1, C = 1, H = 1, W = 2147483646, K = 1, R = 1, S = 1 }
  eq(result, nil, "tiles past 2^31-1")
  has(msg, "kernel conv_fwd_%S+: %d+ blocks of 64 along x span 2147483648 elements, beyond the 2%^31%-1", "message")
end)

test("unknown fields are reported in a fixed order", function()
  local _, msg = api.layer(with { zz = 1, aa = 2, mm = 3 })
  local a, m, z = msg:find("unknown field 'aa'"), msg:find("unknown field 'mm'"), msg:find("unknown field 'zz'")
  assert(a and m and z and a < m and m < z, "order aa, mm, zz in:\n" .. msg)
end)

H.finish()
