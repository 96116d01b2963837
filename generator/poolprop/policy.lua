-- policy.lua: pooling policies, and what each layer saves for backward under one.
-- Forms (text, as on the command line):
--   "2"                                  every conv input pooled by 2 (f in 1, 2, 4, 8)
--   "2,bn=bf16"                          the same, with options
--   "stem=1,stage1=4,stage2=2,default=2" per stage; unnamed stages take default (1)
--   "layer1.0.conv1=4,default=2"         per named conv layer
--   options in the same list: mode=avg|max, bn=fp32|bf16, relu=mask|full,
--   math=fp32|tf32|bf16: the least precise convolution arithmetic allowed (fp32 FFMA is
--   the reference; tf32 and bf16 allow tensor-core variants with f32 accumulation), and
--   act=fp32|bf16: the storage of activations, their gradients and the pooled saves.
--   act=bf16 (fp32 arithmetic inside every kernel, fp32 BN statistics, fp32 master
--   weights with a bf16 copy the convolutions read) needs BF16 convolutions: it implies
--   math=bf16, and names with math=fp32|tf32 or bn=bf16 (its BN input is bf16 already)
--   are errors. "baseline,act=bf16" is the AMP-like baseline.
--   "baseline"                           what a framework stores: f = 1, full-precision
--                                        BN input and ReLU output (for comparison); may be
--                                        followed by options: "baseline,math=tf32"
-- A policy file (path ending in .lua) is Lua returning the same keys as a table:
--   return { default = 2, stages = { stem = 1 }, layers = { ["layer1.0.conv1"] = 4 },
--            mode = "avg", bn = "bf16" }
-- resolve() checks every name against the graph: a policy naming a stage or layer that
-- does not exist is an error, never a silent no-op.
local errors = require("poolprop.errors")
local describe = require("poolprop.describe")
local util = require("poolprop.util")

local M = {}

local option_values = { mode = { avg = true, max = true }, bn = { fp32 = true, bf16 = true },
  relu = { mask = true, full = true }, math = { fp32 = true, tf32 = true, bf16 = true },
  act = { fp32 = true, bf16 = true } }
local option_choices = { mode = "avg, max", bn = "fp32, bf16", relu = "mask, full", math = "fp32, tf32, bf16",
  act = "fp32, bf16" }

local function factor(value, what, where)
  local f = math.tointeger(tonumber(value))
  if not f or not describe.pool_factors[f] then
    errors.raise(where, "%s: pool factor must be 1, 2, 4 or 8, got '%s'", what, tostring(value))
  end
  return f
end

-- One "name=value" (or bare factor) item of a policy text, applied to p.
local function apply_item(p, item, where)
  local key, value = item:match("^%s*([%w_%.]+)%s*=%s*([%w_]+)%s*$")
  if not key and item:match("^%s*%d+%s*$") then key, value = "default", item end
  if not key then errors.raise(where, "policy: expected name=value, got '%s'", item) end
  local name = key == "f" and "default" or key
  if p.named[name] then
    errors.raise(where, "policy: %s is given twice ('%s' and '%s')", name, p.named[name], item:match("^%s*(.-)%s*$"))
  end
  p.named[name] = item:match("^%s*(.-)%s*$")
  if p.baseline and not option_values[key] then
    errors.raise(where, "policy: after 'baseline' only options (mode, bn, relu, math, act) may follow, got '%s'", item)
  end
  if option_values[key] then
    if not option_values[key][value] then
      errors.raise(where, "policy: %s must be one of %s, got '%s'", key, option_choices[key], value)
    end
    p[key] = value
    p.given[key] = true
  elseif key == "default" or key == "f" then
    p.default = factor(value, "policy " .. key, where)
  elseif key == "stem" or key:match("^stage%d+$") or key == "head" then
    p.stages[key] = factor(value, "policy " .. key, where)
  else
    p.layers[key] = factor(value, "policy " .. key, where)
  end
end

-- act=bf16's consequences for the other options (see the file header). given: the
-- options the policy names.
local function settle_storage(p, given, where)
  if p.act ~= "bf16" then return p end
  if given.math and p.math ~= "bf16" then
    errors.raise(where, "policy: act=bf16 stores activations in bf16, which only BF16 convolutions read: " ..
      "math must be bf16 (or left out), got '%s'", p.math)
  end
  if given.bn and p.bn == "bf16" then
    errors.raise(where, "policy: bn=bf16 with act=bf16: the BN input is stored in bf16 already; leave bn out")
  end
  p.math = "bf16"
  return p
