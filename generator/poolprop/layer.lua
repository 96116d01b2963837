-- layer.lua: the kernels and the plan of one convolution layer.
-- In: a validated description (describe.lua). Out:
--   { shape = {P, Q, HP, WP, ...},
--     buffers = { {name, elems, dtype}, ... },               -- dtype "fp32" or "bf16"
--     kernels = { {name, op, source, grid = {x,y,z}, block = {x,y,z},
--                  args = {buffer names}, config = {...}}, ... } }  -- in launch order
-- Kernels run in the order listed: conv_fwd (y, and xp when pool > 1), conv_bwd_data (dx),
-- conv_bwd_weight (dw, or per-split partial sums), splitk_reduce (dw, when split).
-- Storage (d.storage, nil = "fp32"): with "bf16" the buffers x, w, y, dy, dx and xp are
-- bf16 (uint16 bits, rounded to nearest even) and the kernels are the BF16 tiles' bf16
-- form (ACT_BF16 = 1); dw and the split-K partial sums stay fp32. Only BF16 (MATH = 2)
-- variants take bf16 storage: variant 0 means the BF16 default, and any other variant of
-- another math is an error.
local describe = require("poolprop.describe")
local emit = require("poolprop.emit")
local errors = require("poolprop.errors")
local util = require("poolprop.util")
local variants = require("poolprop.variants")

local M = {}

local ceil_div, push_all = util.ceil_div, util.push_all

-- The shapes DESIGN.md section 1 defines.
function M.shape(d)
  local s = {}
  s.P = (d.H + 2 * d.pad - d.R) // d.stride + 1
  s.Q = (d.W + 2 * d.pad - d.S) // d.stride + 1
  s.HP = ceil_div(d.H, d.pool)
  s.WP = ceil_div(d.W, d.pool)
  s.x_elems = d.N * d.C * d.H * d.W
  s.w_elems = d.K * d.C * d.R * d.S
  s.y_elems = d.N * d.K * s.P * s.Q
  s.xp_elems = d.N * d.C * s.HP * s.WP
  return s
end

