-- errors.lua: the generator's one error type. Every error is reported as
-- "file:line: error: message"; a generator run that raised one writes nothing.
local M = {}

local GenError = {}
GenError.__index = GenError
GenError.__tostring = function(e)
  if not e.line or e.line <= 0 then return string.format("%s: error: %s", e.file or "?", e.message) end
  return string.format("%s:%d: error: %s", e.file or "?", e.line, e.message)
end

-- where: {file=..., line=...} or nil (then the message stands alone).
function M.raise(where, fmt, ...)
  local e = setmetatable({ message = string.format(fmt, ...) }, GenError)
  if where then e.file, e.line = where.file, where.line end
  error(e, 0)
end

-- As raise, for a request the generator cannot serve as asked (an argument that does not
-- fit another: a variant of the wrong math for the layer's storage); the runtime reports
-- it as an invalid argument.
function M.raise_invalid(where, fmt, ...)
  local e = setmetatable({ message = string.format(fmt, ...), kind = "invalid" }, GenError)
  if where then e.file, e.line = where.file, where.line end
  error(e, 0)
end

-- Raises one error holding several messages (a description can have many problems).
function M.raise_all(list)
  if #list == 0 then return end
  local lines = {}
  for i, e in ipairs(list) do lines[i] = M.format(e) end
  error(setmetatable({ message = table.concat(lines, "\n"), joined = true }, GenError), 0)
end

function M.new(where, fmt, ...)
  local e = setmetatable({ message = string.format(fmt, ...) }, GenError)
  if where then e.file, e.line = where.file, where.line end
  return e
end

function M.is_error(v) return getmetatable(v) == GenError end

-- Text of an error caught with pcall: generator errors as file:line, anything else
-- (a bug in the generator) with its traceback-free message.
function M.format(v)
  if getmetatable(v) == GenError then
    if v.joined then return v.message end
    if v.file then return tostring(v) end
    return "error: " .. v.message
  end
  return "internal generator error: " .. tostring(v)
end

return M
