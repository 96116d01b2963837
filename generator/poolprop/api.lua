-- api.lua: the generator's entry points for the runtime (and for tests). Each returns its
-- result, or nil, a message ("file:line: error: ..." for description problems) and a
-- kind: "parse" (a description file), "shape" (impossible values), "internal".
local bundle = require("poolprop.bundle")
local describe = require("poolprop.describe")
local errors = require("poolprop.errors")
local layer = require("poolprop.layer")
local variants = require("poolprop.variants")

local M = {}

local function protect(kind, fn, ...)
  local ok, result = pcall(fn, ...)
  if ok then return result end
  if errors.is_error(result) then return nil, errors.format(result), kind end
  return nil, errors.format(result), "internal"
end

-- raw: a table with the fields of describe.lua, as the C API passes them.
function M.layer(raw)
  return protect("shape", layer.from_table, raw, { file = "layer description", line = 0 })
end

-- Loads a description file (text given, so the runtime can pass embedded files too).
function M.load_layers(text, chunkname)
  return protect("parse", describe.load_string, text, chunkname)
end

function M.generate_layers(text, chunkname)
  return protect("parse", function()
    local results = {}
    for i, d in ipairs(describe.load_string(text, chunkname)) do results[i] = layer.generate(d) end
    return results
  end)
end

-- Generates the whole bundle in memory, then writes it; nothing is written on error.
-- dir nil: a dry run that only generates.
function M.write_bundle(text, chunkname, dir)
  local results, msg, kind = M.generate_layers(text, chunkname)
  if not results then return nil, msg, kind end
  local files = bundle.render(results, chunkname)
  if not dir then return #files end
  return protect("internal", function()
    bundle.write(files, dir)
    return #files
  end)
end

-- One kernel of ops.lua; params_text is a Lua table constructor, e.g. "{ N = 2, C = 3 }".
function M.op_kernel(op, params_text)
  return protect("shape", function()
    local chunk, err = load("return " .. params_text, "=op parameters", "t", {})
    if not chunk then errors.raise(nil, "%s", err) end
    return require("poolprop.ops").kernel(op, chunk())
  end)
end

-- The training plan of a model. model_text/model_name: the model file; o: { batch,
-- height, width, classes, sources }; policy: { text = "2" } or { file_text, file_name }.
function M.train_plan(model_text, model_name, o, policy)
  return protect("parse", function()
    local network = require("poolprop.network")
    local policies = require("poolprop.policy")
    local spec = network.load_string(model_text, model_name)
    local cifar = spec.kind == "cifar_resnet"
    local graph = network.instantiate(spec, {
      batch = o.batch, classes = (o.classes and o.classes > 0) and o.classes or (cifar and 10 or 1000),
      height = (o.height and o.height > 0) and o.height or (cifar and 32 or 224),
      width = (o.width and o.width > 0) and o.width or (cifar and 32 or 224) })
    local p
    if policy.file_text then
      p = policies.load_file(policy.file_text, policy.file_name)
    else
      p = policies.parse(policy.text, { file = "policy", line = 0 })
    end
    policies.resolve(p, graph, { file = "policy", line = 0 })
    return require("poolprop.train").build(graph, p, { sources = o.sources })
  end)
end

function M.variant_count(op)
  local n = variants.count(op)
  if not n then return nil, "unknown kernel op '" .. tostring(op) .. "'", "shape" end
  return n
end

return M
