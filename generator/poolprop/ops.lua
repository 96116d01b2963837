-- ops.lua: kernel builders for the training step's ops other than the convolution
-- (layer.lua builds those): batch norm, ReLU masks, pooling, the classifier, the loss and
-- the optimizer. Each builder takes the op's parameters (shapes as integers, options) and
-- returns one kernel: { name, op, source, grid = {x,y,z}, block = {x,y,z}, args = {...} }
-- with args naming the kernel's parameters in order. Names are <op>_<signature>_v0 and
-- are identical for identical parameters, so kernels deduplicate by name.
--
-- Activation tensors are channels-last (NHWC): element (n,hw,c) of an (N,HW,C) tensor is at
-- (n*HW + hw)*C + c, element (n,h,w,c) of an (N,H,W,C) one at ((n*H + h)*W + w)*C + c (the
-- parameters still read N C HW / N C H W); per-channel vectors are (C), the classifier's
-- tensors (N,C) / (N,IN) / (OUT,IN). Masks are bit-packed uint32 words over a tensor's flat
-- index (element i is bit i%32 of word i/32, ceil(count/32) words); bf16 tensors are uint16
-- bit patterns. Shapes are baked into the source. Each template's opening comment is the
-- kernel's full contract.
--
-- Activation storage: every tensor is float32 unless listed as bf16. ACT_BF16 (0|1, 0) stores
-- the args marked * below as bf16 (rounded to nearest even once when written, widened
-- exactly when read); arithmetic stays fp32 inside every kernel, and per-channel vectors
-- (mean, invstd, gamma, beta, running stats, dgamma, dbeta), partials, masks, argmax, the
-- classifier (fc_*, softmax_ce*, avgpool_fwd's y, avgpool_bwd's dy) and the weights stay as
-- they are. A kernel writing a bf16 tensor derives everything else from the value as stored
-- (bn_apply's mask bit, the pool-saves). ACT_BF16 = 1 adds _actbf16 to the name; with 0 the
-- name, args and arithmetic are the fp32 kernel's.
--
-- op            parameters (default)                        args, in order (* bf16 if ACT_BF16)
-- bn_stats      N C HW, MOMENTUM (0.1), EPS (1e-5),         y* mean invstd running_mean running_var
--               ACT_BF16
-- bn_stats_part N C HW SLICES, ACT_BF16                     y* partials (SLICES*C*3 + C floats)
-- bn_stats_merge C PARTS M, SHIFT (0|1, 0), MOMENTUM (0.1),  partials mean invstd running_mean
--               EPS (1e-5), WORLD (1)                       running_var (partials from conv_fwd,
--                                                           or with SHIFT 1 from bn_stats_part;
--                                                           WORLD > 1: the partials of WORLD
--                                                           ranks merged in, M*WORLD values)
-- bn_apply      N C HW, RELU ADD SAVE_BF16 EVAL (0|1, 0),   y* mean invstd gamma beta residual* out*
--               EPS (1e-5), ACT_BF16                        mask y_bf16 running_mean running_var
-- bn_backward   N C HW, MASK (0 none | 1 bit mask |         dout* mask y mean invstd gamma dgamma
--               2 ReLU output, 0), BF16 RES (0|1, 0),       dbeta dy* dres* (y: bf16 if BF16;
--               ACT_BF16                                    mask under MASK 2: the ReLU output, *)
-- bn_backward_sums N C HW SLICES, MASK BF16 ACT_BF16        dout* mask y mean invstd partials
--               (as above)                                  (SLICES*C*2 floats)
-- bn_backward_dx N C HW SLICES, MASK BF16 RES ACT_BF16,     dout* mask y mean invstd gamma partials
--               WORLD (1) (sums over WORLD ranks' batches)  dgamma dbeta dy* dres*
-- bn_apply_pool N C H W, RELU ADD SAVE_BF16 (0|1, 0),      y* mean invstd gamma beta residual*
--               ACT_BF16, POOL_F (2|4|8), POOL_F2           out* mask y_bf16 xp* xp2* (bn_apply in
--               (1|2|4, 1), POOL_MAX (0|1, 0)               training, also writing the pool-save
--                                                           of out)
-- relu_mask_fwd COUNT                                       x y mask (the standalone ReLU of
--                                                           poolprop.torch; float only, y may be x)
-- relu_mask_bwd COUNT                                       dy mask dx (dx may be dy)
-- maxpool_fwd   N C H W, R (3) STRIDE (2) PAD (1), ACT_BF16 x* y* argmax
-- maxpool_fwd_pool N C H W, R STRIDE PAD ACT_BF16 (as       x* y* argmax xp* xp2* (maxpool_fwd,
--               above), POOL_F POOL_F2 POOL_MAX (as         also writing the pool-save of y)
--               bn_apply_pool)
-- maxpool_bwd   N C H W, R (3) STRIDE (2) PAD (1), ACT_BF16 dy* argmax dx*
-- avgpool_fwd   N C HW, ACT_BF16                            x* y (y: fp32, the classifier's input)
-- avgpool_bwd   N C HW, ACT_BF16                            dy dx* (dy: fp32, from fc_bwd_data)
-- fc_fwd        N IN OUT                                    x w b y
-- fc_bwd_data   N IN OUT                                    dy w dx
-- fc_bwd_weight N IN OUT                                    dy x dw db
-- softmax_ce    N CLASSES                                   logits labels loss (2 floats: mean loss,
--                                                           correct predictions) dlogits
-- softmax_ce_rows N CLASSES                                 logits labels rows (N*2 floats) dlogits
-- softmax_ce_reduce N                                       rows loss
-- sgd           COUNT, SHADOW (0|1, 0)                      params grads momentum_buf [shadow] lr
--                                                           momentum weight_decay (the last three:
--                                                           float scalars passed by value; shadow,
--                                                           only with SHADOW 1: (COUNT) bf16, the
--                                                           updated params rounded, for convolutions
--                                                           with bf16 storage; params stay fp32)
-- Storage option rules: SAVE_BF16 (a separate bf16 copy of a float y) with ACT_BF16 is an
-- error (y is bf16 already; the plan saves y itself). The BN backward kernels' BF16 (y as
-- bf16) is implied by ACT_BF16: BF16 = 1 with ACT_BF16 = 1 is accepted and gives the same
-- kernel as BF16 = 0 with ACT_BF16 = 1. The sliced pairs take the same ACT_BF16 as each other.
-- Pool-saves under ACT_BF16: xp = bf16 of the fp32 mean (or max) of the window's elements as
-- stored (the bf16 outputs widened), summed in the order templates/pool_save.cuh states: what
-- pooling the stored tensor gives, so a consumer sees exactly what un-pooling it would.
-- Sliced forms: where one block per CT channels would leave the GPU short of blocks
-- (large N*HW, few channels), the plan runs bn_stats as bn_stats_part + bn_stats_merge
-- (SHIFT 1) and bn_backward as bn_backward_sums + bn_backward_dx, with SLICES =
-- M.bn_slices(N*HW, C) row slices per channel block and the partials in a workspace; and
-- softmax_ce, for more rows than its one block has warps (M.softmax_multi_block), as
-- softmax_ce_rows + softmax_ce_reduce. Each merge adds in a fixed order: deterministic.
-- Shape parameters are positive integers; each, every element count (multiplied without
-- overflow) and an elementwise grid's blocks times THREADS must fit an int (< 2^31);
-- bn_stats needs N*HW >= 2 (the unbiased running variance divides by N*HW - 1); maxpool
-- needs PAD <= R/2 (every window holds an element of x), R*R <= 256 (argmax is a byte)
-- and at least one output; softmax_ce keeps 2N floats in shared memory: N <= 4096;
-- the sliced forms need SLICES <= N*HW (every slice holds a row).
-- Pool-save forms (bn_apply_pool, maxpool_fwd_pool): the producer of a convolution's input
-- writes the input pooled by POOL_F (xp) and, for a second convolution pooling it by
-- another factor, by POOL_F2 (xp2; 1: none), which must divide POOL_F (factors are
-- powers of two, so the larger of any two is the one named POOL_F); POOL_MAX: max instead
-- of avg. Bitwise conv_fwd's pool-save of the same tensor (templates/pool_save.cuh).
-- Unknown, missing or out-of-range parameters are errors ("error: <op>: ...").
local emit = require("poolprop.emit")
local errors = require("poolprop.errors")
local util = require("poolprop.util")

local M = { builders = {} }

local INT_LIMIT = util.INT_LIMIT
local ceil_div = util.ceil_div

-- The float32 value x rounds to (the kernels see float constants).
local function f32(x) return (string.unpack("<f", string.pack("<f", x))) end

-- A float as a name fragment: the shortest decimal that reads back as the same float32,
-- '.' -> 'p', '-' -> 'm', '+' dropped (0.2 -> 0p2, 1e-05 -> 1em05). Equal float32 values
-- give equal fragments.
local function float_tag(x)
  local v, text = f32(x), nil
  for digits = 1, 9 do
    text = string.format("%." .. digits .. "g", v)
    if f32(tonumber(text)) == v then break end
  end
  return (text:gsub("%.", "p"):gsub("%-", "m"):gsub("%+", ""))
end

-- Validates params against spec (util.check_fields' format: { {name, kind, default,
-- extra}, ... }, a parameter without a default required; kinds "shape", "natural",
-- "flag", "choice", "float") and returns a table of checked values; the first problem
-- raises "<op>: ...".
local function check(op, params, spec)
  if type(params) ~= "table" then errors.raise(nil, "%s: parameters must be a table", op) end
  local names = { field = "parameter %s", unknown = "unknown parameter '%s' (parameters: %s)" }
  return util.check_fields(params, spec, names, function(fmt, ...) errors.raise(nil, "%s: " .. fmt, op, ...) end)
