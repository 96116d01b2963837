-- emit.lua: turns a template and a set of constants into one kernel's source. The result
-- is a complete translation unit that NVRTC compiles as it is:
--   header comment (what it was generated from) | prelude | namespace with the constants
--   | the template with ${KERNEL} substituted, under #line directives so compiler
--   messages point at templates/<op>.cu
-- Several kernels' sources can be concatenated into one translation unit.
local files = require("poolprop.files")
local errors = require("poolprop.errors")

local M = {}

M.generator_version = "poolprop-generator 0.1.0"

-- Appends text to a buffer (a list of strings) and counts lines, for #line directives.
local Buffer = {}
Buffer.__index = Buffer
local function new_buffer() return setmetatable({ parts = {}, lines = 0 }, Buffer) end
function Buffer:add(text)
  self.parts[#self.parts + 1] = text
  local _, n = text:gsub("\n", "")
  self.lines = self.lines + n
end
function Buffer:text() return table.concat(self.parts) end

-- A C float literal that rounds to the same float32 as x.
local function float_literal(x)
  return string.format("%.9ef", x)
end

local function ensure_newline(text)
  if text:sub(-1) ~= "\n" then return text .. "\n" end
  return text
end

-- spec: { kernel = name, op = "conv_fwd", template = "templates/conv_fwd.cu",
--         parts = { "templates/gemm_tile.cuh", ... },  -- emitted before the template, in
--                                                      -- the namespace (they see the constants)
--         constants = { {name, value}, ... },  -- integer -> constexpr int, float -> constexpr float
--         header = { "line", ... } }
function M.kernel_source(spec)
  local template = files.read(spec.template)
  local missing = {}
  local body = template:gsub("%${([%w_]+)}", function(key)
    if key == "KERNEL" then return spec.kernel end
    missing[#missing + 1] = key
    return nil
  end)
  if #missing > 0 then
    errors.raise({ file = spec.template, line = 1 }, "template uses unknown placeholder ${%s}", missing[1])
  end
  local prelude = files.read("templates/prelude.cuh")
  local file_name = spec.kernel .. ".cu"
  local b = new_buffer()
  b:add("// " .. file_name .. ": generated: do not edit.\n")
  b:add("// generator: " .. M.generator_version .. "\n")
  b:add("// template:  " .. spec.template .. "\n")
  for _, part in ipairs(spec.parts or {}) do b:add("//   with:    " .. part .. "\n") end
  for _, line in ipairs(spec.header or {}) do b:add("// " .. line .. "\n") end
  b:add('#line 1 "templates/prelude.cuh"\n')
  b:add(ensure_newline(prelude))
  b:add(string.format('#line %d "%s"\n', b.lines + 2, file_name))
  b:add("namespace pp_" .. spec.kernel .. " {\n")
  for _, c in ipairs(spec.constants) do
    if math.type(c[2]) == "float" then
      b:add(string.format("constexpr float %s = %s;\n", c[1], float_literal(c[2])))
    else
      b:add(string.format("constexpr int %s = %d;\n", c[1], c[2]))
    end
  end
  for _, part in ipairs(spec.parts or {}) do
    b:add(string.format('#line 1 "%s"\n', part))
    b:add(ensure_newline(files.read(part)))
  end
  b:add(string.format('#line 1 "%s"\n', spec.template))
  b:add(ensure_newline(body))
  b:add(string.format('#line %d "%s"\n', b.lines + 2, file_name))
  b:add("} // namespace pp_" .. spec.kernel .. "\n")
  return b:text()
end

return M
