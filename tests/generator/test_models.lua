-- test_models.lua: model descriptions, pooling policies and training plans: parameter
-- counts equal torchvision's, state_dict naming, policy parsing and its errors, and the
-- plan's buffers (lifetimes, what is saved under each policy).
-- Run: lua5.4 tests/generator/test_models.lua <repo root>
local root = arg[1]
assert(root, "usage: test_models.lua ROOT")
package.path = root .. "/generator/?.lua;" .. root .. "/tests/generator/?.lua;" .. package.path
require("poolprop.files").root = root

local network = require("poolprop.network")
local policy = require("poolprop.policy")
local train = require("poolprop.train")

local H = require("harness")
local test, eq, has, raises = H.test, H.eq, H.has, H.raises

local function load_model(name)
  local f = assert(io.open(root .. "/models/" .. name .. ".lua"))
  local text = f:read("a")
  f:close()
  return network.load_string(text, "models/" .. name .. ".lua")
end

local function graph(name, batch, size, classes)
  local cifar = name:find("cifar")
  return network.instantiate(load_model(name), { batch = batch or 2, height = size or (cifar and 32 or 224),
    width = size or (cifar and 32 or 224), classes = classes or (cifar and 10 or 1000) })
end


test("parameter counts equal torchvision's (1000 classes)", function()
  -- sum(p.numel() for p in torchvision.models.resnetXX().parameters())
  local want = { resnet18 = 11689512, resnet34 = 21797672, resnet50 = 25557032, resnet101 = 44549160,
    resnet152 = 60192808 }
  for name, count in pairs(want) do eq(graph(name).param_count, count, name) end
end)

test("CIFAR ResNet-20 parameter count: He et al.'s 269,722 plus the two projection shortcuts", function()
  -- The paper's option A shortcuts have no parameters; the 1x1 projections (16->32, 32->64)
  -- and their BN add 16*32 + 32*64 + 2*(32+64) = 2,752.
  eq(graph("cifar_resnet20").param_count, 269722 + 2752, "cifar_resnet20")
  for depth, blocks in pairs { [8] = 1, [32] = 5, [44] = 7, [56] = 9, [110] = 18 } do
    local g = graph("cifar_resnet" .. depth)
    local convs = 0
    for _, l in ipairs(g.layers) do if l.op == "conv" then convs = convs + 1 end end
    eq(convs, 1 + 3 * blocks * 2 + 2, "convolutions of cifar_resnet" .. depth)
  end
end)

