-- network.lua: model descriptions and the network graph they expand to.
--
-- A model file (models/*.lua) is Lua evaluated in an environment offering the builders
-- below and returning one model spec, e.g.
--   return resnet { block = "bottleneck", layers = { 3, 4, 6, 3 } }   -- ResNet-50
--   return cifar_resnet { depth = 20 }                               -- CIFAR ResNet-20
-- instantiate(spec, {batch, height, width, classes}) expands a spec into a graph in
-- torchvision's topology and state_dict naming:
--   graph.params  { {key, shape, init, stage}, ... }    trainable, in state_dict order
--   graph.state   { {key, shape, init}, ... }           BN running statistics
--   graph.tensors { name = {N,C,H,W} or {N,F} }         activations
--   graph.layers  forward order; each { op, name, stage, input(s), output, ... }:
--     conv    { input, output, weight, C, K, R, S, stride, pad, H, W, P, Q }
--     bn      { input, output, C, weight, bias, running_mean, running_var,
--               relu = bool, residual = tensor name or nil }   (BN, + residual, ReLU)
--     maxpool { input, output, C, H, W, P, Q, R, stride, pad }
--     avgpool { input, output, C, H, W }
--     fc      { input, output, weight, bias, IN, OUT }
--     softmax_ce { input, labels = "labels", CLASSES }
local errors = require("poolprop.errors")
local util = require("poolprop.util")

local M = {}

-- The model file being loaded, for error positions: `return resnet {...}` is a tail call,
-- which leaves no frame of the model file on the stack to take the line from.
local loading = nil

local function where_of_caller()
  for level = 3, 8 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    if loading and info.source == "@" .. loading then return { file = loading, line = info.currentline } end
  end
  return { file = loading or "model", line = 0 }
end

-- Checks a builder's table against spec (util.check_fields' format; every field optional
-- there, the builder checks what a missing one means): the first problem raises
-- "<builder>: ...".
local function check_fields(raw, spec, where, builder)
  if type(raw) ~= "table" then errors.raise(where, "%s{...} expects a table, got %s", builder, type(raw)) end
  util.check_fields(raw, spec, { field = "field '%s'", unknown = "unknown field '%s'" },
    function(fmt, ...) errors.raise(where, "%s: " .. fmt, builder, ...) end)
end

-- Builders available to model files. Each returns a spec; nothing is expanded yet.
local builders = {}

function builders.resnet(raw)
  local where = where_of_caller()
  check_fields(raw, { { "block", "string", optional = true }, { "layers", "table", optional = true },
    { "name", "string", optional = true } }, where, "resnet")
  if raw.block ~= "basic" and raw.block ~= "bottleneck" then
    errors.raise(where, "resnet: block must be \"basic\" or \"bottleneck\", got %s", tostring(raw.block))
  end
  if type(raw.layers) ~= "table" or #raw.layers ~= 4 then
    errors.raise(where, "resnet: layers must list 4 block counts, e.g. { 2, 2, 2, 2 }")
  end
  for i, n in ipairs(raw.layers) do
    if math.type(n) ~= "integer" or n < 1 then
      errors.raise(where, "resnet: layers[%d] must be an integer >= 1, got %s", i, tostring(n))
    end
  end
  return { kind = "resnet", block = raw.block, layers = raw.layers, name = raw.name, where = where }
end

function builders.cifar_resnet(raw)
  local where = where_of_caller()
  check_fields(raw, { { "depth", "integer", optional = true }, { "name", "string", optional = true } }, where,
    "cifar_resnet")
  local d = raw.depth
  if math.type(d) ~= "integer" or d < 8 or (d - 2) % 6 ~= 0 then
    errors.raise(where, "cifar_resnet: depth must be 6n+2 with n >= 1 (8, 20, 32, 44, 56, 110), got %s", tostring(d))
  end
  return { kind = "cifar_resnet", blocks = (d - 2) // 6, name = raw.name or ("cifar_resnet" .. d), where = where }
end

-- Loads a model file's text; returns its spec or raises file:line errors.
function M.load_string(text, chunkname)
  local env = { math = math, string = string, ipairs = ipairs, pairs = pairs }
  for k, v in pairs(builders) do env[k] = v end
  local chunk, err = load(text, "@" .. chunkname, "t", env)
  if not chunk then util.raise_chunk_error(err, chunkname, 0) end
  loading = chunkname
  local ok, spec = pcall(chunk)
  loading = nil
  if not ok then util.raise_chunk_error(spec, chunkname, 0) end
  if type(spec) ~= "table" or not spec.kind then
    errors.raise({ file = chunkname, line = 0 },
      "a model file must return a model, e.g. `return resnet { block = \"basic\", layers = { 2, 2, 2, 2 } }`")
  end
  if not spec.name then spec.name = chunkname:match("([^/]+)%.lua$") or chunkname end
  return spec
end

-- ---- expansion ----

local function out_size(h, r, stride, pad) return (h + 2 * pad - r) // stride + 1 end

local Builder = {}
Builder.__index = Builder

local function new_graph(spec, o)
  return setmetatable({
    name = spec.name, where = spec.where, batch = o.batch, classes = o.classes,
    params = {}, state = {}, tensors = {}, layers = {}, stages = {}, count = 0,
  }, Builder)
end

function Builder:tensor(shape)
  self.count = self.count + 1
  local name = "t" .. self.count
  self.tensors[name] = shape
  return name
end

function Builder:param(key, shape, init, stage)
  self.params[#self.params + 1] = { key = key, shape = shape, init = init, stage = stage }
end

function Builder:stage(name)
  if not self.stages[name] then
    self.stages[name] = true
    self.stages[#self.stages + 1] = name
  end
  self.current_stage = name
end

-- conv (no bias) then BN; returns the BN output. relu/residual as for the bn layer.
function Builder:conv_bn(prefix, conv_key, bn_key, input, K, R, stride, pad, relu, residual)
  local shape = self.tensors[input]
  local N, C, H, W = shape[1], shape[2], shape[3], shape[4]
  if R > H + 2 * pad or R > W + 2 * pad then
    errors.raise(nil, "image %dx%d is too small for %s: %s%s (%dx%d kernel) would see %dx%d",
      self.height, self.width, self.name, prefix, conv_key, R, R, H + 2 * pad, W + 2 * pad)
  end
  if stride > 1 and (H < stride or W < stride) then
    errors.raise(nil, "image %dx%d is too small for %s: %s%s (stride %d) would see a %dx%d input",
      self.height, self.width, self.name, prefix, conv_key, stride, H, W)
  end
  local P, Q = out_size(H, R, stride, pad), out_size(W, R, stride, pad)
  local conv_out = self:tensor({ N, K, P, Q })
  local cname = prefix .. conv_key
  self:param(cname .. ".weight", { K, C, R, R }, "kaiming_normal_fan_out", self.current_stage)
  self.layers[#self.layers + 1] = { op = "conv", name = cname, stage = self.current_stage,
    input = input, output = conv_out, weight = cname .. ".weight",
    N = N, C = C, K = K, R = R, S = R, stride = stride, pad = pad, H = H, W = W, P = P, Q = Q }
  local bname = prefix .. bn_key
  self:param(bname .. ".weight", { K }, "ones", self.current_stage)
  self:param(bname .. ".bias", { K }, "zeros", self.current_stage)
  self.state[#self.state + 1] = { key = bname .. ".running_mean", shape = { K }, init = "zeros" }
  self.state[#self.state + 1] = { key = bname .. ".running_var", shape = { K }, init = "ones" }
  local out = self:tensor({ N, K, P, Q })
  self.layers[#self.layers + 1] = { op = "bn", name = bname, stage = self.current_stage,
    input = conv_out, output = out, N = N, C = K, HW = P * Q,
    weight = bname .. ".weight", bias = bname .. ".bias",
    running_mean = bname .. ".running_mean", running_var = bname .. ".running_var",
    relu = relu, residual = residual }
  return out
end

function Builder:basic_block(prefix, input, planes, stride)
  local inplanes = self.tensors[input][2]
  local shortcut = input
  local h = self:conv_bn(prefix, "conv1", "bn1", input, planes, 3, stride, 1, true)
  if stride ~= 1 or inplanes ~= planes then
    shortcut = self:conv_bn(prefix, "downsample.0", "downsample.1", input, planes, 1, stride, 0, false)
  end
  return self:conv_bn(prefix, "conv2", "bn2", h, planes, 3, 1, 1, true, shortcut)
end

function Builder:bottleneck(prefix, input, planes, stride)
  local inplanes = self.tensors[input][2]
  local shortcut = input
  local h = self:conv_bn(prefix, "conv1", "bn1", input, planes, 1, 1, 0, true)
  h = self:conv_bn(prefix, "conv2", "bn2", h, planes, 3, stride, 1, true)
  if stride ~= 1 or inplanes ~= planes * 4 then
    shortcut = self:conv_bn(prefix, "downsample.0", "downsample.1", input, planes * 4, 1, stride, 0, false)
  end
  return self:conv_bn(prefix, "conv3", "bn3", h, planes * 4, 1, 1, 0, true, shortcut)
end

function Builder:head(input)
  local s = self.tensors[input]
  local N, C = s[1], s[2]
  local pooled = self:tensor({ N, C })
  self.layers[#self.layers + 1] = { op = "avgpool", name = "avgpool", stage = "head", input = input,
    output = pooled, N = N, C = C, H = s[3], W = s[4] }
  self:stage("head")
  self:param("fc.weight", { self.classes, C }, "linear_weight", "head")
  self:param("fc.bias", { self.classes }, "linear_bias", "head")
  local logits = self:tensor({ N, self.classes })
  self.layers[#self.layers + 1] = { op = "fc", name = "fc", stage = "head", input = pooled, output = logits,
    weight = "fc.weight", bias = "fc.bias", N = N, IN = C, OUT = self.classes }
  self.layers[#self.layers + 1] = { op = "softmax_ce", name = "loss", stage = "head", input = logits,
    labels = "labels", N = N, CLASSES = self.classes }
  self.logits = logits
end

-- Raises unless every tensor the kernels index (activations in layer order, then each
-- parameter, then all parameters together: the optimizer's flat arrays) has at most 2^31-1
-- elements, naming the first that does not: the network input, or the layer whose output
-- or parameter it is. Products are taken without overflow (util.bounded_product); the
-- parameter counts cannot wrap (sizes below 2^31, channels at most 2048).
local function check_sizes(g)
  local function check(shape, what, advice)
    if not util.bounded_product(shape) then
      local dims = {}
      for i, d in ipairs(shape) do dims[i] = string.format("%d", d) end
      errors.raise(nil, "%s: %s of shape %s has %s elements, more than the 2^31-1 that 32-bit indexing allows: %s",
        g.name, what, table.concat(dims, "x"), util.product_text(shape), advice)
    end
  end
  local smaller = "lower the batch or image size"
  check(g.tensors[g.input], string.format("the input tensor %s", g.input), smaller)
  for _, l in ipairs(g.layers) do
    if l.output then
      check(g.tensors[l.output], string.format("layer %s: tensor %s (its output)", l.name, l.output), smaller)
    end
  end
  for _, p in ipairs(g.params) do check(p.shape, string.format("parameter %s", p.key), "lower the class count") end
  if g.param_count > util.INT_LIMIT then
    errors.raise(nil, "%s: its parameters (%d values) are more than the 2^31-1 that 32-bit indexing allows (the "
      .. "optimizer updates them as one array): lower the class count", g.name, g.param_count)
  end
end

-- options: { batch, height, width, classes, channels = 3 }
function M.instantiate(spec, o)
  for _, key in ipairs { "batch", "height", "width", "classes" } do
    if math.type(o[key]) ~= "integer" or o[key] < 1 then
      errors.raise(nil, "%s must be an integer >= 1, got %s", key, tostring(o[key]))
    end
    -- (Every tensor is checked after expansion; this bound keeps the expansion's own sums
    -- and products of two sizes from wrapping.)
    if o[key] > util.INT_LIMIT then
      errors.raise(nil, "%s must be at most 2^31-1 = %d (32-bit indexing), got %d", key, util.INT_LIMIT, o[key])
    end
  end
  local g = new_graph(spec, o)
  g.height, g.width = o.height, o.width
  g.input = "x"
  g.tensors.x = { o.batch, o.channels or 3, o.height, o.width }
  g:stage("stem")
  if spec.kind == "resnet" then
    local h = g:conv_bn("", "conv1", "bn1", "x", 64, 7, 2, 3, true)
    local s = g.tensors[h]
    if s[3] < 2 or s[4] < 2 then
      errors.raise(nil, "image %dx%d is too small for %s: the max pool (stride 2) would see a %dx%d input",
        o.height, o.width, g.name, s[3], s[4])
    end
    local P, Q = out_size(s[3], 3, 2, 1), out_size(s[4], 3, 2, 1)
    local pooled = g:tensor({ s[1], s[2], P, Q })
    g.layers[#g.layers + 1] = { op = "maxpool", name = "maxpool", stage = "stem", input = h, output = pooled,
      N = s[1], C = s[2], H = s[3], W = s[4], P = P, Q = Q, R = 3, stride = 2, pad = 1 }
    h = pooled
    local block = spec.block == "basic" and g.basic_block or g.bottleneck
    local planes = { 64, 128, 256, 512 }
    for stage, count in ipairs(spec.layers) do
      g:stage("stage" .. stage)
      for b = 0, count - 1 do
        local stride = (b == 0 and stage > 1) and 2 or 1
        h = block(g, string.format("layer%d.%d.", stage, b), h, planes[stage], stride)
      end
    end
    g:head(h)
  else -- cifar_resnet: 3x3 stem, three stages of 16/32/64 channels, basic blocks
    local h = g:conv_bn("", "conv1", "bn1", "x", 16, 3, 1, 1, true)
    local planes = { 16, 32, 64 }
    for stage = 1, 3 do
      g:stage("stage" .. stage)
      for b = 0, spec.blocks - 1 do
        local stride = (b == 0 and stage > 1) and 2 or 1
        h = g:basic_block(string.format("layer%d.%d.", stage, b), h, planes[stage], stride)
      end
    end
    g:head(h)
  end
  g.param_count = 0
  for _, p in ipairs(g.params) do
    local n = util.elems(p.shape)
    p.count = n
    -- Convolution weights start on a 16-byte boundary: the kernels copy them 16 bytes at
    -- a time (torchvision's ResNets need no padding: their counts are multiples of 4).
    if #p.shape == 4 then g.param_count = (g.param_count + 3) // 4 * 4 end
    p.offset = g.param_count
    g.param_count = g.param_count + n
  end
  g.state_count = 0
  for _, s in ipairs(g.state) do
    s.count = s.shape[1]
    s.offset = g.state_count
    g.state_count = g.state_count + s.count
  end
  check_sizes(g)
  return g
end

return M
