-- util.lua: helpers the generator's modules share: integer arithmetic bounded by the 32-bit
-- indexing the kernels assume (every element count, extent and offset a template computes
-- is an int), CUDA's grid limits, the sorted "key=value" text of a configuration, the one
-- spec format that layer descriptions, op parameters and model builders are checked with,
-- and the re-raising of errors from model and description chunks.
local errors = require("poolprop.errors")

local M = {}

-- The largest element count, extent or index a kernel computes with an int: 2^31 - 1.
M.INT_LIMIT = 2147483647

-- CUDA's grid limits in blocks: x up to 2^31 - 1, y and z up to 65535.
M.GRID_LIMITS = { 2147483647, 65535, 65535 }

-- ceil(a / b) for a >= 0, b >= 1 (a + b - 1 stays far below 2^63 for bounded a).
function M.ceil_div(a, b) return (a + b - 1) // b end

-- The product of the integers in list (each >= 0) when it is at most limit (default
-- INT_LIMIT), else nil. Each factor is compared with limit // product before multiplying,
-- so no intermediate product wraps around, whatever the factors (math.maxinteger too).
function M.bounded_product(list, limit)
  limit = limit or M.INT_LIMIT
  local p = 1
  for _, f in ipairs(list) do
    if f > 0 and p > limit // f then return nil end
    p = p * f
  end
  return p
end

-- A product's value as text for a message: exact when it fits 64 bits, else its float
-- approximation ("about 8.51e+37").
function M.product_text(list)
  local exact = M.bounded_product(list, math.maxinteger)
  if exact then return string.format("%d", exact) end
  local p = 1.0
  for _, f in ipairs(list) do p = p * f end
  return string.format("about %.3g", p)
end

-- The product of a shape's extents (already checked to fit).
function M.elems(shape)
  local n = 1
  for _, d in ipairs(shape) do n = n * d end
  return n
end

-- Raises unless grid = {x, y, z} fits CUDA's limits. prefix starts the message ("" or
-- "<op>: "); extents (optional) = {ex, ey, ez}: the elements one block spans along each
-- axis, whose product with the grid is the kernel's largest int index along that axis.
function M.check_grid(where, prefix, name, grid, extents)
  if grid[1] > M.GRID_LIMITS[1] or grid[2] > M.GRID_LIMITS[2] or grid[3] > M.GRID_LIMITS[3] then
    errors.raise(where, "%skernel %s needs a grid of %dx%dx%d blocks, beyond CUDA's limits", prefix, name, grid[1],
      grid[2], grid[3])
  end
  for axis, e in ipairs(extents or {}) do
    if not M.bounded_product({ grid[axis], e }) then
      errors.raise(where, "%skernel %s: %d blocks of %d along %s span %s elements, beyond the 2^31-1 that 32-bit "
        .. "indexing allows", prefix, name, grid[axis], e, ({ "x", "y", "z" })[axis], M.product_text { grid[axis], e })
    end
  end
end

-- A table's keys in a fixed order (by their text), so that whatever is built or reported
-- from them comes out the same every run (pairs() order is not fixed).
function M.sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

-- A configuration's entries as "key=value" in key order, joined by sep (" " by default);
-- fmt (optional) formats each value (string.format), else it is concatenated as it is.
function M.config_string(cfg, sep, fmt)
  local keys = M.sorted_keys(cfg)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = k .. "=" .. (fmt and string.format(fmt, cfg[k]) or cfg[k]) end
  return table.concat(parts, sep or " ")
end

-- ---- field validation: the one spec format of layer descriptions and op parameters ----
--
-- spec: a list of entries { name, kind, default, extra, optional = bool }, checked in order.
-- A field that is absent takes default; without a default it is missing (an error) unless
-- optional (then nil). Kinds (extra, where used):
--   "integer"  an integer (math.type) >= extra (a minimum, when given)
--   "shape"    a positive integer, or a float with an integer value, at most 2^31-1
--   "natural"  as "shape", >= 0
--   "flag"     0 or 1 (or a boolean)
--   "choice"   an integer listed in extra
--   "float"    a finite number in [extra[1], extra[2]] ((extra[1], ...] with extra[3])
--   "string", "table"  a value of that Lua type
-- names: { field = fmt naming one field ("field '%s'", "parameter %s"), unknown = fmt for an
-- unknown field, given its name and the list of known names }. bad(fmt, ...) reports a
-- problem (it may raise; if it returns, checking goes on and the field is nil). Returns the
-- checked values by name. Unknown fields come first, in the order of their names.