end

-- Raises unless an element count, the product of factors (plus extra, when given), fits an
-- int; returns it. The factors are multiplied without overflow (util.bounded_product).
local function check_count(op, what, factors, extra)
  local count = util.bounded_product(factors)
  if count and extra then count = count + extra end
  if not count or count > INT_LIMIT then
    local text = count and string.format("%d", count) or util.product_text(factors)
    errors.raise(nil, "%s: %s = %s elements, beyond the %d an int indexes", op, what, text, INT_LIMIT)
  end
  return count
end

-- Header line of the generated file: the op and all its parameters, in spec order.
local function describe_params(op, p, spec)
  local parts = {}
  for i, s in ipairs(spec) do
    local v = p[s[1]]
    parts[i] = s[1] .. "=" .. (math.type(v) == "float" and string.format("%.9g", v) or tostring(v))
  end
  return string.format("op:        %s %s", op, table.concat(parts, " "))
end

-- One kernel. k: { op, sig, template (default templates/<op>.cu), parts, constants, grid,
-- threads, args, params, spec, extents }; extents (optional): the elements a block spans
-- along each grid axis ({ THREADS } where a thread's index is blockIdx.x * THREADS +
-- threadIdx.x), so that no index passes 2^31-1 (util.check_grid).
local function kernel(k)
  local name = string.format("%s_%s_v0", k.op, k.sig)
  local grid = { k.grid[1], k.grid[2] or 1, k.grid[3] or 1 }
  util.check_grid(nil, k.op .. ": ", name, grid, k.extents)
  local parts = util.push_all({ "templates/ops_common.cuh" }, k.parts or {})
  local constants = util.push_all({}, k.constants)
  constants[#constants + 1] = { "THREADS", k.threads }
  return {
    name = name, op = k.op, variant = 0, config = {},
    grid = grid, block = { k.threads, 1, 1 }, args = k.args,
    source = emit.kernel_source { kernel = name, op = k.op, template = k.template or "templates/" .. k.op .. ".cu",
      parts = parts, constants = constants, header = { describe_params(k.op, k.params, k.spec) } },
  }
end

-- Threads for the one-block-per-channel(-group) reductions over m values per channel:
-- enough warps to keep many loads in flight on large channels, fewer on small ones.
local function channel_threads(m)
  if m >= 8192 then return 512 end
  if m >= 1024 then return 256 end
  return 128
end

-- Channels per block of the reductions over channels-last data (bn_stats, bn_backward,
-- avgpool_fwd): threads run along the channels, CT per pixel row, so a warp reads 32/CT
-- rows of CT consecutive channels. CT = 8 floats is one 32-byte sector per row: every
-- fetched sector is fully used, while a wider tile would leave fewer blocks (C/CT) to
-- spread over the GPU. Fewer channels: the next power of two >= C.
local function channel_tile(c)
  local ct = 1
  while ct < c and ct < 8 do ct = ct * 2 end
  return ct
end

local ELEMENTWISE_THREADS = 256

-- Row slices per channel block of the sliced BN reductions over m rows of c channels
-- (bn_stats_part, bn_backward_sums / bn_backward_dx): enough that the grid,
-- ceil(c/CT) x slices, has FILL_BLOCKS blocks (two per SM of a 132-SM GPU, so that a block
-- waiting on memory has a partner), but no slice under MIN_SLICE_ROWS rows, where the
-- partials and the merge would cost more than the parallelism gains. 1 (the one-pass
-- kernels) for small m or where the channel blocks alone fill the GPU. The partials cost
-- SLICES*C*3 (stats) or *2 (backward) floats of workspace.
local FILL_BLOCKS, MIN_SLICE_ROWS = 264, 512

function M.bn_slices(m, c)
  local blocks = ceil_div(c, channel_tile(c))
  local s = math.min(ceil_div(FILL_BLOCKS, blocks), m // MIN_SLICE_ROWS)
  return s > 1 and s or 1
end

-- softmax_ce's one block gives every row its own warp up to this many rows; larger batches
-- use softmax_ce_rows (one warp per row, SOFTMAX_ROW_WARPS rows per block) + softmax_ce_reduce.
local SOFTMAX_THREADS, SOFTMAX_ROW_WARPS = 512, 1

function M.softmax_multi_block(n) return n > SOFTMAX_THREADS // 32 end

-- ACT_BF16, the activation storage option (ops that take activations): 1 stores the
-- op's activation tensors as bf16 bits (the table at the top names which), 0 as float.
local ACT_BF16 = { "ACT_BF16", "flag", 0 }

-- Name fragment of the activation storage: none for float (the fp32 kernels keep their names).
local function act_sig(p) return p.ACT_BF16 == 1 and "_actbf16" or "" end

-- ---- batch norm ----

local bn_stats_spec = {
  { "N", "shape" }, { "C", "shape" }, { "HW", "shape" },
  { "MOMENTUM", "float", 0.1, { 0.0, 1.0 } }, { "EPS", "float", 1e-5, { 0.0, 1.0, true } }, ACT_BF16,
}

local function bn_sig(p) return string.format("n%dc%dhw%d", p.N, p.C, p.HW) end

-- Name fragments for float parameters that differ from their defaults.
local function float_sig(p, spec)
  local s = ""
  for _, e in ipairs(spec) do
    if e[2] == "float" and f32(p[e[1]]) ~= f32(e[3]) then s = s .. "_" .. e[1]:lower() .. float_tag(p[e[1]]) end
  end
  return s
end

M.builders.bn_stats = function(params)
  local op, spec = "bn_stats", bn_stats_spec
  local p = check(op, params, spec)
  check_count(op, "N*C*HW", { p.N, p.C, p.HW })
  local m = p.N * p.HW
  if m < 2 then
    errors.raise(nil, "%s: N*HW = %d: batch statistics need at least 2 values per channel", op, m)
  end
  local threads, ct = channel_threads(m), channel_tile(p.C)
  return kernel { op = op, sig = bn_sig(p) .. float_sig(p, spec) .. act_sig(p), params = p, spec = spec,
    constants = { { "N", p.N }, { "C", p.C }, { "HW", p.HW }, { "M", m }, { "CT", ct }, { "PG", threads // ct },
      { "MOMENTUM", f32(p.MOMENTUM) }, { "EPS", f32(p.EPS) }, { "ACT_BF16", p.ACT_BF16 } },
    grid = { ceil_div(p.C, ct) }, threads = threads,
    args = { "y", "mean", "invstd", "running_mean", "running_var" } }
end

-- Raises unless 1 <= SLICES <= m (every slice of the m rows holds one).
local function check_slices(op, p, m)
  if p.SLICES > m then
    errors.raise(nil, "%s: SLICES = %d exceeds N*HW = %d: a slice would hold no row", op, p.SLICES, m)
  end
end

-- The sliced form of bn_stats, first pass: (count, shifted mean, M2) per (slice, channel)
-- for bn_stats_merge with SHIFT 1 and PARTS = SLICES.
local bn_stats_part_spec = { { "N", "shape" }, { "C", "shape" }, { "HW", "shape" }, { "SLICES", "shape" }, ACT_BF16 }

M.builders.bn_stats_part = function(params)
  local op, spec = "bn_stats_part", bn_stats_part_spec
  local p = check(op, params, spec)
  check_count(op, "N*C*HW", { p.N, p.C, p.HW })
  local m = p.N * p.HW
  check_slices(op, p, m)
  check_count(op, "SLICES*C*3 + C", { p.SLICES, p.C, 3 }, p.C)
  local threads, ct = channel_threads(ceil_div(m, p.SLICES)), channel_tile(p.C)
  return kernel { op = op, sig = bn_sig(p) .. string.format("_s%d", p.SLICES) .. act_sig(p), params = p, spec = spec,
    constants = { { "N", p.N }, { "C", p.C }, { "HW", p.HW }, { "M", m }, { "SLICES", p.SLICES }, { "CT", ct },
      { "PG", threads // ct }, { "ACT_BF16", p.ACT_BF16 } },
    grid = { ceil_div(p.C, ct), p.SLICES }, threads = threads, args = { "y", "partials" } }
end

-- The statistics of BN inputs that are convolution outputs: conv_fwd (with stats) leaves
-- PARTS partial (count, mean, M2) per channel; this merges them. M = N*HW. SHIFT 1: the
-- partials of bn_stats_part (means relative to shifts stored after them).
local bn_stats_merge_spec = {
  { "C", "shape" }, { "PARTS", "shape" }, { "M", "shape" }, { "SHIFT", "flag", 0 },
  { "MOMENTUM", "float", 0.1, { 0.0, 1.0 } }, { "EPS", "float", 1e-5, { 0.0, 1.0, true } }, { "WORLD", "shape", 1 },
}

M.builders.bn_stats_merge = function(params)
  local op, spec = "bn_stats_merge", bn_stats_merge_spec
  local p = check(op, params, spec)
  check_count(op, "PARTS*C*3 + C", { p.PARTS, p.C, 3 }, p.C)
  if p.M < 2 then
    errors.raise(nil, "%s: M = %d: batch statistics need at least 2 values per channel", op, p.M)
  end
  return kernel { op = op,
    sig = string.format("c%dparts%dm%d", p.C, p.PARTS, p.M) .. (p.SHIFT == 1 and "_shift" or "") .. float_sig(p, spec)
      .. (p.WORLD > 1 and string.format("_w%d", p.WORLD) or ""),
    params = p, spec = spec,
    constants = { { "C", p.C }, { "PARTS", p.PARTS }, { "M", p.M }, { "SHIFT", p.SHIFT },
      { "MOMENTUM", f32(p.MOMENTUM) }, { "EPS", f32(p.EPS) }, { "MG", p.M * p.WORLD } },
    grid = { p.C }, threads = channel_threads(p.PARTS * 8),
    args = { "partials", "mean", "invstd", "running_mean", "running_var" } }
end

local bn_apply_spec = {
  { "N", "shape" }, { "C", "shape" }, { "HW", "shape" }, { "RELU", "flag", 0 }, { "ADD", "flag", 0 },
  { "SAVE_BF16", "flag", 0 }, { "EVAL", "flag", 0 }, { "EPS", "float", 1e-5, { 0.0, 1.0, true } }, ACT_BF16,
}

-- SAVE_BF16 (a bf16 copy of a float y for BN's backward) has nothing to do under ACT_BF16:
-- y is bf16 already and the plan saves y itself.
local function check_save_bf16(op, p)
  if p.ACT_BF16 == 1 and p.SAVE_BF16 == 1 then
    errors.raise(nil, "%s: SAVE_BF16 = 1 with ACT_BF16 = 1: y is already stored in bf16 (save y itself)", op)
  end
end

M.builders.bn_apply = function(params)
  local op, spec = "bn_apply", bn_apply_spec
  local p = check(op, params, spec)
  check_save_bf16(op, p)
  local count = check_count(op, "N*C*HW", { p.N, p.C, p.HW })
  local sig = bn_sig(p)
  for _, f in ipairs { { "RELU", "relu" }, { "ADD", "add" }, { "SAVE_BF16", "bf16" }, { "EVAL", "eval" } } do
    if p[f[1]] == 1 then sig = sig .. "_" .. f[2] end
  end
  return kernel { op = op, sig = sig .. float_sig(p, spec) .. act_sig(p), params = p, spec = spec,
    parts = { "templates/bn_apply_value.cuh" },
    constants = { { "N", p.N }, { "C", p.C }, { "HW", p.HW }, { "COUNT", count }, { "RELU", p.RELU },
      { "ADD", p.ADD }, { "SAVE_BF16", p.SAVE_BF16 }, { "EVAL", p.EVAL }, { "EPS", f32(p.EPS) },
      { "ACT_BF16", p.ACT_BF16 } },
    grid = { ceil_div(count, ELEMENTWISE_THREADS) }, threads = ELEMENTWISE_THREADS, extents = { ELEMENTWISE_THREADS },
    args = { "y", "mean", "invstd", "gamma", "beta", "residual", "out", "mask", "y_bf16", "running_mean",
      "running_var" } }
end

-- The pool-save parameters both pool-save forms take, after their own.
local pool_save_spec = { { "POOL_F", "choice", nil, { 2, 4, 8 } }, { "POOL_F2", "choice", 1, { 1, 2, 4 } },
  { "POOL_MAX", "flag", 0 } }

local function with_pool_save(spec) return util.push_all(util.push_all({}, spec), pool_save_spec) end

-- Checks POOL_F2 against POOL_F; returns the name fragment (_f4avg, _f4f2max) and the
-- pool-save constants of a produced (N, xh, xw, C) tensor (templates/pool_save.cuh), with
-- WINDOWS, the POOL_F windows the threads own.
local function pool_save(op, p, n, xh, xw)
  if p.POOL_F2 > 1 and (p.POOL_F2 >= p.POOL_F or p.POOL_F % p.POOL_F2 ~= 0) then
    errors.raise(nil, "%s: POOL_F2 = %d must be 1 or a proper divisor of POOL_F = %d", op, p.POOL_F2, p.POOL_F)
  end
  local hp, wp = ceil_div(xh, p.POOL_F), ceil_div(xw, p.POOL_F)
  local hp2, wp2 = ceil_div(xh, p.POOL_F2), ceil_div(xw, p.POOL_F2)
  local sig = string.format("_f%d", p.POOL_F) .. (p.POOL_F2 > 1 and string.format("f%d", p.POOL_F2) or "") ..
    (p.POOL_MAX == 1 and "max" or "avg")
  return sig, { { "XH", xh }, { "XW", xw }, { "POOL_F", p.POOL_F }, { "POOL_F2", p.POOL_F2 },
    { "POOL_MAX", p.POOL_MAX }, { "HP", hp }, { "WP", wp }, { "HP2", hp2 }, { "WP2", wp2 },
    { "WINDOWS", n * hp * wp } }, n * hp * wp
end

local bn_apply_pool_spec = with_pool_save {
  { "N", "shape" }, { "C", "shape" }, { "H", "shape" }, { "W", "shape" }, { "RELU", "flag", 0 }, { "ADD", "flag", 0 },
  { "SAVE_BF16", "flag", 0 }, ACT_BF16,
}

-- bn_apply's training form that also pools what it writes; a thread owns a POOL_F window of
-- one channel. CG: the mask's run of lanes (the largest power of two dividing C, at most 32).
M.builders.bn_apply_pool = function(params)
  local op, spec = "bn_apply_pool", bn_apply_pool_spec
  local p = check(op, params, spec)
  check_save_bf16(op, p)
  local count = check_count(op, "N*C*H*W", { p.N, p.C, p.H, p.W })
  local sig = string.format("n%dc%dh%dw%d", p.N, p.C, p.H, p.W)
  for _, f in ipairs { { "RELU", "relu" }, { "ADD", "add" }, { "SAVE_BF16", "bf16" } } do
    if p[f[1]] == 1 then sig = sig .. "_" .. f[2] end
  end
  local pool_sig, pool_constants, windows = pool_save(op, p, p.N, p.H, p.W)
  local cg = 1
  while cg < 32 and p.C % (cg * 2) == 0 do cg = cg * 2 end
  local constants = { { "N", p.N }, { "C", p.C }, { "H", p.H }, { "W", p.W }, { "HW", p.H * p.W },
    { "COUNT", count }, { "RELU", p.RELU }, { "ADD", p.ADD }, { "SAVE_BF16", p.SAVE_BF16 },
    { "ACT_BF16", p.ACT_BF16 }, { "CG", cg } }
  util.push_all(constants, pool_constants)
  return kernel { op = op, sig = sig .. pool_sig .. act_sig(p), params = p, spec = spec,
    parts = { "templates/bn_apply_value.cuh", "templates/pool_save.cuh" }, constants = constants,
    grid = { ceil_div(windows * p.C, ELEMENTWISE_THREADS) }, threads = ELEMENTWISE_THREADS,
    extents = { ELEMENTWISE_THREADS },
    args = { "y", "mean", "invstd", "gamma", "beta", "residual", "out", "mask", "y_bf16", "xp", "xp2" } }
end

local bn_backward_spec = {
  { "N", "shape" }, { "C", "shape" }, { "HW", "shape" }, { "MASK", "choice", 0, { 0, 1, 2 } },
  { "BF16", "flag", 0 }, { "RES", "flag", 0 }, ACT_BF16,
}

-- The BN backward kernels' storage options: ACT_BF16 implies BF16 (y is an activation), so
-- BF16 = 1 is accepted with it and changes nothing (p.BF16 is set: one kernel, one name and
-- one source for both spellings). Returns the name fragment of BF16 alone (_bf16); ACT_BF16's
-- _actbf16 ends the name as for the other ops.
local function bn_backward_storage(p)
  if p.ACT_BF16 == 1 then
    p.BF16 = 1
    return ""
  end
  return p.BF16 == 1 and "_bf16" or ""
end

M.builders.bn_backward = function(params)
  local op, spec = "bn_backward", bn_backward_spec
  local p = check(op, params, spec)
  check_count(op, "N*C*HW", { p.N, p.C, p.HW })
  local m = p.N * p.HW
  local sig = bn_sig(p) .. ({ "", "_mask", "_maskf32" })[p.MASK + 1] .. bn_backward_storage(p)
  if p.RES == 1 then sig = sig .. "_res" end
  local threads, ct = channel_threads(m), channel_tile(p.C)
  return kernel { op = op, sig = sig .. act_sig(p), params = p, spec = spec,
    parts = { "templates/bn_backward_common.cuh" },
    constants = { { "N", p.N }, { "C", p.C }, { "HW", p.HW }, { "M", m }, { "MASK", p.MASK },
      { "BF16", p.BF16 }, { "RES", p.RES }, { "ACT_BF16", p.ACT_BF16 }, { "CT", ct }, { "PG", threads // ct } },
    grid = { ceil_div(p.C, ct) }, threads = threads,
    args = { "dout", "mask", "y", "mean", "invstd", "gamma", "dgamma", "dbeta", "dy", "dres" } }
end

-- The sliced form of bn_backward: bn_backward_sums writes (sum dz, sum dz*xhat) per
-- (slice, channel); bn_backward_dx (same N C HW MASK BF16 SLICES) merges them and computes dy.
local bn_backward_sums_spec = {
  { "N", "shape" }, { "C", "shape" }, { "HW", "shape" }, { "SLICES", "shape" },
  { "MASK", "choice", 0, { 0, 1, 2 } }, { "BF16", "flag", 0 }, ACT_BF16,
}
local bn_backward_dx_spec = {
  { "N", "shape" }, { "C", "shape" }, { "HW", "shape" }, { "SLICES", "shape" },
  { "MASK", "choice", 0, { 0, 1, 2 } }, { "BF16", "flag", 0 }, { "RES", "flag", 0 }, ACT_BF16, { "WORLD", "shape", 1 },
}

local function bn_backward_sliced(op, spec, params, args)
  local p = check(op, params, spec)
  check_count(op, "N*C*HW", { p.N, p.C, p.HW })
  local m = p.N * p.HW
  check_slices(op, p, m)
  check_count(op, "SLICES*C*2", { p.SLICES, p.C, 2 })
  local sig = bn_sig(p) .. string.format("_s%d", p.SLICES) .. ({ "", "_mask", "_maskf32" })[p.MASK + 1] ..
    bn_backward_storage(p)
  if p.RES == 1 then sig = sig .. "_res" end
  sig = sig .. act_sig(p)
  if p.WORLD and p.WORLD > 1 then sig = sig .. string.format("_w%d", p.WORLD) end
  local threads, ct = channel_threads(ceil_div(m, p.SLICES)), channel_tile(p.C)
  local constants = { { "N", p.N }, { "C", p.C }, { "HW", p.HW }, { "M", m }, { "SLICES", p.SLICES },
    { "MASK", p.MASK }, { "BF16", p.BF16 } }
  if p.RES then constants[#constants + 1] = { "RES", p.RES } end
  constants[#constants + 1] = { "ACT_BF16", p.ACT_BF16 }
  constants[#constants + 1] = { "CT", ct }
  constants[#constants + 1] = { "PG", threads // ct }
  constants[#constants + 1] = { "MG", m * (p.WORLD or 1) }
  constants[#constants + 1] = { "WORLD", p.WORLD or 1 }
  return kernel { op = op, sig = sig, params = p, spec = spec, parts = { "templates/bn_backward_common.cuh" },
    constants = constants, grid = { ceil_div(p.C, ct), p.SLICES }, threads = threads, args = args }
end

M.builders.bn_backward_sums = function(params)
  return bn_backward_sliced("bn_backward_sums", bn_backward_sums_spec, params,
    { "dout", "mask", "y", "mean", "invstd", "partials" })
end

M.builders.bn_backward_dx = function(params)
  return bn_backward_sliced("bn_backward_dx", bn_backward_dx_spec, params,
    { "dout", "mask", "y", "mean", "invstd", "gamma", "partials", "dgamma", "dbeta", "dy", "dres" })
end

-- ---- ReLU ----

-- The ReLU on its own (a framework's ReLU module, where no BN precedes it to fuse with):
-- elementwise over COUNT floats, the mask bit-packed over the flat index.
local relu_spec = { { "COUNT", "shape" } }

local function relu_kernel(op, params, args)
  local p = check(op, params, relu_spec)
  return kernel { op = op, sig = string.format("count%d", p.COUNT), params = p, spec = relu_spec,
    constants = { { "COUNT", p.COUNT } }, grid = { ceil_div(p.COUNT, ELEMENTWISE_THREADS) },
    threads = ELEMENTWISE_THREADS, extents = { ELEMENTWISE_THREADS }, args = args }
end

M.builders.relu_mask_fwd = function(params) return relu_kernel("relu_mask_fwd", params, { "x", "y", "mask" }) end

M.builders.relu_mask_bwd = function(params) return relu_kernel("relu_mask_bwd", params, { "dy", "mask", "dx" }) end

-- ---- pooling ----

local maxpool_spec = {
  { "N", "shape" }, { "C", "shape" }, { "H", "shape" }, { "W", "shape" }, { "R", "shape", 3 },
  { "STRIDE", "shape", 2 }, { "PAD", "natural", 1 }, ACT_BF16,
}

local function maxpool_shape(op, params, spec)
  local p = check(op, params, spec or maxpool_spec)
  if p.PAD > p.R // 2 then
    errors.raise(nil, "%s: PAD = %d exceeds R/2 = %d: a window could lie in the padding alone", op, p.PAD, p.R // 2)
  end
  if p.R * p.R > 256 then errors.raise(nil, "%s: R = %d: the argmax byte holds window positions up to 255", op, p.R) end
  if p.H + 2 * p.PAD < p.R or p.W + 2 * p.PAD < p.R then
    errors.raise(nil, "%s: the %dx%d window does not fit the padded %dx%d input", op, p.R, p.R, p.H + 2 * p.PAD,
      p.W + 2 * p.PAD)
  end
  p.P = (p.H + 2 * p.PAD - p.R) // p.STRIDE + 1
  p.Q = (p.W + 2 * p.PAD - p.R) // p.STRIDE + 1
  check_count(op, "N*C*H*W", { p.N, p.C, p.H, p.W })
  check_count(op, "N*C*P*Q", { p.N, p.C, p.P, p.Q })
  local sig = string.format("n%dc%dh%dw%d_r%ds%dp%d", p.N, p.C, p.H, p.W, p.R, p.STRIDE, p.PAD)
  return p, sig
end

local function maxpool_constants(p, count)
  return { { "N", p.N }, { "C", p.C }, { "H", p.H }, { "W", p.W }, { "R", p.R }, { "STRIDE", p.STRIDE },
    { "PAD", p.PAD }, { "P", p.P }, { "Q", p.Q }, { "COUNT", count }, { "ACT_BF16", p.ACT_BF16 } }
end

M.builders.maxpool_fwd = function(params)
  local op = "maxpool_fwd"
  local p, sig = maxpool_shape(op, params)
  local count = p.N * p.C * p.P * p.Q
  return kernel { op = op, sig = sig .. act_sig(p), params = p, spec = maxpool_spec,
    parts = { "templates/maxpool_window.cuh" },
    constants = maxpool_constants(p, count),
    grid = { ceil_div(count, ELEMENTWISE_THREADS) }, threads = ELEMENTWISE_THREADS, extents = { ELEMENTWISE_THREADS },
    args = { "x", "y", "argmax" } }
end

local maxpool_fwd_pool_spec = with_pool_save(maxpool_spec)

-- maxpool_fwd that also pools its output; a thread owns a POOL_F window of one channel of y.
M.builders.maxpool_fwd_pool = function(params)
  local op = "maxpool_fwd_pool"
  local p, sig = maxpool_shape(op, params, maxpool_fwd_pool_spec)
  local pool_sig, pool_constants, windows = pool_save(op, p, p.N, p.P, p.Q)
  local constants = maxpool_constants(p, p.N * p.C * p.P * p.Q)
  util.push_all(constants, pool_constants)
  return kernel { op = op, sig = sig .. pool_sig .. act_sig(p), params = p, spec = maxpool_fwd_pool_spec,
    parts = { "templates/maxpool_window.cuh", "templates/pool_save.cuh" }, constants = constants,
    grid = { ceil_div(windows * p.C, ELEMENTWISE_THREADS) }, threads = ELEMENTWISE_THREADS,
    extents = { ELEMENTWISE_THREADS }, args = { "x", "y", "argmax", "xp", "xp2" } }
end

M.builders.maxpool_bwd = function(params)
  local op = "maxpool_bwd"
  local p, sig = maxpool_shape(op, params)
  local count = p.N * p.C * p.H * p.W
  return kernel { op = op, sig = sig .. act_sig(p), params = p, spec = maxpool_spec,
    constants = maxpool_constants(p, count),
    grid = { ceil_div(count, ELEMENTWISE_THREADS) }, threads = ELEMENTWISE_THREADS, extents = { ELEMENTWISE_THREADS },
    args = { "dy", "argmax", "dx" } }
end

local avgpool_spec = { { "N", "shape" }, { "C", "shape" }, { "HW", "shape" }, ACT_BF16 }

M.builders.avgpool_fwd = function(params)
  local op = "avgpool_fwd"
  local p = check(op, params, avgpool_spec)
  check_count(op, "N*C*HW", { p.N, p.C, p.HW })
  -- 32 pixel groups of CT channels per block, one block per (image, channel group).
  local ct = channel_tile(p.C)
  local cb = ceil_div(p.C, ct)
  return kernel { op = op, sig = bn_sig(p) .. act_sig(p), params = p, spec = avgpool_spec,
    constants = { { "N", p.N }, { "C", p.C }, { "HW", p.HW }, { "CT", ct }, { "CB", cb }, { "PG", 32 },
      { "ACT_BF16", p.ACT_BF16 } },
    grid = { p.N * cb }, threads = 32 * ct, args = { "x", "y" } }
end

M.builders.avgpool_bwd = function(params)
  local op = "avgpool_bwd"
  local p = check(op, params, avgpool_spec)
  local count = check_count(op, "N*C*HW", { p.N, p.C, p.HW })
  return kernel { op = op, sig = bn_sig(p) .. act_sig(p), params = p, spec = avgpool_spec,
    constants = { { "N", p.N }, { "C", p.C }, { "HW", p.HW }, { "COUNT", count }, { "ACT_BF16", p.ACT_BF16 } },
    grid = { ceil_div(count, ELEMENTWISE_THREADS) }, threads = ELEMENTWISE_THREADS, extents = { ELEMENTWISE_THREADS },
    args = { "dy", "dx" } }
end

-- ---- fully connected ----

local fc_spec = { { "N", "shape" }, { "IN", "shape" }, { "OUT", "shape" } }

-- The GEMM tile: BN = 64 columns, BK = 16; BM (and TM) follow the row count so that a
-- small batch does not leave most of a tile empty. THREADS = (BM/TM)*(BN/TN) = 256.
local function fc_tile(gm)
  if gm <= 16 then return { BM = 16, TM = 1 } end
  if gm <= 32 then return { BM = 32, TM = 2 } end
  return { BM = 64, TM = 4 }
end

-- g: { GM, GN, GK, A_SM, A_SK, B_SK, B_SN }
local function fc_kernel(op, params, g, args)
  local p = check(op, params, fc_spec)
  check_count(op, "N*IN", { p.N, p.IN })
  check_count(op, "N*OUT", { p.N, p.OUT })
  check_count(op, "OUT*IN", { p.OUT, p.IN })
  g = g(p)
  local t = fc_tile(g.GM)
  local BN, BK, TN = 64, 16, 4
  local threads = (t.BM // t.TM) * (BN // TN)
  return kernel { op = op, sig = string.format("n%din%dout%d", p.N, p.IN, p.OUT), params = p, spec = fc_spec,
    parts = { "templates/fc_gemm.cuh" },
    constants = { { "N", p.N }, { "IN", p.IN }, { "OUT", p.OUT }, { "GM", g.GM }, { "GN", g.GN }, { "GK", g.GK },
      { "A_SM", g.A_SM }, { "A_SK", g.A_SK }, { "B_SK", g.B_SK }, { "B_SN", g.B_SN }, { "BM", t.BM },
      { "BN", BN }, { "BK", BK }, { "TM", t.TM }, { "TN", TN } },
    grid = { ceil_div(g.GM, t.BM), ceil_div(g.GN, BN) }, threads = threads, args = args }
end

M.builders.fc_fwd = function(params)
  return fc_kernel("fc_fwd", params, function(p)
    return { GM = p.N, GN = p.OUT, GK = p.IN, A_SM = p.IN, A_SK = 1, B_SK = 1, B_SN = p.IN }
  end, { "x", "w", "b", "y" })
end

M.builders.fc_bwd_data = function(params)
  return fc_kernel("fc_bwd_data", params, function(p)
    return { GM = p.N, GN = p.IN, GK = p.OUT, A_SM = p.OUT, A_SK = 1, B_SK = p.IN, B_SN = 1 }
  end, { "dy", "w", "dx" })
end

M.builders.fc_bwd_weight = function(params)
  return fc_kernel("fc_bwd_weight", params, function(p)
    return { GM = p.OUT, GN = p.IN, GK = p.N, A_SM = 1, A_SK = p.OUT, B_SK = p.IN, B_SN = 1 }
  end, { "dy", "x", "dw", "db" })
end

-- ---- loss and optimizer ----

local softmax_spec = { { "N", "shape" }, { "CLASSES", "shape" } }

M.builders.softmax_ce = function(params)
  local op = "softmax_ce"
  local p = check(op, params, softmax_spec)
  check_count(op, "N*CLASSES", { p.N, p.CLASSES })
  if p.N > 4096 then
    errors.raise(nil, "%s: N = %d: the single block keeps a loss and a hit per row in shared memory, at most 4096",
      op, p.N)
  end
  return kernel { op = op, sig = string.format("n%dk%d", p.N, p.CLASSES), params = p, spec = softmax_spec,
    parts = { "templates/softmax_ce_row.cuh" }, constants = { { "N", p.N }, { "CLASSES", p.CLASSES } },
    grid = { 1 }, threads = SOFTMAX_THREADS, args = { "logits", "labels", "loss", "dlogits" } }
end

-- The multi-block form: one warp per row, then the rows' sum in one block (with
-- softmax_ce's thread count, so the same additions as the one-block kernel).
M.builders.softmax_ce_rows = function(params)
  local op = "softmax_ce_rows"
  local p = check(op, params, softmax_spec)
  check_count(op, "N*CLASSES", { p.N, p.CLASSES })
  return kernel { op = op, sig = string.format("n%dk%d", p.N, p.CLASSES), params = p, spec = softmax_spec,
    parts = { "templates/softmax_ce_row.cuh" }, constants = { { "N", p.N }, { "CLASSES", p.CLASSES } },
    grid = { ceil_div(p.N, SOFTMAX_ROW_WARPS) }, threads = 32 * SOFTMAX_ROW_WARPS,
    args = { "logits", "labels", "rows", "dlogits" } }
end

local softmax_reduce_spec = { { "N", "shape" } }

M.builders.softmax_ce_reduce = function(params)
  local op = "softmax_ce_reduce"
  local p = check(op, params, softmax_reduce_spec)
  check_count(op, "N*2", { p.N, 2 })
  return kernel { op = op, sig = string.format("n%d", p.N), params = p, spec = softmax_reduce_spec,
    constants = { { "N", p.N } }, grid = { 1 }, threads = SOFTMAX_THREADS, args = { "rows", "loss" } }
end

local sgd_spec = { { "COUNT", "shape" }, { "SHADOW", "flag", 0 } }

-- SHADOW 1: templates/sgd_shadow.cu, the same update (templates/sgd_step.cuh) that also
-- writes the bf16 copy of the updated weights, an extra argument after momentum_buf.
M.builders.sgd = function(params)
  local op = "sgd"
  local p = check(op, params, sgd_spec)
  local args = { "params", "grads", "momentum_buf", "lr", "momentum", "weight_decay" }
  if p.SHADOW == 1 then table.insert(args, 4, "shadow") end
  return kernel { op = op, sig = string.format("count%d", p.COUNT) .. (p.SHADOW == 1 and "_shadow" or ""),
    params = p, spec = sgd_spec, template = p.SHADOW == 1 and "templates/sgd_shadow.cu" or nil,
    parts = { "templates/sgd_step.cuh" }, constants = { { "COUNT", p.COUNT } },
    grid = { ceil_div(p.COUNT, ELEMENTWISE_THREADS) }, threads = ELEMENTWISE_THREADS, extents = { ELEMENTWISE_THREADS },
    args = args }
end

function M.kernel(op, params)
  local build = M.builders[op]
  if not build then errors.raise(nil, "unknown op '%s'", tostring(op)) end
  return build(params)
end

return M