test("state_dict keys in torchvision order and naming", function()
  local g = graph("resnet50")
  local keys = {}
  for i = 1, 8 do keys[i] = g.params[i].key end
  eq(table.concat(keys, " "), "conv1.weight bn1.weight bn1.bias layer1.0.conv1.weight layer1.0.bn1.weight " ..
    "layer1.0.bn1.bias layer1.0.conv2.weight layer1.0.bn2.weight", "first keys")
  local last = {}
  for i = #g.params - 1, #g.params do last[#last + 1] = g.params[i].key end
  eq(table.concat(last, " "), "fc.weight fc.bias", "last keys")
  local found = false
  for _, p in ipairs(g.params) do found = found or p.key == "layer1.0.downsample.0.weight" end
  assert(found, "ResNet-50 has layer1.0.downsample.0.weight")
  eq(g.state[1].key, "bn1.running_mean", "first statistic")
  eq(table.concat(g.params[1].shape, ","), "64,3,7,7", "conv1.weight shape")
  eq(table.concat(g.params[#g.params - 1].shape, ","), "1000,2048", "fc.weight shape")
end)

test("classes and image size are parameters", function()
  local g = graph("resnet18", 4, 64, 37)
  eq(table.concat(g.params[#g.params - 1].shape, ","), "37,512", "fc.weight for 37 classes")
  eq(table.concat(g.tensors[g.logits], ","), "4,37", "logits shape")
end)

test("bad model files and sizes are clear errors", function()
  raises(function() network.load_string("return resnet { block = 'basic', layers = { 2, 2 } }", "m.lua") end,
    "m%.lua: error: resnet: layers must list 4 block counts", "three stages")
  raises(function() network.load_string("return cifar_resnet { depth = 21 }", "m.lua") end,
    "depth must be 6n%+2", "depth 21")
  raises(function() network.load_string("return resnet { block = 'wide', layers = { 1, 1, 1, 1 } }", "m.lua") end,
    "block must be", "block kind")
  raises(function() network.load_string("x = = 1", "m.lua") end, "^m%.lua:1: error:", "syntax")
  raises(function() network.load_string("return 1", "m.lua") end, "must return a model", "no model")
  raises(function() graph("resnet50", 2, 16) end, "image 16x16 is too small for resnet50", "tiny image")
  raises(function() graph("resnet18", 0) end, "batch must be an integer >= 1", "batch 0")
end)

test("policies: forms, options and errors", function()
  local p = policy.parse("stem=1,stage1=4,stage2=2,default=2,mode=max,bn=bf16")
  eq(p.stages.stage1, 4, "stage1"); eq(p.default, 2, "default"); eq(p.mode, "max", "mode"); eq(p.bn, "bf16", "bn")
  eq(policy.parse("4").default, 4, "uniform")
  eq(policy.parse(nil).default, 1, "none")
  raises(function() policy.parse("3") end, "pool factor must be 1, 2, 4 or 8", "factor 3")
  raises(function() policy.parse("stage1=two") end, "pool factor", "non-number")
  raises(function() policy.parse("mode=median") end, "mode must be one of avg, max", "mode")
  raises(function() policy.parse("stage1") end, "expected name=value", "no value")
  raises(function() policy.parse("stage1=2,stage1=8") end, "stage1 is given twice %('stage1=2' and 'stage1=8'%)",
    "duplicate stage")
  raises(function() policy.parse("2,default=4") end, "default is given twice", "bare factor and default")
  raises(function() policy.parse("f=2,default=4") end, "default is given twice", "f is default")
  raises(function() policy.parse("mode=max,mode=avg") end, "mode is given twice", "duplicate option")
  raises(function() policy.parse(",") end, "an empty item in ','", "empty policy")
  raises(function() policy.parse("2,,mode=max") end, "an empty item", "empty item")
  raises(function() policy.parse("stage1=2,") end, "an empty item", "trailing comma")
  local g = graph("resnet18")
  raises(function() policy.resolve(policy.parse("stage5=2"), g) end, "policy names stage 'stage5'", "stage5")
  raises(function() policy.resolve(policy.parse("layer1.0.conv9=2"), g) end,
    "policy names layer 'layer1.0.conv9', which is not a convolution", "missing layer")
  policy.resolve(policy.parse("stem=1,stage1=4,layer1.0.conv1=8,default=2"), g)
  local f = {}
  for _, l in ipairs(g.layers) do if l.op == "conv" then f[l.name] = l.pool end end
  eq(f["conv1"], 1, "stem"); eq(f["layer1.0.conv1"], 8, "named layer wins"); eq(f["layer1.0.conv2"], 4, "stage")
  eq(f["layer3.0.conv1"], 2, "default")
  local file = policy.load_file("return { default = 2, stages = { stem = 1 }, layers = { ['fc'] = 2 } }", "p.lua")
  raises(function() policy.resolve(file, g) end, "'fc', which is not a convolution", "policy file layer")
  raises(function() policy.load_file("return { defualt = 2 }", "p.lua") end,
    "p%.lua: error: policy: unknown key 'defualt'", "policy file typo")
  -- act=bf16: storage; it implies BF16 convolutions and excludes what contradicts it.
  local a = policy.parse("2,act=bf16")
  eq(a.act, "bf16", "act"); eq(a.math, "bf16", "act=bf16 implies math=bf16")
  eq(policy.parse("2").act, "fp32", "act default")
  eq(policy.parse("baseline,act=bf16").act, "bf16", "AMP-like baseline")
  eq(policy.parse("2,act=bf16,math=bf16").math, "bf16", "math=bf16 may be named")
  raises(function() policy.parse("2,act=bf16,math=tf32") end, "math must be bf16 %(or left out%), got 'tf32'",
    "act+tf32")
  raises(function() policy.parse("2,math=fp32,act=bf16") end, "math must be bf16", "order does not matter")
  raises(function() policy.parse("2,act=bf16,bn=bf16") end, "the BN input is stored in bf16 already", "act+bn")
  raises(function() policy.parse("2,act=fp16") end, "act must be one of fp32, bf16, got 'fp16'", "act value")
  eq(policy.load_file("return { default = 2, act = 'bf16' }", "p.lua").math, "bf16", "policy file act")
  raises(function() policy.load_file("return { act = 'bf16', math = 'tf32' }", "p.lua") end, "math must be bf16",
    "policy file act+tf32")
end)

local function plan_of(name, text, batch, size)
  local g = graph(name, batch, size)
  return train.build(g, policy.resolve(policy.parse(text), g), {})
end

test("plan: every buffer has a lifetime inside the step, saved ones cross the boundary", function()
  local pl = plan_of("cifar_resnet8", "2", 2, 16)
  for _, b in ipairs(pl.buffers) do
    assert(b.first and b.last and b.first <= b.last, b.name .. " lifetime")
    assert(b.last <= #pl.steps, b.name .. " ends inside the step")
    if b.saved then assert(b.first <= pl.forward_end and b.last > pl.forward_end, b.name .. " saved") end
  end
  eq(pl.steps[#pl.steps].op, "sgd", "the update is last")
  for i, s in ipairs(pl.steps) do
    eq(s.phase, i <= pl.forward_end and "forward" or (s.op == "sgd" and "update" or "backward"), "phase of step " .. i)
  end
end)

test("plan: what each policy saves", function()
  local function saved_names(pl)
    local out = {}
    for _, b in ipairs(pl.buffers) do if b.saved then out[b.name] = b end end
    return out
  end
  local f2 = saved_names(plan_of("cifar_resnet8", "2", 2, 16))
  local f1 = saved_names(plan_of("cifar_resnet8", "1", 2, 16))
  local base = saved_names(plan_of("cifar_resnet8", "baseline", 2, 16))
  local count = { xp = 0, mask = 0 }
  for name, b in pairs(f2) do
    local kind = name:match("^(%a+):")
    if kind == "xp" then
      count.xp = count.xp + 1
      local tensor = name:match("^xp:([^:]+):")
      assert(not f2[tensor], "with f=2 the full conv input " .. tensor .. " is not saved")
    end
    if kind == "mask" then count.mask = count.mask + 1 end
  end
  eq(count.xp, 7, "pooled inputs (9 convs; the projections share their block's pooled input)")
  eq(count.mask, 7, "ReLU masks (every BN but the two projection shortcuts')")
  for name in pairs(base) do assert(not name:find("^mask:"), "the baseline saves no masks") end
  local function total(set) local t = 0 for _, b in pairs(set) do t = t + b.bytes end return t end
  assert(total(f2) < total(f1) and total(f1) <= total(base), "saved bytes: f=2 < f=1 <= baseline")
  local bf16 = saved_names(plan_of("cifar_resnet8", "2,bn=bf16", 2, 16))
  assert(total(bf16) < total(f2), "bf16 BN inputs save more")
end)

test("plan: act=bf16 halves every activation, gradient and pooled save but the head's", function()
  local fp, bf = plan_of("cifar_resnet8", "2", 2, 16), plan_of("cifar_resnet8", "2,act=bf16", 2, 16)
  local fp_bytes = {}
  for _, b in ipairs(fp.buffers) do fp_bytes[b.name] = b.bytes end
  local head = {}
  for _, l in ipairs(bf.graph.layers) do
    if l.op == "avgpool" or l.op == "fc" then head[l.output], head["d:" .. l.output] = true, true end
  end
  local halved = 0
  for _, b in ipairs(bf.buffers) do
    local kind = b.name:match("^(%a+):")
    local tensor = b.name:match("^d:(.*)$") or b.name
    local activation = b.kind == "activation" or b.kind == "gradient" or kind == "xp" or b.name == "x"
    assert(fp_bytes[b.name], b.name .. " exists in both plans")
    if activation and not head[b.name] and not head[tensor] then
      eq(b.bytes, fp_bytes[b.name] // 2, b.name .. " in bf16")
      halved = halved + 1
    elseif b.kind ~= "workspace" then -- (workspaces follow the BF16 convolutions' tiles)
      eq(b.bytes, fp_bytes[b.name], b.name .. " unchanged")
    end
  end
  assert(halved > 20, "activations, gradients and saves were checked: " .. halved)
  eq(bf.report.weights, fp.report.weights * 3 // 2, "weights: fp32 masters and their bf16 copy")
  eq(bf.baseline_policy, "baseline,act=bf16", "compared against the AMP-like baseline")
  eq(fp.baseline_policy, "baseline", "fp32 compares against the fp32 baseline")
  local convs, acts = 0, 0
  for _, s in ipairs(bf.steps) do
    if s.op:match("^conv_") and s.bind.w then
      assert(s.bind.w:match("^shadow:"), s.op .. " of " .. s.layer .. " reads the bf16 weights")
      convs = convs + 1
    end
    if s.params and s.params.ACT_BF16 then acts = acts + 1 end
    if s.op == "sgd" then
      eq(s.params.SHADOW, 1, "sgd refreshes the bf16 copy")
      eq(s.bind.shadow, "shadow", "shadow")
    end
    if s.op:match("^fc_") or s.op:match("^softmax") then
      assert(not (s.params and s.params.ACT_BF16), s.op .. " is fp32")
    end
  end
  assert(convs > 0 and acts > 0, "conv and other steps checked")
  for _, s in ipairs(fp.steps) do
    assert(not (s.params and s.params.ACT_BF16), "fp32 plans name no ACT_BF16")
    if s.bind.w then assert(s.bind.w:match("^param:"), "fp32 convs read the parameters") end
  end
end)

-- Lua VM instructions (in units of 100, debug.sethook's count) that fn runs: a measure of
-- work that does not depend on the machine or its load.
local function instructions(fn)
  local count = 0
  debug.sethook(function() count = count + 1 end, "", 100)
  local ok, err = pcall(fn)
  debug.sethook()
  assert(ok, err)
  return count
end

test("planning work grows linearly with depth (not quadratically)", function()
  -- Twice the blocks should take about twice the work: a step x buffer loop (the memory
  -- report before) or a search per step over all buffers makes the ratio about 4.
  local work = {}
  for i, depth in ipairs { 98, 194 } do
    local spec = network.load_string("return cifar_resnet { depth = " .. depth .. " }", "deep.lua")
    local g = network.instantiate(spec, { batch = 2, height = 32, width = 32, classes = 10 })
    local p = policy.parse("2")
    policy.resolve(p, g, { file = "policy", line = 0 })
    work[i] = instructions(function() train.build(g, p, {}) end)
  end
  local ratio = work[2] / work[1]
  print(string.format("      plan work: depth 98 %d, depth 194 %d (x100 instructions), ratio %.2f", work[1], work[2],
    ratio))
  assert(ratio < 2.5, string.format("depth 194 costs %.2f times depth 98: superlinear", ratio))
end)

test("sizes beyond 32-bit indexing name the tensor or parameter, first in layer order", function()
  raises(function() graph("resnet18", 64, 30000) end,
    "resnet18: the input tensor x of shape 64x3x30000x30000 has 172800000000 elements, more than the 2%^31%-1", "image")
  -- The logits (N x classes) are the first tensor past the limit: named with their layer.
  raises(function() graph("resnet18", 2, 64, 2147483647) end, "resnet18: layer fc: tensor t%d+ %(its output%) of "
    .. "shape 2x2147483647 has 4294967294 elements", "classes")
  raises(function() graph("resnet18", 1, 64, 2147483647) end, "resnet18: parameter fc%.weight of shape "
    .. "2147483647x512 has 1099511627264 elements", "fc.weight")
  raises(function() graph("resnet18", 1, 64, 4190000) end, "resnet18: its parameters %(%d+ values%) are more than "
    .. "the 2%^31%-1", "all parameters")
  raises(function() graph("resnet18", math.maxinteger) end, "batch must be at most 2%^31%-1", "batch")
end)

test("policy names are checked in a fixed order", function()
  local g = graph("cifar_resnet20")
  local p = policy.load_file("return { stages = { zeta = 2, alpha = 2, mid = 4 } }", "p.lua")
  raises(function() policy.resolve(p, g, { file = "p.lua", line = 0 }) end, "policy names stage 'alpha'", "first")
end)

test("plan: each graph op from one table; an op it does not know is an error", function()
  for _, op in ipairs { "conv", "bn", "maxpool", "avgpool", "fc", "softmax_ce" } do
    assert(train.layer_ops[op] and train.layer_ops[op].forward, op .. " has a forward entry")
  end
  local g = graph("cifar_resnet20")
  local p = policy.parse("2")
  policy.resolve(p, g, { file = "policy", line = 0 })
  table.insert(g.layers, 3, { op = "dropout", name = "drop", input = g.layers[2].output, output = g.layers[2].output })
  raises(function() train.build(g, p, {}) end, "plan: layer drop has op 'dropout', which the plan does not know",
    "unknown op")
end)

test("model builders check their fields with the generator's one spec format", function()
  -- The first unknown field by name, every run; wrong types named with the field.
  for _ = 1, 10 do
    raises(function() network.load_string("return resnet { block = 'basic', layers = { 1, 1, 1, 1 }, zz = 1, aa = 2 }",
      "m.lua") end, "resnet: unknown field 'aa'", "first unknown field")
  end
  raises(function() network.load_string("return cifar_resnet { depth = 20, name = 7 }", "m.lua") end,
    "cifar_resnet: field 'name' must be a string, got integer %(7%)", "name type")
  raises(function() network.load_string("return resnet { block = 5, layers = { 1, 1, 1, 1 } }", "m.lua") end,
    "resnet: field 'block' must be a string, got integer %(5%)", "block type")
end)

H.finish()