local function kind_of(v) return math.type(v) == "integer" and "integer" or type(v) end

-- The checked value of v for one entry, or nil after reporting through bad.
local function check_value(v, kind, extra, noun, bad)
  if kind == "integer" or kind == "string" or kind == "table" then
    if kind_of(v) ~= kind then
      bad("%s must be %s %s, got %s (%s)", noun, kind == "integer" and "an" or "a", kind, kind_of(v), tostring(v))
      return nil
    end
    if extra and v < extra then
      bad("%s must be >= %d, got %d", noun, extra, v)
      return nil
    end
    return v
  elseif kind == "shape" or kind == "natural" then
    local i = math.type(v) and math.tointeger(v)
    if not i or i < (kind == "shape" and 1 or 0) then
      bad("%s must be a %s integer, got %s", noun, kind == "shape" and "positive" or "non-negative", tostring(v))
      return nil
    end
    -- The value becomes an int constant of a kernel.
    if i > M.INT_LIMIT then
      bad("%s = %d is beyond the %d an int holds", noun, i, M.INT_LIMIT)
      return nil
    end
    return i
  elseif kind == "flag" then
    if v == true then v = 1 elseif v == false then v = 0 end
    local i = math.type(v) and math.tointeger(v)
    if i ~= 0 and i ~= 1 then
      bad("%s must be 0 or 1, got %s", noun, tostring(v))
      return nil
    end
    return i
  elseif kind == "choice" then
    local i = math.type(v) and math.tointeger(v)
    for _, allowed in ipairs(extra) do
      if i == allowed then return i end
    end
    local list = {}
    for j, allowed in ipairs(extra) do list[j] = tostring(allowed) end
    bad("%s must be one of %s, got %s", noun, table.concat(list, ", "), tostring(v))
    return nil
  elseif kind == "float" then
    if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
      bad("%s must be a finite number, got %s", noun, tostring(v))
      return nil
    end
    v = v + 0.0
    local lo, hi, lo_open = extra[1], extra[2], extra[3]
    if v < lo or v > hi or (lo_open and v == lo) then
      bad("%s must be in %s%g, %g], got %g", noun, lo_open and "(" or "[", lo, hi, v)
      return nil
    end
    return v
  end
  error("util.check_fields: unknown kind '" .. tostring(kind) .. "'")
end

function M.check_fields(values, spec, names, bad)
  local known, list = {}, {}
  for i, e in ipairs(spec) do
    known[e[1]] = true
    list[i] = e[1]
  end
  for _, k in ipairs(M.sorted_keys(values)) do
    if not known[k] then bad(names.unknown, tostring(k), table.concat(list, " ")) end
  end
  local out = {}
  for _, e in ipairs(spec) do
    local name, kind, default, extra = e[1], e[2], e[3], e[4]
    local v = values[name]
    if v == nil then v = default end
    if v == nil then
      if not e.optional then bad("missing %s", string.format(names.field, name)) end
    else
      out[name] = check_value(v, kind, extra, string.format(names.field, name), bad)
    end
  end
  return out
end

-- Re-raises an error from loading or running a model or description chunk: a generator
-- error as it is, Lua's "file:line: message" at that position, anything else at
-- chunkname:line.
function M.raise_chunk_error(e, chunkname, line)
  if errors.is_error(e) then error(e, 0) end
  local file, at, msg = tostring(e):match("^(.-):(%d+): (.*)$")
  -- Lua shortens a long chunk name in its messages to "..." and its tail: name the whole file.
  if file and file:sub(1, 3) == "..." and chunkname:sub(-(#file - 3)) == file:sub(4) then file = chunkname end
  if file then errors.raise({ file = file, line = tonumber(at) }, "%s", msg) end
  errors.raise({ file = chunkname, line = line }, "%s", tostring(e))
end

-- Appends the items of list to out; returns out.
function M.push_all(out, list)
  for _, item in ipairs(list) do out[#out + 1] = item end
  return out
end

return M
