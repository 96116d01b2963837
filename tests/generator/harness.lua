-- harness.lua: the assertions and the summary line of the Lua tests. Each test prints
-- "ok" or "FAIL" with its name; finish() prints "N passed, N failed" and exits.
local errors = require("poolprop.errors")

local H = { passed = 0, failed = 0 }

function H.test(name, fn)
  local ok, err = pcall(fn)
  if ok then
    H.passed = H.passed + 1
    print("ok    " .. name)
  else
    H.failed = H.failed + 1
    print("FAIL  " .. name .. ": " .. (errors.is_error(err) and errors.format(err) or tostring(err)))
  end
end

function H.eq(got, want, what)
  if got ~= want then error(string.format("%s: got %s, want %s", what, tostring(got), tostring(want)), 2) end
end

function H.has(text, pattern, what)
  if not tostring(text):find(pattern) then
    error(string.format("%s: %q not found in:\n%s", what, pattern, tostring(text)), 2)
  end
end

-- fn must raise a generator error whose text matches pattern.
function H.raises(fn, pattern, what)
  local ok, err = pcall(fn)
  H.eq(ok, false, what .. " must fail")
  H.has(errors.format(err), pattern, what)
end

function H.finish()
  print(string.format("%d passed, %d failed", H.passed, H.failed))
  os.exit(H.failed == 0 and 0 or 1)
end

return H
