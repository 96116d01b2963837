-- lua_style.lua - checks Lua sources against the mechanical rules of stylua.toml where
-- StyLua itself is not installed: each file must compile (luac -p's check), indent with
-- 2-space steps and no tabs, end lines without blanks, end with a newline, and keep
-- lines within column_width. Usage: lua5.4 tools/lua_style.lua FILE...; exit 1 listing
-- every violation as FILE:LINE: what.
local COLUMN_WIDTH = 120
local failures = 0

local function fail(path, line, what)
  io.stderr:write(string.format("%s:%d: %s\n", path, line, what))
  failures = failures + 1
end

local function check(path)
  local f, err = io.open(path, "rb")
  if not f then
    fail(path, 0, "cannot read: " .. tostring(err))
    return
  end
  local text = f:read("a")
  f:close()
  local chunk, perr = load(text, "@" .. path, "t", {})
  if not chunk then fail(path, 0, "does not parse: " .. perr) end
  if #text > 0 and text:sub(-1) ~= "\n" then fail(path, 0, "no newline at the end") end
  local n, in_long_string = 0, false
  for line in text:gmatch("([^\n]*)\n") do
    n = n + 1
    -- Lines inside a long string or comment ([[ ... ]]) are content, not layout.
    if not in_long_string then
      if line:find("\t") then fail(path, n, "tab character") end
      local indent = #line:match("^ *")
      if indent % 2 ~= 0 then fail(path, n, "indent of " .. indent .. " spaces (steps of 2)") end
      if utf8.len(line) and utf8.len(line) > COLUMN_WIDTH then
        fail(path, n, "line of " .. utf8.len(line) .. " columns (at most " .. COLUMN_WIDTH .. ")")
      end
    end
    if line:find("[ \t]$") then fail(path, n, "trailing blank") end
    local opens = select(2, line:gsub("%[%[", "")) + select(2, line:gsub("%[=+%[", ""))
    local closes = select(2, line:gsub("%]%]", "")) + select(2, line:gsub("%]=+%]", ""))
    if opens > closes then in_long_string = true elseif closes > opens then in_long_string = false end
  end
end

for _, path in ipairs(arg) do check(path) end
if failures > 0 then
  io.stderr:write(string.format("lua_style: %d violation(s); stylua.toml states the rules\n", failures))
  os.exit(1)
end
