-- files.lua: how the generator reads its templates. Standalone (lua5.4 with the source
-- tree), it reads from M.root; the runtime, which carries the templates inside the
-- library, replaces M.read before the generator runs.
local M = { root = "." }

function M.read(path)
  local f, err = io.open(M.root .. "/" .. path, "rb")
  if not f then error("cannot read " .. path .. ": " .. tostring(err), 0) end
  local text = f:read("a")
  f:close()
  return text
end

return M
