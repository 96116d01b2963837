-- describe.lua: layer descriptions. A description file is Lua evaluated in an
-- environment that offers only layer{...} (and math/string); each call records the file
-- and line it was made on, so every later error points at the layer it concerns.
--   layer { name = "res2a", N = 2, C = 64, H = 56, W = 56, K = 64, R = 3, S = 3,
--           stride = 1, pad = 1, pool = 2, pool_mode = "avg", storage = "fp32" }
-- storage = "bf16" stores the layer's activations, their gradients and its weights as
-- bf16 (layer.lua).
-- validate() turns one raw table into a normalized description or errors.
local errors = require("poolprop.errors")
local util = require("poolprop.util")

local M = {}

M.pool_factors = { [1] = true, [2] = true, [4] = true, [8] = true }
M.pool_modes = { avg = true, max = true }
M.storages = { fp32 = true, bf16 = true }
M.variant_ops = { "conv_fwd", "conv_bwd_data", "conv_bwd_weight" }

-- The fields, in util.check_fields' format ({name, kind, default, minimum}): a field
-- without a default is required unless optional.
local fields = {
  { "name", "string", optional = true },
  { "N", "integer", nil, 1 }, { "C", "integer", nil, 1 }, { "H", "integer", nil, 1 }, { "W", "integer", nil, 1 },
  { "K", "integer", nil, 1 }, { "R", "integer", nil, 1 }, { "S", "integer", nil, 1 },
  { "stride", "integer", 1, 1 },
  { "pad", "integer", 0, 0 },
  { "pool", "integer", 1 },
  { "pool_mode", "string", "avg" },
  { "storage", "string", "fp32" },
  { "variant", "table", optional = true },
}
local field_names = { field = "field '%s'", unknown = "unknown field '%s' in layer description" }

-- Largest element count a kernel indexes with 32-bit ints.
M.max_elements = util.INT_LIMIT

-- The tensors a layer's kernels index, in a fixed order (the errors are deterministic):
-- name, the product that gives its element count, and its factors.
local function tensor_factors(d, P, Q, HP, WP)
  return {
    { "x", "N*C*H*W", { d.N, d.C, d.H, d.W } },
    { "w", "K*C*R*S", { d.K, d.C, d.R, d.S } },
    { "y", "N*K*P*Q", { d.N, d.K, P, Q } },
    { "xp", "N*C*HP*WP", { d.N, d.C, HP, WP } },
  }
end

-- The checks of a description's sizes against 32-bit indexing (every field is an integer
-- >= its minimum already, and may be as large as math.maxinteger): the padded input plus
-- one stride along each axis (the kernels compute input rows from output rows and stride
-- phases within it), the kernel against the padded input, then each tensor's element
-- count, multiplied without overflow, which bounds every field in it. bad(fmt, ...) records
-- a problem; each names the layer and the extent or tensor.
function M.check_extents(d, bad)
  local name = d.name and string.format("layer '%s'", d.name) or "layer (unnamed)"
  local extent_ok = true
  for _, axis in ipairs { { "H", "height", d.H }, { "W", "width", d.W } } do
    -- Each term at most 2^31-1 first, so that the sum cannot wrap.
    local limit = util.INT_LIMIT
    if axis[3] > limit or d.pad > limit or d.stride > limit or axis[3] + 2 * d.pad + d.stride > limit then
      bad("%s: tensor x padded: its %s %s + 2*pad plus the stride (%s=%d, pad=%d, stride=%d) exceeds the 2^31-1 "
        .. "that 32-bit indexing allows", name, axis[2], axis[1], axis[1], axis[3], d.pad, d.stride)
      extent_ok = false
    end
  end
  if not extent_ok then return end
  if d.R > d.H + 2 * d.pad or d.S > d.W + 2 * d.pad then
    bad("kernel %dx%d is larger than the padded input %dx%d (H=%d, W=%d, pad=%d)",
      d.R, d.S, d.H + 2 * d.pad, d.W + 2 * d.pad, d.H, d.W, d.pad)
    return
  end
  local P = (d.H + 2 * d.pad - d.R) // d.stride + 1
  local Q = (d.W + 2 * d.pad - d.S) // d.stride + 1
  local HP, WP = util.ceil_div(d.H, d.pool), util.ceil_div(d.W, d.pool)
  for _, t in ipairs(tensor_factors(d, P, Q, HP, WP)) do
    if not util.bounded_product(t[3]) then
      bad("%s: tensor %s (%s = %s elements) is larger than the 2^31-1 elements that 32-bit indexing allows",
        name, t[1], t[2], util.product_text(t[3]))
    end
  end
end

-- raw: the table given to layer{}; where: {file, line}. Returns desc or raises all errors.
function M.validate(raw, where)
  local problems = {}
  local function bad(fmt, ...) problems[#problems + 1] = errors.new(where, fmt, ...) end
  if type(raw) ~= "table" then
    errors.raise(where, "layer description must be a table, got %s", type(raw))
  end
  local d = util.check_fields(raw, fields, field_names, bad)
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
  for _, key in ipairs(util.sorted_keys(d.variant)) do
    local v = d.variant[key]
    local known = false
    for _, op in ipairs(M.variant_ops) do known = known or key == op end
    if not known then
      bad("variant: unknown kernel '%s' (expected conv_fwd, conv_bwd_data or conv_bwd_weight)", tostring(key))
    elseif math.type(v) ~= "integer" or v < 0 then
      bad("variant.%s must be an integer >= 0, got %s", key, tostring(v))
    end
  end
  if #problems == 0 then M.check_extents(d, bad) end
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
  -- Lua reports "file:line: message"; its position is kept.
  local chunk, err = load(text, "@" .. chunkname, "t", env)
  if not chunk then util.raise_chunk_error(err, chunkname, 1) end
  local ok, err2 = pcall(chunk)
  if not ok then util.raise_chunk_error(err2, chunkname, 1) end
  errors.raise_all(problems)
  if #layers == 0 then
    errors.raise({ file = chunkname, line = 1 }, "no layer{...} in the description")
  end
  return layers
end

return M
