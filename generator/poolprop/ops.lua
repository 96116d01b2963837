-- ops.lua: kernel builders for the training step's ops other than the convolution
-- (layer.lua builds those): batch norm, ReLU masks, pooling, the classifier, the loss and
-- the optimizer. Each builder takes the op's parameters (shapes as integers, options) and
-- returns one kernel: { name, op, source, grid = {x,y,z}, block = {x,y,z}, args = {...} }
-- with args naming the kernel's parameters in order. Names are <op>_<signature>_v0 and
-- are identical for identical parameters, so kernels deduplicate by name.
local errors = require("poolprop.errors")

local M = { builders = {} }

function M.kernel(op, params)
  local build = M.builders[op]
  if not build then errors.raise(nil, "unknown op '%s'", tostring(op)) end
  return build(params)
end

return M
