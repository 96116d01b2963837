-- train.lua: the plan of one training step (and of inference) for a network graph under a
-- pooling policy: the kernel launches in order and every buffer they touch, with its
-- size and lifetime, from which the runtime places the arena and reports memory.
--
-- plan.steps: { phase = "forward"|"backward"|"update", layer, op, kernel, refs } in order,
--   kernel = { name, source, grid, block, args } (sources only with opts.sources),
--   refs[i] = what kernel argument i is bound to:
--     "buf:<name>"  an arena buffer        "param:<key>" / "grad:<key>" a parameter or its
--     "state:<key>" a BN running statistic               gradient in the flat arrays
--     "params" "grads" "momentum"  the whole flat arrays  "scalar:lr|momentum|weight_decay"
--     "null"        no buffer
-- plan.buffers: { name, bytes, kind, stage, first, last } with first/last the indices of
--   the first and last step that use it ("io" buffers live through the whole step). A
--   buffer is "saved" when it is written in the forward phase and read in the backward.
--   Workspaces (kind "workspace", counted in the report like any transient buffer):
--   bnpart:<conv output> the conv epilogue's BN partials, bnstats:<bn> / bnsums:<bn> the
--   sliced BN statistics / backward sums (ops.lua bn_slices), rowloss:<loss> the
--   multi-block softmax's per-row (loss, hit), partial:<conv> split-K partial dw.
-- plan.infer_steps / plan.infer_buffers: the same for inference (BN with running stats).
--
-- Storage (policy act): fp32, or bf16 for every activation tensor, its gradient and the
-- pooled saves, except the classifier head (the average pool's output, the fc output and
-- their gradients stay fp32). Under act=bf16 the convolutions read a bf16 copy of the
-- weights ("shadow:<key>" in the flat "shadow" array, param_count bf16 values written by
-- the runtime with every parameter upload and by sgd after every update), so the report's
-- weights count it; the network input x is rounded to bf16 as it is uploaded.
--
-- What each layer saves for backward (DESIGN.md section 1):
--   conv     its input pooled by f (xp), or the input itself when f = 1
--   bn       its input (the conv output) in fp32, or a bf16 copy (policy bn=bf16), and
--            the batch mean and 1/std per channel
--   relu     a 1-bit mask (the baseline policy keeps the full fp32 output instead)
--   maxpool  the index of the max in each window, 1 byte (baseline: 8, as PyTorch's int64)
--   fc       its input; softmax_ce computes dlogits in the forward pass
--
-- Who writes a conv's xp: the kernel that produces its input, where that is ours (a BN
-- apply in training, bn_apply_pool; the stem's max pool, maxpool_fwd_pool), pools what it
-- writes as it writes it, so the input is not read a second time for the save; the conv
-- then runs without its pool-save (conv_fwd "_nosave"). Only the network input (the stem
-- conv's x) is pooled by the conv itself. A producer serves at most two factors of one
-- mode for its output (xp, xp2; the consumers of a ResNet tensor are at most two convs);
-- any further (factor, mode) falls back to the conv's own pool-save. Convs sharing an
-- input and (factor, mode) share one copy, xp:<tensor>:f<f><mode>, whoever writes it; its
-- stage is the first consumer's, its lifetime starts at the writing step.
-- plan.save_traffic: per conv, the bytes its pool-save moves (see M.save_traffic).
local errors = require("poolprop.errors")
local layer = require("poolprop.layer")
local ops = require("poolprop.ops")
local util = require("poolprop.util")
local variants = require("poolprop.variants")

local M = {}

local elems = util.elems

local function mask_bytes(count) return util.ceil_div(count, 32) * 4 end

-- A conv layer of the graph as a layer.lua description, with the variant of each kernel:
-- the tuning database's (opts.tuned: key -> index) or the policy's math mode's default.
local function conv_desc(l, policy, opts)
  local d = layer.graph_desc(l, { name = l.name, variant = {}, where = { file = l.name, line = 0 } })
  local math_mode = policy.math or "fp32"
  if policy.act == "bf16" then d.storage = "bf16" end
  for _, op in ipairs(variants.ops) do
    local tuned = opts.tuned and opts.tuned[layer.tuning_key(op, d, math_mode)]
    if tuned and not variants.get(op, tuned) then tuned = nil end
    d.variant[op] = tuned or variants.default_index(op, math_mode)
  end
  l.variant = d.variant -- for reports (bench): the variants the plan runs
  return d
end

local Plan = {}
Plan.__index = Plan

-- M.layer_ops' entry for graph layer l, or an error naming it (defined below).
local layer_op

-- kernels: the built convolution kernels by key (Plan:conv_kernel), shared by the
-- training and inference plans of one build.
local function new_plan(graph, policy, opts, kernels)
  local bf16 = policy.act == "bf16"
  local head = {} -- tensors stored in fp32 whatever the policy: the classifier head's
  for _, l in ipairs(graph.layers) do
    if layer_op(l).head then head[l.output] = true end
  end
  return setmetatable({ graph = graph, policy = policy, opts = opts, steps = {}, buffers = {},
    by_name = {}, phase = "forward", bn_partials = {}, act_bytes = bf16 and 2 or 4, head = head,
    act_bf16 = bf16 and 1 or nil, kernels = kernels or {} }, Plan)
end

-- A convolution kernel of layer.lua (build: layer.kernel_fwd, kernel_bwd_data or
-- kernels_bwd_weight) for description d, built once per distinct (kernel, layer shape,
-- storage, variants, form a, b): a deep network repeats a few shapes thousands of times.
-- A kernel's source names the layer it was first built for, which is what the bundle (one
-- file per kernel name, the first layer's) wrote before.
function Plan:conv_kernel(build, d, s, a, b)
  local v = d.variant
  local key = string.format("%s:%s:%d:%d:%d:%s:%s", build, layer.signature(d), v.conv_fwd, v.conv_bwd_data,
    v.conv_bwd_weight, tostring(a), tostring(b))
  local built = self.kernels[key]
  if not built then
    built = table.pack(layer[build](d, s, a, b))
    self.kernels[key] = built
  end
  return table.unpack(built, 1, built.n)
end

-- Bytes per element of an activation tensor (and of its gradient).
function Plan:elem_bytes(tensor) return self.head[tensor] and 4 or self.act_bytes end

-- params with ACT_BF16 = 1 added under act=bf16 (left out otherwise, so fp32 kernels keep
-- their names).
function Plan:with_act(params)
  params.ACT_BF16 = self.act_bf16
  return params
end

-- What a convolution's weight argument binds: the parameter, or its bf16 copy.
function Plan:conv_weight(l) return (self.act_bf16 and "shadow:" or "param:") .. l.weight end

function Plan:buffer(name, bytes, kind, stage)
  local b = self.by_name[name]
  if b then return name end
  b = { name = name, bytes = bytes, kind = kind, stage = stage }
  self.by_name[name] = b
  self.buffers[#self.buffers + 1] = b
  return name
end

function Plan:tensor_buffer(tensor, stage)
  return self:buffer(tensor, elems(self.graph.tensors[tensor]) * self:elem_bytes(tensor), "activation", stage)
end

-- Adds a launch. kernel: a built kernel, or nil with (op, params) built later; bind maps
-- the kernel's argument names to refs.
function Plan:launch(layer_name, op, params, kernel, bind)
  local s = { phase = self.phase, layer = layer_name, op = op, params = params, kernel = kernel, bind = bind }
  self.steps[#self.steps + 1] = s
  local index = #self.steps
  for _, ref in pairs(bind) do
    local name = ref:match("^buf:(.*)$")
    if name then
      local b = self.by_name[name]
      if not b then errors.raise(nil, "plan: step %d (%s) uses unknown buffer %s", index, op, name) end
      b.first = b.first or index
      b.last = index
    end
  end
end

local function buf(name) return "buf:" .. name end

-- Marks the last step as one before which the ranks of synchronised BN exchange the
-- partials its kernel's "partials" argument reads: "bn_stats" (parts x channels x
-- (count, mean, M2), and with shift 1 a shift per channel after them) are merged,
-- "bn_sums" (parts x channels x (sum dz, sum dz*xhat)) are added. Nothing is marked without
-- synchronisation.
function Plan:sync_last(kind, parts, channels, shift)
  if (self.opts.sync_world or 1) == 1 then return end
  local s = self.steps[#self.steps]
  s.sync, s.sync_parts, s.sync_channels, s.sync_shift = kind, parts, channels, shift
end

local function xp_name(tensor, f, mode) return string.format("xp:%s:f%d%s", tensor, f, mode) end

-- The pool-saves producers write (training): tensor -> { mode, factors = { f, f2 } (larger
-- first), stages = { [f] = first consumer's stage } } for each output of a BN or max pool
-- layer that convs read with a factor above 1 (see the file header).
local function producer_saves(graph)
  local produced = {}
  for _, l in ipairs(graph.layers) do
    if layer_op(l).writes_saves then produced[l.output] = true end
  end
  local saves = {}
  for _, l in ipairs(graph.layers) do
    if l.op == "conv" and l.pool > 1 and produced[l.input] then
      local s = saves[l.input]
      if not s then
        s = { mode = l.pool_mode, factors = {}, stages = {} }
        saves[l.input] = s
      end
      if s.mode == l.pool_mode and not s.stages[l.pool] and #s.factors < 2 then
        s.factors[#s.factors + 1] = l.pool
        s.stages[l.pool] = l.stage
      end
    end
  end
  for _, s in pairs(saves) do table.sort(s.factors, function(a, b) return a > b end) end
  return saves
end

-- Whether tensor's producer writes its pool by f in mode (training only).
function Plan:produced_save(tensor, f, mode)
  local s = self.pool_saves and self.pool_saves[tensor]
  return s ~= nil and s.mode == mode and s.stages[f] ~= nil
end

-- For a producer's launch: its pool-save parameters (nil when it writes none) and the
-- refs of xp and xp2, creating those buffers. n, c, h, w: the produced tensor.
function Plan:pool_save_outputs(tensor, n, c, h, w)
  local s = self.pool_saves and self.pool_saves[tensor]
  if not s then return nil, "null", "null" end
  local refs = {}
  for i, f in ipairs(s.factors) do
    local name = xp_name(tensor, f, s.mode)
    refs[i] = buf(self:buffer(name, n * c * util.ceil_div(h, f) * util.ceil_div(w, f) * self.act_bytes, "saved",
      s.stages[f]))
  end
  return { POOL_F = s.factors[1], POOL_F2 = s.factors[2] or 1, POOL_MAX = s.mode == "max" and 1 or 0 },
    refs[1], refs[2] or "null"
end

function Plan:conv_forward(l)
  local d = conv_desc(l, self.policy, self.opts)
  local s = layer.shape(d)
  local xp = nil
  local save = false
  if l.pool > 1 then
    xp = xp_name(l.input, l.pool, l.pool_mode)
    -- Convs sharing an input and f share one saved copy; the input's producer may write it.
    local shared = self.save_counted[xp]
    save = not self.by_name[xp] and not self:produced_save(l.input, l.pool, l.pool_mode)
    self:buffer(xp, s.xp_elems * self.act_bytes, "saved", l.stage)
    self.save_traffic[#self.save_traffic + 1] = { layer = l.name, input = l.input, f = l.pool, mode = l.pool_mode,
      x_bytes = s.x_elems * self.act_bytes, xp_bytes = s.xp_elems * self.act_bytes,
      by = shared and "shared" or (save and "conv" or self.save_writer[xp]) }
    self.save_counted[xp] = true
  end
  l.saved_input = xp or l.input
  -- A BN that normalises this output takes its statistics from the convolution's
  -- epilogue (partials merged by bn_stats_merge) instead of reading the output again.
  local bn = self:bn_reading(l.output)
  local k = self:conv_kernel("kernel_fwd", d, s, save, bn ~= nil)
  self:tensor_buffer(l.output, l.stage)
  local partials = "null"
  if bn then
    partials = buf(self:buffer("bnpart:" .. l.output, k.stat_parts * d.K * 3 * 4, "workspace", l.stage))
    self.bn_partials[l.output] = { ref = partials, parts = k.stat_parts }
  end
  self:launch(l.name, "conv_fwd", nil, k, { x = buf(l.input), w = self:conv_weight(l), y = buf(l.output),
    xp = save and buf(xp) or "null", bn_partials = partials, null = "null" })
end

-- The BN layer whose input is tensor, if any.
function Plan:bn_reading(tensor)
  if not self.bn_inputs then
    self.bn_inputs = {}
    for _, l in ipairs(self.graph.layers) do
      if l.op == "bn" then self.bn_inputs[l.input] = l end
    end
  end
  return self.bn_inputs[tensor]
end

function Plan:bn_forward(l, train)
  local p = self.policy
  local out = self:tensor_buffer(l.output, l.stage)
  local params = self:with_act { N = l.N, C = l.C, HW = l.HW, RELU = l.relu and 1 or 0, ADD = l.residual and 1 or 0,
    SAVE_BF16 = (train and p.bn == "bf16") and 1 or 0, EVAL = train and 0 or 1 }
  local mean, invstd = "null", "null"
  if train then
    mean = buf(self:buffer("mean:" .. l.name, l.C * 4, "saved", l.stage))
    invstd = buf(self:buffer("invstd:" .. l.name, l.C * 4, "saved", l.stage))
    local part = self.bn_partials[l.input]
    -- Synchronised BN (opts.sync_world ranks): every merge reads partials, which the runtime
    -- merges with the other ranks' before the launch (the step's sync fields).
    local world = self.opts.sync_world or 1
    local merge_world = world > 1 and world or nil
    if part then
      self:launch(l.name, "bn_stats_merge", { C = l.C, PARTS = part.parts, M = l.N * l.HW, WORLD = merge_world }, nil,
        { partials = part.ref, mean = mean, invstd = invstd, running_mean = "state:" .. l.running_mean,
          running_var = "state:" .. l.running_var })
      self:sync_last("bn_stats", part.parts, l.C, 0)
    else
      local stats = { mean = mean, invstd = invstd, running_mean = "state:" .. l.running_mean,
        running_var = "state:" .. l.running_var }
      local m = l.N * l.HW
      local slices = ops.bn_slices(m, l.C)
      if slices == 1 and world == 1 then
        stats.y = buf(l.input)
        self:launch(l.name, "bn_stats", self:with_act { N = l.N, C = l.C, HW = l.HW }, nil, stats)
      else
        -- Sliced: per-slice partials (SLICES*C*3 floats and C shifts), merged in a fixed order.
        local part = buf(self:buffer("bnstats:" .. l.name, (slices * l.C * 3 + l.C) * 4, "workspace", l.stage))
        self:launch(l.name, "bn_stats_part", self:with_act { N = l.N, C = l.C, HW = l.HW, SLICES = slices }, nil,
          { y = buf(l.input), partials = part })
        stats.partials = part
        self:launch(l.name, "bn_stats_merge", { C = l.C, PARTS = slices, M = m, SHIFT = 1, WORLD = merge_world }, nil,
          stats)
        self:sync_last("bn_stats", slices, l.C, 1)
      end
    end
  end
  local mask, y_bf16 = "null", "null"
  if train and l.relu and p.relu == "mask" then
    mask = buf(self:buffer("mask:" .. l.output, mask_bytes(l.N * l.C * l.HW), "saved", l.stage))
  end
  if params.SAVE_BF16 == 1 then
    y_bf16 = buf(self:buffer("bf16:" .. l.input, l.N * l.C * l.HW * 2, "saved", l.stage))
  end
  -- In training, the pool-save of the output for the convs reading it, if any.
  local op, shape = "bn_apply", self.graph.tensors[l.output]
  local pool, xp, xp2 = nil, "null", "null"
  if train then pool, xp, xp2 = self:pool_save_outputs(l.output, l.N, l.C, shape[3], shape[4]) end
  if pool then
    op = "bn_apply_pool"
    params = self:with_act { N = l.N, C = l.C, H = shape[3], W = shape[4], RELU = params.RELU, ADD = params.ADD,
      SAVE_BF16 = params.SAVE_BF16, POOL_F = pool.POOL_F, POOL_F2 = pool.POOL_F2, POOL_MAX = pool.POOL_MAX }
    self:note_save_writer(l.output, l.name)
  end
  self:launch(l.name, op, params, nil, { y = buf(l.input), mean = mean, invstd = invstd,
    gamma = "param:" .. l.weight, beta = "param:" .. l.bias,
    residual = l.residual and buf(l.residual) or "null", out = buf(out), mask = mask, y_bf16 = y_bf16,
    running_mean = train and "null" or ("state:" .. l.running_mean),
    running_var = train and "null" or ("state:" .. l.running_var), xp = xp, xp2 = xp2 })
end

-- Records which layer writes the pool-saves of tensor (for save_traffic).
function Plan:note_save_writer(tensor, layer_name)
  local s = self.pool_saves[tensor]
  for _, f in ipairs(s.factors) do self.save_writer[xp_name(tensor, f, s.mode)] = layer_name end
end

-- ---- each graph op's launches: forward(plan, l, train) and backward(plan, l) ----

local function conv_forward(plan, l, train)
  if train then return plan:conv_forward(l) end
  local d = conv_desc(l, plan.policy, plan.opts)
  local k = plan:conv_kernel("kernel_fwd", d, layer.shape(d), false)
  plan:tensor_buffer(l.output, l.stage)
  plan:launch(l.name, "conv_fwd", nil, k, { x = buf(l.input), w = plan:conv_weight(l), y = buf(l.output),
    null = "null" })
end

local function conv_backward(plan, l)
  local d = conv_desc(l, plan.policy, plan.opts)
  local s = layer.shape(d)
  local kernels, partial = plan:conv_kernel("kernels_bwd_weight", d, s)
  local dy = buf("d:" .. l.output)
  local ws = "null"
  if partial > 0 then ws = buf(plan:buffer("partial:" .. l.name, partial * 4, "workspace", l.stage)) end
  plan:launch(l.name, "conv_bwd_weight", nil, kernels[1], { dy = dy, x = buf(l.saved_input),
    xp = buf(l.saved_input), dw = "grad:" .. l.weight, dw_partial = ws })
  if kernels[2] then
    plan:launch(l.name, "splitk_reduce", nil, kernels[2], { dw_partial = ws, dw = "grad:" .. l.weight })
  end
  if l.input ~= plan.graph.input then
    local dx, accumulate = plan:grad_target(l.input, l.stage)
    plan:launch(l.name, "conv_bwd_data", nil, plan:conv_kernel("kernel_bwd_data", d, s, accumulate),
      { dy = dy, w = plan:conv_weight(l), dx = dx })
  end
end

local function bn_backward(plan, l)
  local p = plan.policy
  local dy = plan:grad_target(l.input, l.stage)
  local dres = "null"
  if l.residual then
    local accumulate
    dres, accumulate = plan:grad_target(l.residual, l.stage)
    if accumulate then errors.raise(nil, "plan: %s: residual gradient written twice", l.name) end
  end
  local mask = "null"
  if l.relu then mask = p.relu == "mask" and buf("mask:" .. l.output) or buf(l.output) end
  local bf16 = p.bn == "bf16"
  -- MASK 1: the 1-bit mask; 2: the ReLU output itself (relu=full, the baseline).
  local params = plan:with_act { N = l.N, C = l.C, HW = l.HW, MASK = l.relu and (p.relu == "mask" and 1 or 2) or 0,
    BF16 = bf16 and 1 or 0, RES = l.residual and 1 or 0 }
  local bind = { dout = buf("d:" .. l.output), mask = mask, y = bf16 and buf("bf16:" .. l.input) or buf(l.input),
    mean = buf("mean:" .. l.name), invstd = buf("invstd:" .. l.name), gamma = "param:" .. l.weight,
    dgamma = "grad:" .. l.weight, dbeta = "grad:" .. l.bias, dy = dy, dres = dres }
  local slices = ops.bn_slices(l.N * l.HW, l.C)
  local world = plan.opts.sync_world or 1
  if slices == 1 and world == 1 then
    plan:launch(l.name, "bn_backward", params, nil, bind)
  else
    -- Sliced: per-slice (sum dz, sum dz*xhat) partials, merged in a fixed order by the dy pass.
    bind.partials = buf(plan:buffer("bnsums:" .. l.name, slices * l.C * 2 * 4, "workspace", l.stage))
    plan:launch(l.name, "bn_backward_sums", plan:with_act { N = l.N, C = l.C, HW = l.HW, SLICES = slices,
      MASK = params.MASK, BF16 = params.BF16 }, nil, { dout = bind.dout, mask = mask, y = bind.y, mean = bind.mean,
      invstd = bind.invstd, partials = bind.partials })
    params.SLICES = slices
    params.WORLD = world > 1 and world or nil
    plan:launch(l.name, "bn_backward_dx", params, nil, bind)
    plan:sync_last("bn_sums", slices, l.C, 0)
  end
end

local function maxpool_forward(plan, l, train)
  plan:tensor_buffer(l.output, l.stage)
  local bytes_per = plan.policy.baseline and 8 or 1
  local argmax = plan:buffer("argmax:" .. l.output, l.N * l.C * l.P * l.Q * bytes_per,
    train and "saved" or "workspace", l.stage)
  local params = plan:with_act { N = l.N, C = l.C, H = l.H, W = l.W, R = l.R, STRIDE = l.stride, PAD = l.pad }
  local pool, xp, xp2 = nil, "null", "null"
  if train then pool, xp, xp2 = plan:pool_save_outputs(l.output, l.N, l.C, l.P, l.Q) end
  local op = "maxpool_fwd"
  if pool then
    op = "maxpool_fwd_pool"
    for k, v in pairs(pool) do params[k] = v end
    plan:note_save_writer(l.output, l.name)
  end
  plan:launch(l.name, op, params, nil, { x = buf(l.input), y = buf(l.output), argmax = buf(argmax),
    xp = xp, xp2 = xp2 })
end

local function maxpool_backward(plan, l)
  local dx = plan:grad_target(l.input, l.stage)
  plan:launch(l.name, "maxpool_bwd", plan:with_act { N = l.N, C = l.C, H = l.H, W = l.W, R = l.R,
    STRIDE = l.stride, PAD = l.pad }, nil, { dy = buf("d:" .. l.output), argmax = buf("argmax:" .. l.output), dx = dx })
end

local function avgpool_forward(plan, l)
  plan:tensor_buffer(l.output, l.stage)
  plan:launch(l.name, "avgpool_fwd", plan:with_act { N = l.N, C = l.C, HW = l.H * l.W }, nil,
    { x = buf(l.input), y = buf(l.output) })
end

local function avgpool_backward(plan, l)
  local dx = plan:grad_target(l.input, l.stage)
  plan:launch(l.name, "avgpool_bwd", plan:with_act { N = l.N, C = l.C, HW = l.H * l.W }, nil,
    { dy = buf("d:" .. l.output), dx = dx })
end

local function fc_forward(plan, l)
  plan:tensor_buffer(l.output, l.stage)
  plan:launch(l.name, "fc_fwd", { N = l.N, IN = l.IN, OUT = l.OUT }, nil, { x = buf(l.input),
    w = "param:" .. l.weight, b = "param:" .. l.bias, y = buf(l.output) })
end

local function fc_backward(plan, l)
  plan:launch(l.name, "fc_bwd_weight", { N = l.N, IN = l.IN, OUT = l.OUT }, nil, { dy = buf("d:" .. l.output),
    x = buf(l.input), dw = "grad:" .. l.weight, db = "grad:" .. l.bias })
  local dx = plan:grad_target(l.input, l.stage)
  plan:launch(l.name, "fc_bwd_data", { N = l.N, IN = l.IN, OUT = l.OUT }, nil, { dy = buf("d:" .. l.output),
    w = "param:" .. l.weight, dx = dx })
end

-- The loss, in training only: it also writes dlogits, so it has no backward launch.
local function softmax_ce_forward(plan, l, train)
  if not train then return end
  plan:buffer("d:" .. l.input, elems(plan.graph.tensors[l.input]) * plan:elem_bytes(l.input), "gradient", l.stage)
  if ops.softmax_multi_block(l.N) then
    -- One warp per row over many blocks, then the rows' (loss, hit) summed in a fixed order.
    local rows = buf(plan:buffer("rowloss:" .. l.name, l.N * 2 * 4, "workspace", l.stage))
    plan:launch(l.name, "softmax_ce_rows", { N = l.N, CLASSES = l.CLASSES }, nil, { logits = buf(l.input),
      labels = buf("labels"), rows = rows, dlogits = buf("d:" .. l.input) })
    plan:launch(l.name, "softmax_ce_reduce", { N = l.N }, nil, { rows = rows, loss = buf("loss") })
  else
    plan:launch(l.name, "softmax_ce", { N = l.N, CLASSES = l.CLASSES }, nil, { logits = buf(l.input),
      labels = buf("labels"), loss = buf("loss"), dlogits = buf("d:" .. l.input) })
  end
end

-- Each graph op (network.lua): forward(plan, l, train) adds its forward launches (training
-- or inference), backward(plan, l) its backward launches (none: nothing to add);
-- head: its output stays fp32 whatever the policy (the classifier head); writes_saves: in
-- training it writes the pool-saves of the convs reading its output (see the file header).
M.layer_ops = {
  conv = { forward = conv_forward, backward = conv_backward },
  bn = { forward = function(plan, l, train) plan:bn_forward(l, train) end, backward = bn_backward,
    writes_saves = true },
  maxpool = { forward = maxpool_forward, backward = maxpool_backward, writes_saves = true },
  avgpool = { forward = avgpool_forward, backward = avgpool_backward, head = true },
  fc = { forward = fc_forward, backward = fc_backward, head = true },
  softmax_ce = { forward = softmax_ce_forward },
}

layer_op = function(l)
  local o = M.layer_ops[l.op]
  if not o then
    errors.raise(nil, "plan: layer %s has op '%s', which the plan does not know", tostring(l.name), tostring(l.op))
  end
  return o
end

function Plan:forward_layers(train)
  for _, l in ipairs(self.graph.layers) do layer_op(l).forward(self, l, train) end
end

-- The gradient buffer of a tensor, and whether a kernel writing it must accumulate.
function Plan:grad_target(tensor, stage)
  local name = "d:" .. tensor
  local exists = self.by_name[name] ~= nil and self.initialized[name]
  self:buffer(name, elems(self.graph.tensors[tensor]) * self:elem_bytes(tensor), "gradient", stage)
  self.initialized[name] = true
  return buf(name), exists
end

function Plan:backward_layers()
  local g = self.graph
  self.initialized = { ["d:" .. g.logits] = true }
  for i = #g.layers, 1, -1 do
    local backward = layer_op(g.layers[i]).backward
    if backward then backward(self, g.layers[i]) end
  end
end

-- Builds kernels for the steps that have none yet, and the argument refs of every step.
local function finish(plan, steps, sources)
  local ops = sources and require("poolprop.ops")
  -- ops.lua kernels depend on (op, params) alone: built once per distinct pair.
  local built = {}
  for _, s in ipairs(steps) do
    if sources and not s.kernel then
      local key = s.op .. util.config_string(s.params, ",", "%q")
      s.kernel = built[key] or ops.kernel(s.op, s.params)
      built[key] = s.kernel
    end
    if s.kernel then
      s.refs = {}
      for i, arg in ipairs(s.kernel.args) do
        local ref = s.bind[arg]
        if not ref then
          errors.raise(nil, "plan: kernel %s has argument '%s' that step %s does not bind", s.kernel.name, arg, s.op)
        end
        s.refs[i] = ref
      end
    end
  end
  local _ = plan
end

-- The io buffers live through the whole step: uploaded before it, read after it.
local function pin_io(buffers, last)
  for _, b in ipairs(buffers) do
    if b.kind == "io" then b.first, b.last = 1, last end
  end
end

local function remove_unused(plan)
  local kept = {}
  for _, b in ipairs(plan.buffers) do
    if b.first then kept[#kept + 1] = b end
  end
  plan.buffers = kept
end

-- opts: { sources = bool }. Returns the training plan with its inference plan.
function M.build(graph, policy, opts)
  opts = opts or {}
  local plan = new_plan(graph, policy, opts)
  plan.pool_saves, plan.save_traffic, plan.save_counted, plan.save_writer = producer_saves(graph), {}, {}, {}
  local N = graph.batch
  plan:buffer("x", elems(graph.tensors.x) * plan.act_bytes, "io", "input")
  plan:buffer("labels", N * 4, "io", "input")
  plan:buffer("loss", 8, "io", "head") -- mean loss, count of correct predictions
  plan:forward_layers(true)
  plan.forward_end = #plan.steps
  plan.math = policy.math or "fp32"
  plan.act = policy.act or "fp32"
  -- What a user compares this policy against: a framework's saves with the same storage.
  plan.baseline_policy = plan.act == "bf16" and "baseline,act=bf16" or "baseline"
  plan.phase = "backward"
  plan:backward_layers()
  plan.phase = "update"
  -- Under act=bf16 the update also refreshes the weights' bf16 copy.
  plan:launch("sgd", "sgd", { COUNT = graph.param_count, SHADOW = plan.act_bf16 }, nil, { params = "params",
    grads = "grads", momentum_buf = "momentum", shadow = "shadow", lr = "scalar:lr", momentum = "scalar:momentum",
    weight_decay = "scalar:weight_decay" })
  pin_io(plan.buffers, #plan.steps)
  remove_unused(plan)
  finish(plan, plan.steps, opts.sources)

  local infer = new_plan(graph, policy, opts, plan.kernels)
  infer:buffer("x", elems(graph.tensors.x) * infer.act_bytes, "io", "input")
  infer:forward_layers(false)
  infer.by_name[graph.logits].kind = "io"
  pin_io(infer.buffers, #infer.steps)
  remove_unused(infer)
  finish(infer, infer.steps, opts.sources)
  plan.infer_steps, plan.infer_buffers = infer.steps, infer.buffers
  plan.by_name, plan.initialized, plan.bn_partials, plan.bn_inputs, plan.kernels = nil, nil, nil, nil, nil
  plan.pool_saves, plan.save_counted, plan.save_writer = nil, nil, nil
  M.save_traffic(plan)

  M.report(plan)
  return plan
end

-- The bytes each conv's pool-save moves through memory (plan.save_traffic, one entry per
-- conv with f > 1, in forward order: { layer, input, f, mode, x_bytes, xp_bytes, by,
-- before, after }) and their sums (plan.save_traffic_total = { before, after }).
--   before: what the conv's own pool-save moved (the way every copy was made before the
--     producers wrote them): read x again (N*H*W*C*4) + write xp (N*HP*WP*C*4);
--   after: what this plan moves: write xp only where the producer of x writes it (by = its
--     layer), x + xp where the conv still pools (by = "conv": the network input);
--   by = "shared": a copy an earlier conv's entry counts, 0 both.
function M.save_traffic(plan)
  local total = { before = 0, after = 0 }
  for _, e in ipairs(plan.save_traffic) do
    if e.by == "shared" then
      e.before, e.after = 0, 0
    else
      e.before = e.x_bytes + e.xp_bytes
      e.after = e.by == "conv" and e.before or e.xp_bytes
    end
    total.before, total.after = total.before + e.before, total.after + e.after
  end
  plan.save_traffic_total = total
end

-- Memory figures that do not depend on buffer placement: bytes saved for backward per
-- stage (live across the forward/backward boundary), and the largest working set of the
-- other buffers at any step.
function M.report(plan)
  local g = plan.graph
  -- weights: the fp32 masters, and under act=bf16 their bf16 copy.
  local r = { weights = g.param_count * (plan.act == "bf16" and 6 or 4), gradients = g.param_count * 4,
    optimizer = g.param_count * 4, state = g.state_count * 4, saved_by_stage = {}, saved = 0, largest_transient = 0,
    live_peak = 0 }
  for _, b in ipairs(plan.buffers) do
    if b.kind ~= "io" and b.first <= plan.forward_end and b.last > plan.forward_end then
      b.saved = true
      r.saved = r.saved + b.bytes
      r.saved_by_stage[b.stage] = (r.saved_by_stage[b.stage] or 0) + b.bytes
    end
  end
  -- One sweep over the steps: a buffer's bytes join the sums at its first step and leave
  -- after its last (delta lists indexed by step), so the cost is steps + buffers.
  local live_delta, transient_delta = {}, {}
  for i = 1, #plan.steps + 1 do live_delta[i], transient_delta[i] = 0, 0 end
  for _, b in ipairs(plan.buffers) do
    live_delta[b.first] = live_delta[b.first] + b.bytes
    live_delta[b.last + 1] = live_delta[b.last + 1] - b.bytes
    if not b.saved and b.kind ~= "io" then
      transient_delta[b.first] = transient_delta[b.first] + b.bytes
      transient_delta[b.last + 1] = transient_delta[b.last + 1] - b.bytes
    end
  end
  local transient, live = 0, 0
  for i = 1, #plan.steps do
    live, transient = live + live_delta[i], transient + transient_delta[i]
    if transient > r.largest_transient then r.largest_transient = transient end
    if live > r.live_peak then r.live_peak = live end
  end
  plan.report = r
end

return M
