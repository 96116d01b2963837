-- describe.lua: layer descriptions. A description file is Lua evaluated in an
-- environment that offers only layer{...} (and math/string); each call records the file
-- and line it was made on, so every later error points at the layer it concerns.
--   layer { name = "res2a", N = 2, C = 64, H = 56, W = 56, K = 64, R = 3, S = 3,
--           stride = 1, pad = 1, pool = 2, pool_mode = "avg", storage = "fp32" }
-- storage = "bf16" stores the layer's activations, their gradients and its weights as
-- bf16 (layer.lua).
-- validate() turns one raw table into a normalized description or errors.
local errors = require("poolprop.errors")

local M = {}

M.pool_factors = { [1] = true, [2] = true, [4] = true, [8] = true }
M.pool_modes = { avg = true, max = true }
M.storages = { fp32 = true, bf16 = true }
M.variant_ops = { "conv_fwd", "conv_bwd_data", "conv_bwd_weight" }

-- field -> {required, kind, minimum, default}
local fields = {
  name = { kind = "string" },
  N = { required = true, kind = "integer", min = 1 },
  C = { required = true, kind = "integer", min = 1 },
  H = { required = true, kind = "integer", min = 1 },
  W = { required = true, kind = "integer", min = 1 },
  K = { required = true, kind = "integer", min = 1 },
  R = { required = true, kind = "integer", min = 1 },
  S = { required = true, kind = "integer", min = 1 },
  stride = { kind = "integer", min = 1, default = 1 },
  pad = { kind = "integer", min = 0, default = 0 },
  pool = { kind = "integer", default = 1 },
  pool_mode = { kind = "string", default = "avg" },
  storage = { kind = "string", default = "fp32" },
  variant = { kind = "table" },
}
local field_order = { "name", "N", "C", "H", "W", "K", "R", "S", "stride", "pad", "pool",
  "pool_mode", "storage", "variant" }

local function kind_of(v)
  if math.type(v) == "integer" then return "integer" end
  return type(v)
end

-- Largest element count a kernel indexes with 32-bit ints.
M.max_elements = 2147483647

-- raw: the table given to layer{}; where: {file, line}. Returns desc or raises all errors.
function M.validate(raw, where)
  local problems = {}
  local function bad(fmt, ...) problems[#problems + 1] = errors.new(where, fmt, ...) end
  if type(raw) ~= "table" then
    errors.raise(where, "layer description must be a table, got %s", type(raw))
  end
  for key in pairs(raw) do
    if not fields[key] then bad("unknown field '%s' in layer description", tostring(key)) end
  end
  local d = {}
  for _, key in ipairs(field_order) do
    local spec, v = fields[key], raw[key]
    if v == nil then
      if spec.required then bad("missing field '%s'", key) end
      v = spec.default
    elseif kind_of(v) ~= spec.kind then
      bad("field '%s' must be %s %s, got %s (%s)", key, spec.kind == "integer" and "an" or "a",
        spec.kind, kind_of(v), tostring(v))
      v = nil
    elseif spec.min and v < spec.min then
      bad("field '%s' must be >= %d, got %d", key, spec.min, v)
      v = nil
    end
    d[key] = v
  end
  if d.pool and not M.pool_factors[d.pool] then
    bad("pool factor must be 1, 2, 4 or 8, got %d", d.pool)
  end
  if d.pool_mode and not M.pool_modes[d.pool_mode] then
    bad("pool_mode must be \"avg\" or \"max\", got \"%s\"", d.pool_mode)
  end
  if d.storage and not M.storages[d.storage] then
    bad("storage must be \"fp32\" or \"bf16\", got \"%s\"", d.storage)
  end
  d.variant = d.variant or {}
  for key, v in pairs(d.variant) do
    local known = false
    for _, op in ipairs(M.variant_ops) do known = known or key == op end
    if not known then
      bad("variant: unknown kernel '%s' (expected conv_fwd, conv_bwd_data or conv_bwd_weight)", tostring(key))
    elseif math.type(v) ~= "integer" or v < 0 then
      bad("variant.%s must be an integer >= 0, got %s", key, tostring(v))
    end
  end
  if #problems == 0 then
    if d.R > d.H + 2 * d.pad or d.S > d.W + 2 * d.pad then
      bad("kernel %dx%d is larger than the padded input %dx%d (H=%d, W=%d, pad=%d)",
        d.R, d.S, d.H + 2 * d.pad, d.W + 2 * d.pad, d.H, d.W, d.pad)
    else
      for name, count in pairs({ X = d.N * d.C * d.H * d.W, Wt = d.K * d.C * d.R * d.S,
        Y = d.N * d.K * ((d.H + 2 * d.pad - d.R) // d.stride + 1) * ((d.W + 2 * d.pad - d.S) // d.stride + 1) }) do
        if count > M.max_elements then
          bad("tensor %s has %d elements, more than the 2^31-1 that 32-bit indexing allows", name, count)
        end
      end
    end
  end
  errors.raise_all(problems)
  d.where = where
  return d
end

local function where_of_caller(level)
  local info = debug.getinfo(level, "Sl")
  local file = info.source:sub(1, 1) == "@" and info.source:sub(2) or info.short_src
  return { file = file, line = info.currentline }
end

-- Evaluates description text; returns the list of validated layers or raises.
function M.load_string(text, chunkname)
  local layers, problems = {}, {}
  local env = { math = math, string = string, ipairs = ipairs, pairs = pairs }
  env.layer = function(raw)
    local where = where_of_caller(3)
    local ok, result = pcall(M.validate, raw, where)
    if ok then
      layers[#layers + 1] = result
    else
      problems[#problems + 1] = result
    end
    return raw
  end
  local chunk, err = load(text, "@" .. chunkname, "t", env)
  if not chunk then
    -- Lua reports "file:line: message"; keep its position.
    local file, line, msg = tostring(err):match("^(.-):(%d+): (.*)$")
    if file then errors.raise({ file = file, line = tonumber(line) }, "%s", msg) end
    errors.raise({ file = chunkname, line = 1 }, "%s", tostring(err))
  end
  local ok, err2 = pcall(chunk)
  if not ok then
    if errors.is_error(err2) then error(err2, 0) end
    local file, line, msg = tostring(err2):match("^(.-):(%d+): (.*)$")
    if file then errors.raise({ file = file, line = tonumber(line) }, "%s", msg) end
    errors.raise({ file = chunkname, line = 1 }, "%s", tostring(err2))
  end
  errors.raise_all(problems)
  if #layers == 0 then
    errors.raise({ file = chunkname, line = 1 }, "no layer{...} in the description")
  end
  return layers
end

function M.load_file(path)
  local f, err = io.open(path, "rb")
  if not f then errors.raise({ file = path, line = 0 }, "cannot open: %s", tostring(err)) end
  local text = f:read("a")
  f:close()
  return M.load_string(text, path)
end

return M