-- The description (describe.lua's shape and pooling fields) of a convolution of a network
-- graph (network.lua, with the policy's pool and pool_mode), plus the fields of extra.
function M.graph_desc(l, extra)
  local d = { N = l.N, C = l.C, H = l.H, W = l.W, K = l.K, R = l.R, S = l.S, stride = l.stride, pad = l.pad,
    pool = l.pool, pool_mode = l.pool_mode }
  for k, v in pairs(extra or {}) do d[k] = v end
  return d
end

-- Short, unique, readable signature of a layer's shape: n2c3h32w32_k16r3s3_s1p1_f2avg
-- (bf16 storage appends _bf16).
function M.signature(d)
  return string.format("n%dc%dh%dw%d_k%dr%ds%d_s%dp%d_f%d%s%s", d.N, d.C, d.H, d.W, d.K, d.R,
    d.S, d.stride, d.pad, d.pool, d.pool_mode, M.storage(d) == "bf16" and "_bf16" or "")
end

-- The layer's storage: "fp32" (also when the description does not say) or "bf16".
function M.storage(d) return d.storage or "fp32" end

-- The tuning database's key for op's kernel of this layer under a policy's math mode:
-- "conv_fwd_n2c3h32w32_k16r3s3_s1p1_f2avg:tf32". The tuned variant serves every kernel of
-- op on that layer (also the forms without pool-save or with accumulation).
function M.tuning_key(op, d, math_mode)
  return op .. "_" .. M.signature(d) .. ":" .. math_mode
end

-- Target number of blocks the split of the weight-gradient reduction aims for: enough to
-- fill the largest current GPUs (132 SMs) twice.
M.split_target_blocks = 264

local function config_for(d, op)
  local index = d.variant[op] or 0
  local bf16 = M.storage(d) == "bf16"
  if bf16 and index == 0 then index = variants.default_index(op, "bf16") end
  local cfg, msg = variants.get(op, index)
  if not cfg then errors.raise(d.where, "%s", msg) end
  if not variants.storage_allows(cfg, M.storage(d)) then
    errors.raise_invalid(d.where, "variant %d of %s computes in %s, but bf16 storage needs a BF16 (MATH=2) "
      .. "variant (0 chooses the BF16 default, %d)", index, op, variants.math_name(cfg),
      variants.default_index(op, "bf16"))
  end
  return cfg, index
end

-- Template parts an implicit-GEMM kernel includes inside its namespace, by math mode: the
-- PTX wrappers, ops_common.cuh (bf16 rounding, for bf16 storage), the tile product (FFMA
-- or mma), then the shared main loop.
local function gemm_parts(cfg)
  if cfg.MATH > 0 then
    return { "templates/ptx_async_copy.cuh", "templates/ptx_ldmatrix.cuh", "templates/ptx_mma.cuh",
      "templates/ops_common.cuh", "templates/gemm_mma.cuh", "templates/gemm_mainloop.cuh" }
  end
  return { "templates/ptx_async_copy.cuh", "templates/ops_common.cuh", "templates/gemm_tile.cuh",
    "templates/gemm_mainloop.cuh" }
end

-- Elements per operand copy: 16 bytes (4 floats, 8 bf16) where the tensor-core layouts and
-- the operand's contiguous extent allow, else for bf16 the widest of 4, 2 (8- and 4-byte
-- copies) or 1 (a synchronous 2-byte copy) that divides the extent, for fp32 single
-- floats (the 3-channel stem, odd channel counts). The FFMA tiles store transposed and
-- copy single floats.
local function copy_vec(cfg, extent, storage)
  if cfg.MATH == 0 then return 1 end
  if storage == "bf16" then
    for _, vec in ipairs { 8, 4, 2 } do
      if extent % vec == 0 then return vec end
    end
    return 1
  end
  return extent % 4 == 0 and 4 or 1
end

-- row_fastest: whether FFMA tiles give consecutive threads consecutive rows (see
-- gemm_tile.cuh); tensor-core tiles have the fragment layout instead. vecs: {A_VEC, B_VEC},
-- the copy widths; the shared-memory layouts are op's (variants.operand_kmajor); storage:
-- the layer's ("fp32" or "bf16": ACT_BF16).
local function gemm_constants(cfg, op, row_fastest, vecs, storage)
  local tm, tn = variants.per_thread(cfg)
  local major = variants.operand_kmajor[op]
  local c = {
    { "BM", cfg.BM }, { "BN", cfg.BN }, { "BK", cfg.BK }, { "TM", tm }, { "TN", tn },
    { "THREADS", variants.threads(cfg) }, { "TILE_PAD", variants.tile_pad(cfg) },
    { "STAGES", cfg.STAGES }, { "MATH", cfg.MATH }, { "ROW_FASTEST", row_fastest and 1 or 0 },
    { "A_VEC", vecs[1] }, { "B_VEC", vecs[2] }, { "A_KMAJOR", major[1] }, { "B_KMAJOR", major[2] },
    { "ACT_BF16", storage == "bf16" and 1 or 0 }, { "SMEM_BYTES", variants.shared_bytes(cfg, storage) },
  }
  if cfg.MATH > 0 then
    c[#c + 1] = { "WARPS_M", cfg.WARPS_M }
    c[#c + 1] = { "WARPS_N", cfg.WARPS_N }
  end
  return c
end

local function shape_constants(d, s)
  return {
    { "N", d.N }, { "C", d.C }, { "H", d.H }, { "W", d.W }, { "K", d.K }, { "R", d.R },
    { "S", d.S }, { "STRIDE", d.stride }, { "PAD", d.pad }, { "P", s.P }, { "Q", s.Q },
  }
end

-- Raises unless the grid fits CUDA's limits and its blocks, each spanning extents = {x, y, z}
-- elements (a tile's rows, columns, a split's rows), index no element beyond 2^31-1.
local function check_grid(d, name, grid, extents)
  util.check_grid(d.where, "", name, grid, extents)
end

local function header_lines(d, op, index, cfg)
  local layer = d.name or "(unnamed)"
  local from = d.where and d.where.file and d.where.line > 0 and string.format(" (%s:%d)", d.where.file, d.where.line)
    or ""
  return {
    string.format("layer:     %s%s: N=%d C=%d H=%d W=%d K=%d R=%d S=%d stride=%d pad=%d",
      layer, from, d.N, d.C, d.H, d.W, d.K, d.R, d.S, d.stride, d.pad),
    string.format("policy:    pool f=%d mode=%s storage=%s", d.pool, d.pool_mode, M.storage(d)),
    string.format("kernel:    %s variant %d: %s", op, index, util.config_string(cfg, " ")),
  }
end

-- The forward kernel: y, plus xp = pool(x) when save_pool and d.pool > 1, plus, with
-- stats, BN partial statistics of y (kernel.stat_parts partials per channel; see the
-- template).
function M.kernel_fwd(d, s, save_pool, stats)
  local pool = save_pool and d.pool or 1
  local M_, G = d.N * s.P * s.Q, d.C * d.R * d.S
  local cfg, index = config_for(d, "conv_fwd")
  local sig = M.signature(d)
  if pool ~= d.pool then sig = sig .. "_nosave" end
  if stats then sig = sig .. "_bnstats" end
  local name = string.format("conv_fwd_%s_v%d", sig, index)
  local grid_m, grid_n = ceil_div(M_, cfg.BM), ceil_div(d.K, cfg.BN)
  local consts = push_all(shape_constants(d, s), {
    { "M", M_ }, { "G", G }, { "HP", s.HP }, { "WP", s.WP }, { "POOL_F", pool },
    { "POOL_MAX", d.pool_mode == "max" and 1 or 0 },
    { "POOL_PER_BLOCK", ceil_div(d.N * s.HP * s.WP, grid_m) }, { "POOL_C_PER_COL", ceil_div(d.C, grid_n) },
    { "STATS", stats and 1 or 0 } })
  local storage = M.storage(d)
  push_all(consts, gemm_constants(cfg, "conv_fwd", true, { copy_vec(cfg, d.C, storage), copy_vec(cfg, G, storage) },
    storage))
  local grid = { grid_m, grid_n, 1 }
  check_grid(d, name, grid, { cfg.BM, cfg.BN, 1 })
  return {
    name = name, op = "conv_fwd", config = cfg, variant = index, math = variants.math_name(cfg),
    dynamic_shared = variants.dynamic_shared_bytes(cfg, M.storage(d)),
    grid = grid, block = { variants.threads(cfg), 1, 1 },
    stat_parts = stats and grid_m * (cfg.MATH > 0 and cfg.WARPS_M or 1) or 0,
    args = { "x", "w", "y", pool > 1 and "xp" or "null", stats and "bn_partials" or "null" },
    source = emit.kernel_source { kernel = name, op = "conv_fwd", template = "templates/conv_fwd.cu",
      parts = gemm_parts(cfg), constants = consts, header = header_lines(d, "conv_fwd", index, cfg) },
  }
end

-- The input gradient; with accumulate, dx += the result (a second consumer's share).
function M.kernel_bwd_data(d, s, accumulate)
  local cfg, index = config_for(d, "conv_bwd_data")
  local name = string.format("conv_bwd_data_%s%s_v%d", M.signature(d), accumulate and "_acc" or "", index)
  -- One GEMM per stride phase (see the template): rows and taps per phase, at most.
  local HS, WS = ceil_div(d.H, d.stride), ceil_div(d.W, d.stride)
  local RA, SA = ceil_div(d.R, d.stride), ceil_div(d.S, d.stride)
  local MX = d.N * HS * WS
  local consts = push_all(shape_constants(d, s), { { "HS", HS }, { "WS", WS }, { "RA", RA }, { "SA", SA },
    { "MX", MX }, { "GX", d.K * RA * SA }, { "ACCUMULATE", accumulate and 1 or 0 },
    { "PHASES_H", math.min(d.stride, d.R) }, { "PHASES_W", math.min(d.stride, d.S) } })
  local storage = M.storage(d)
  push_all(consts, gemm_constants(cfg, "conv_bwd_data", true,
    { copy_vec(cfg, d.K, storage), copy_vec(cfg, d.C, storage) }, storage))
  -- Stride phases with taps only (the template zeroes the others).
  local grid = { ceil_div(MX, cfg.BM), ceil_div(d.C, cfg.BN), math.min(d.stride, d.R) * math.min(d.stride, d.S) }
  check_grid(d, name, grid, { cfg.BM, cfg.BN, 1 })
  return {
    name = name, op = "conv_bwd_data", config = cfg, variant = index, math = variants.math_name(cfg),
    dynamic_shared = variants.dynamic_shared_bytes(cfg, M.storage(d)),
    grid = grid, block = { variants.threads(cfg), 1, 1 },
    args = { "dy", "w", "dx" },
    source = emit.kernel_source { kernel = name, op = "conv_bwd_data",
      template = "templates/conv_bwd_data.cu", parts = gemm_parts(cfg), constants = consts,
      header = header_lines(d, "conv_bwd_data", index, cfg) },
  }
end

-- The weight gradient from the saved input (xp, or x when d.pool == 1); returns the
-- kernels (conv_bwd_weight, then splitk_reduce when the reduction is split) and the
-- element count of the partial-sum workspace (0 when not split).
function M.kernels_bwd_weight(d, s)
  local M_, G = d.N * s.P * s.Q, d.C * d.R * d.S
  local cfg, index = config_for(d, "conv_bwd_weight")
  local name = string.format("conv_bwd_weight_%s_v%d", M.signature(d), index)
  -- GEMM rows are g = (r,t,c), columns k: a layer with K = 64 fills a 64-wide column tile.
  local tiles = ceil_div(G, cfg.BM) * ceil_div(d.K, cfg.BN)
  local steps = ceil_div(M_, cfg.BK)
  local splits = math.max(1, math.min(cfg.MAX_SPLITS, ceil_div(M.split_target_blocks, tiles), steps))
  local m_per_split = ceil_div(steps, splits) * cfg.BK
  splits = ceil_div(M_, m_per_split) -- no empty split
  local consts = push_all(shape_constants(d, s), {
    { "M", M_ }, { "G", G }, { "HP", s.HP }, { "WP", s.WP }, { "POOL_F", d.pool },
    { "SPLITS", splits }, { "M_PER_SPLIT", m_per_split } })
  local storage = M.storage(d)
  push_all(consts, gemm_constants(cfg, "conv_bwd_weight", true,
    { copy_vec(cfg, d.C, storage), copy_vec(cfg, d.K, storage) }, storage))
  local grid = { ceil_div(G, cfg.BM), ceil_div(d.K, cfg.BN), splits }
  check_grid(d, name, grid, { cfg.BM, cfg.BN, m_per_split })
  -- (The partial sums, SPLITS*K*G elements, stay below 2^31: splits > 1 only where the
  -- tiles are fewer than split_target_blocks, so SPLITS*K*G < 64 * 264 * 128 * 128 = 276824064.)
  local kernels = { {
    name = name, op = "conv_bwd_weight", config = cfg, variant = index, math = variants.math_name(cfg),
    dynamic_shared = variants.dynamic_shared_bytes(cfg, M.storage(d)),
    grid = grid, block = { variants.threads(cfg), 1, 1 },
    args = { "dy", d.pool > 1 and "xp" or "x", splits > 1 and "dw_partial" or "dw" },
    source = emit.kernel_source { kernel = name, op = "conv_bwd_weight",
      template = "templates/conv_bwd_weight.cu", parts = gemm_parts(cfg), constants = consts,
      header = header_lines(d, "conv_bwd_weight", index, cfg) },
  } }
  if splits > 1 then
    local count = d.K * G
    local threads = 256
    local rname = string.format("splitk_reduce_n%dx%d", splits, count)
    local rgrid = { ceil_div(count, threads), 1, 1 }
    check_grid(d, rname, rgrid, { threads, 1, 1 })
    kernels[2] = {
      name = rname, op = "splitk_reduce", config = {}, variant = 0, math = "fp32",
      grid = rgrid, block = { threads, 1, 1 },
      args = { "dw_partial", "dw" },
      source = emit.kernel_source { kernel = rname, op = "splitk_reduce",
        template = "templates/splitk_reduce.cu",
        constants = { { "SPLITS", splits }, { "COUNT", count }, { "THREADS", threads } },
        header = { string.format("layer:     %s: sums %d partial weight gradients of %d elements",
          d.name or "(unnamed)", splits, count) } },
    }
  end
  return kernels, splits > 1 and splits * d.K * G or 0
end

function M.generate(d)
  local s = M.shape(d)
  local kernels = { M.kernel_fwd(d, s, true), M.kernel_bwd_data(d, s, false) }
  local wkernels, partial = M.kernels_bwd_weight(d, s)
  for _, k in ipairs(wkernels) do kernels[#kernels + 1] = k end
  local sig = M.signature(d)

  local act = M.storage(d) -- activations, their gradients, the weights the kernels read
  local buffers = {
    { name = "x", elems = s.x_elems, dtype = act }, { name = "w", elems = s.w_elems, dtype = act },
    { name = "y", elems = s.y_elems, dtype = act }, { name = "dy", elems = s.y_elems, dtype = act },
    { name = "dx", elems = s.x_elems, dtype = act }, { name = "dw", elems = s.w_elems, dtype = "fp32" },
  }
  if d.pool > 1 then buffers[#buffers + 1] = { name = "xp", elems = s.xp_elems, dtype = act } end
  if partial > 0 then buffers[#buffers + 1] = { name = "dw_partial", elems = partial, dtype = "fp32" } end

  return { desc = d, shape = s, signature = sig, kernels = kernels, buffers = buffers }
end

-- From a raw table (as the C API passes it): validate, then generate.
function M.from_table(raw, where)
  local d = describe.validate(raw, where or { file = "(api)", line = 0 })
  return M.generate(d)
end

return M