end

-- Parses policy text into { default, stages = {}, layers = {}, mode, bn, relu, math, act, baseline }.
function M.parse(text, where)
  local p = { default = 1, stages = {}, layers = {}, mode = "avg", bn = "fp32", relu = "mask", math = "fp32",
    act = "fp32", text = text, given = {}, named = {} }
  if text == nil or text == "" then return p end
  if text:match("^%s*[1248]%s*$") or text:match("^%s*%d+%s*$") then
    p.default = factor(text:match("%d+"), "policy", where)
    return p
  end
  for item in (text .. ","):gmatch("([^,]*),") do
    if item:match("^%s*$") then errors.raise(where, "policy: an empty item in '%s'", text) end
    if not p.baseline and p.text:match("^%s*baseline%s*,?") and item:match("^%s*baseline%s*$") then
      p.baseline = true
    else
      apply_item(p, item, where)
    end
  end
  -- The baseline stores what a framework stores, whatever options follow it.
  if p.baseline then p.bn, p.relu = "fp32", "full" end
  return settle_storage(p, p.given, where)
end

function M.load_file(text, chunkname)
  local chunk, err = load(text, "@" .. chunkname, "t", {})
  if not chunk then
    local file, line, msg = tostring(err):match("^(.-):(%d+): (.*)$")
    errors.raise({ file = file or chunkname, line = tonumber(line) or 0 }, "%s", msg or tostring(err))
  end
  local ok, t = pcall(chunk)
  if not ok or type(t) ~= "table" then
    errors.raise({ file = chunkname, line = 0 }, "a policy file must return a table: %s", tostring(t))
  end
  local where = { file = chunkname, line = 0 }
  local allowed = { default = true, stages = true, layers = true, mode = true, bn = true, relu = true,
    math = true, act = true }
  for _, k in ipairs(util.sorted_keys(t)) do
    if not allowed[k] then errors.raise(where, "policy: unknown key '%s'", tostring(k)) end
  end
  local p = { default = 1, stages = {}, layers = {}, mode = t.mode or "avg", bn = t.bn or "fp32",
    relu = t.relu or "mask", math = t.math or "fp32", act = t.act or "fp32", text = chunkname, given = {} }
  for _, key in ipairs(util.sorted_keys(option_values)) do
    local set = option_values[key]
    if not set[p[key]] then errors.raise(where, "policy: bad %s '%s'", key, tostring(p[key])) end
  end
  if t.default ~= nil then p.default = factor(t.default, "policy default", where) end
  local stages, layers = t.stages or {}, t.layers or {}
  for _, k in ipairs(util.sorted_keys(stages)) do p.stages[k] = factor(stages[k], "policy stage " .. k, where) end
  for _, k in ipairs(util.sorted_keys(layers)) do p.layers[k] = factor(layers[k], "policy layer " .. k, where) end
  for key in pairs(option_values) do p.given[key] = t[key] ~= nil end
  return settle_storage(p, p.given, where)
end

-- Checks names against the graph and sets conv.pool / conv.pool_mode on each conv layer.
function M.resolve(p, graph, where)
  local convs = {}
  for _, l in ipairs(graph.layers) do
    if l.op == "conv" then convs[l.name] = l end
  end
  for _, stage in ipairs(util.sorted_keys(p.stages)) do
    if not graph.stages[stage] then
      local names = {}
      for _, s in ipairs(graph.stages) do names[#names + 1] = s end
      errors.raise(where, "policy names stage '%s', which %s does not have (stages: %s)", stage,
        graph.name, table.concat(names, ", "))
    end
  end
  local names = {}
  for name in pairs(p.layers) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    if not convs[name] then
      errors.raise(where, "policy names layer '%s', which is not a convolution of %s", name, graph.name)
    end
  end
  for _, l in ipairs(graph.layers) do
    if l.op == "conv" then
      l.pool = p.layers[l.name] or p.stages[l.stage] or p.default
      if p.baseline then l.pool = 1 end
      l.pool_mode = p.mode
    end
  end
  return p
end

return M
