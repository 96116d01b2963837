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
    if not chunk then errors.raise(nil, "op parameters: %s", err) end
    return require("poolprop.ops").kernel(op, chunk())
  end)
end

function M.variant_count(op)
  local n = variants.count(op)
  if not n then return nil, "unknown kernel op '" .. tostring(op) .. "'", "shape" end
  return n
end

return M
