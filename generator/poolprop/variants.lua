-- variants.lua: the declared search space of each kernel template: tile sizes, threads,
-- pipeline stages and math mode. Variant 0 is
-- the default configuration; variants 1..n enumerate the space in a fixed order, so an
-- index names the same configuration on every machine (the tuner records indices).
-- Every configuration in a space must give correct results; the tests run several.
local util = require("poolprop.util")

local M = {}

-- Limits a configuration must respect on every target (sm_80 and later).
M.max_threads = 512
-- Shared memory per block: up to 48 KB is static; tensor-core tiles may use up to 64 KB,
-- dynamic above 48 KB (gemm_mainloop.cuh; the runtime raises the kernel's limit). 64 KB
-- leaves 2 blocks per SM on sm_80 (164 KB) and 3 on sm_90 (228 KB).
M.max_static_shared_bytes = 48 * 1024
M.max_shared_bytes = 64 * 1024

-- How each op's tensor-core tiles lie in shared memory (gemm_mma.cuh): {A, B}, 1 = K-major
-- (ldmatrix), 0 = MN-major.
M.operand_kmajor = { conv_fwd = { 1, 1 }, conv_bwd_data = { 1, 0 }, conv_bwd_weight = { 0, 0 } }

-- Math modes: 0 = fp32 FFMA (the reference), 1 = TF32 tensor cores (mma m16n8k8),
-- 2 = BF16 tensor cores (mma m16n8k16); both with f32 accumulation. A policy allows a
-- mode and every more precise one.
M.math_names = { [0] = "fp32", [1] = "tf32", [2] = "bf16" }
M.math_levels = { fp32 = 0, tf32 = 1, bf16 = 2 }

-- fp32 tiles: TM x TN outputs per thread; STAGES 2 = cp.async double buffering.
local ffma_space = {
  BM = { 32, 64, 128 },
  BN = { 32, 64 },
  BK = { 8, 16 },
  TM = { 4, 8 },
  TN = { 2, 4 },
  STAGES = { 1, 2 },
  MATH = { 0 },
}
-- Tensor-core tiles (gemm_mma.cuh): WARPS_M x WARPS_N warps, each a (BM/WARPS_M) x
-- (BN/WARPS_N) sub-tile of 16x8 mma tiles (up to 64x64), 2 to 8 warps; always pipelined
-- (they need sm_80, which has cp.async), 2 to 4 stages in static shared memory.
local mma_space = {
  BM = { 64, 128 },
  BN = { 64, 128 },
  BK = { 16, 32 },
  WARPS_M = { 1, 2, 4 },
  WARPS_N = { 1, 2, 4 },
  STAGES = { 2, 3, 4 },
  MATH = { 1, 2 },
}

local function with(space, extra)
  local out = {}
  for k, v in pairs(space) do out[k] = v end
  for k, v in pairs(extra) do out[k] = v end
  return out
end

-- Each op's spaces are enumerated in the order listed; conv_bwd_weight also bounds how far
-- the reduction over N*P*Q is split across blocks.
local spaces = {
  conv_fwd = { spaces = { ffma_space, mma_space },
    default = { BM = 64, BN = 32, BK = 16, TM = 8, TN = 4, STAGES = 1, MATH = 0 } },
  conv_bwd_data = { spaces = { ffma_space, mma_space },
    default = { BM = 64, BN = 32, BK = 16, TM = 8, TN = 4, STAGES = 1, MATH = 0 } },
  conv_bwd_weight = {
    spaces = {
      with(ffma_space, { BM = { 16, 32, 64 }, BN = { 32, 64, 128 }, TM = { 2, 4 }, TN = { 4 },
        MAX_SPLITS = { 1, 64 } }),
      with(mma_space, { MAX_SPLITS = { 64 } }),
    },
    -- Rows are g = (r,t,c), columns k: 32-wide column tiles, so that the K = 16 and 32 layers
    -- of CIFAR ResNets do not run 3/4-empty tiles (on the host backend that cost a CIFAR
    -- ResNet-20 step 1.7x the weight-gradient work of the previous orientation).
    default = { BM = 64, BN = 32, BK = 16, TM = 4, TN = 4, STAGES = 1, MATH = 0, MAX_SPLITS = 64 },
  },
}
M.ops = { "conv_fwd", "conv_bwd_data", "conv_bwd_weight" }

-- Shared-memory row padding of the tiles: none (the FFMA tiles are read along rows; the
-- tensor-core tiles are XOR-swizzled instead, gemm_mma.cuh).
function M.tile_pad(cfg) return 0 end

-- Tensor-core configurations derive their per-thread tile from the warp layout.
function M.per_thread(cfg)
  if cfg.MATH == 0 then return cfg.TM, cfg.TN end
  return 2 * (cfg.BM // cfg.WARPS_M // 16), 2 * (cfg.BN // cfg.WARPS_N // 8)
end

function M.threads(cfg)
  if cfg.MATH > 0 then return 32 * cfg.WARPS_M * cfg.WARPS_N end
  return (cfg.BM // cfg.TM) * (cfg.BN // cfg.TN)
end

-- Operand storage of a layer (a layer property, not a variant's): "fp32", or "bf16", where
-- the activations, their gradients and the weights the kernels read are bf16 in memory and
-- in shared memory (half the bytes per stage), which only the BF16 (MATH = 2) tiles take.
M.storage_bytes = { fp32 = 4, bf16 = 2 }

-- Whether a configuration can run a layer of the given storage (nil: fp32).
function M.storage_allows(cfg, storage)
  return (storage or "fp32") ~= "bf16" or cfg.MATH == 2
end

-- Shared memory of a configuration's stages for a layer's storage (nil: fp32). Every
-- configuration of the space fits the limits with fp32 storage (valid below), so with
-- bf16 storage, half of that, too.
function M.shared_bytes(cfg, storage)
  return cfg.STAGES * cfg.BK * (cfg.BM + cfg.BN + 2 * M.tile_pad(cfg)) * M.storage_bytes[storage or "fp32"]
end

-- Bytes of dynamic shared memory a configuration's kernel asks for at launch: 0 when its
-- tiles fit the static 48 KB.
function M.dynamic_shared_bytes(cfg, storage)
  local bytes = M.shared_bytes(cfg, storage)
  return bytes > M.max_static_shared_bytes and bytes or 0
end

-- Accumulators per thread: FFMA tiles keep at most 64; a tensor-core warp tile of 64x64
-- holds 128 per thread and leaves registers for its 32 fragment registers.
M.max_accumulators = 64
M.max_mma_accumulators = 128
-- 16-byte copies one thread issues per K-tile: each keeps its row's coordinates in
-- registers, so 64 threads loading a 192x32 tile (24 each) spill beside 128 accumulators.
M.max_copies_per_thread = 16

function M.valid(cfg)
  local t = M.threads(cfg)
  if cfg.MATH > 0 then
    if cfg.BM % (16 * cfg.WARPS_M) ~= 0 or cfg.BN % (16 * cfg.WARPS_N) ~= 0 then return false end
    if cfg.BK % (cfg.MATH == 2 and 16 or 8) ~= 0 then return false end
    local tm, tn = M.per_thread(cfg)
    if tm * tn > M.max_mma_accumulators or t < 64 or t > 256 then return false end
    if (cfg.BM + cfg.BN) * cfg.BK // (4 * t) > M.max_copies_per_thread then return false end
    -- 128 accumulators per thread leave room only for a square 64x64 warp tile's 32
    -- fragment registers and the copies of a 16-deep K-tile of 4 or more warps: NVRTC's
    -- ptxas spilled 4-270 bytes in 2-warp blocks, 32x128 and 128x32 warp tiles (40 fragment
    -- registers) and BK = 32 at that size.
    -- BF16 with fp32 operands in shared memory needs two loads and a convert per fragment
    -- register, whose temporaries do not fit beside 128 accumulators either (4-20 bytes of
    -- spills at 253-255 registers, depending on the layer).
    if tm * tn > 64 and (t < 128 or cfg.BM // cfg.WARPS_M ~= 64 or cfg.BN // cfg.WARPS_N ~= 64 or cfg.BK > 16
        or cfg.MATH == 2) then
      return false
    end
  elseif cfg.BM % cfg.TM ~= 0 or cfg.BN % cfg.TN ~= 0 then
    return false
  end
  if t < 32 or t > M.max_threads or t % 32 ~= 0 then return false end
  return M.shared_bytes(cfg) <= (cfg.MATH > 0 and M.max_shared_bytes or M.max_static_shared_bytes)
end

-- The precision a configuration computes in, by name.
function M.math_name(cfg) return M.math_names[cfg.MATH] end

-- Whether a policy's math mode ("fp32", "tf32", "bf16") allows the configuration.
function M.allowed(cfg, math_mode)
  return cfg.MATH <= (M.math_levels[math_mode or "fp32"] or 0)
end

local enumerated = {}

-- All valid configurations of op's spaces, in a fixed order (spaces as listed, keys
-- sorted, values as listed).
function M.list(op)
  if enumerated[op] then return enumerated[op] end
  local spec = spaces[op]
  if not spec then return nil end
  local out = {}
  for _, space in ipairs(spec.spaces) do
    local keys = {}
    for k in pairs(space) do keys[#keys + 1] = k end
    table.sort(keys)
    local function walk(i, cfg)
      if i > #keys then
        if M.valid(cfg) then
          local copy = {}
          for k, v in pairs(cfg) do copy[k] = v end
          out[#out + 1] = copy
        end
        return
      end
      for _, v in ipairs(space[keys[i]]) do
        cfg[keys[i]] = v
        walk(i + 1, cfg)
      end
      cfg[keys[i]] = nil
    end
    walk(1, {})
  end
  enumerated[op] = out
  return out
end

-- A stable fingerprint of every op's enumerated space: tuning results name variants by
-- index, so a database made with a different space is stale.
function M.space_version()
  local parts = {}
  for _, op in ipairs(M.ops) do
    for i, cfg in ipairs(M.list(op)) do
      parts[#parts + 1] = op .. "#" .. i .. ":" .. util.config_string(cfg, ",")
    end
  end
  -- 32-bit FNV-1a, twice with different offsets, printed as 16 hex digits.
  local text = table.concat(parts, ";")
  local function fnv(offset)
    local h = offset
    for i = 1, #text do h = ((h ~ text:byte(i)) * 16777619) & 0xffffffff end
    return h
  end
  return string.format("%08x%08x", fnv(2166136261), fnv(0x811c9dc5 ~ 0x5bd1e995))
end

-- The configuration a model uses for op when a policy allows math and the tuning database
-- has no entry: variant 0 for fp32, else this tensor-core tile of the space. The BF16
-- default is also the default of every layer with bf16 storage: K-tiles of 32 (two mma
-- k-steps per barrier and per pipeline step; a bf16 stage of BK = 32 takes the bytes of an
-- fp32 one of BK = 16), and few enough stages that the tiles stay in static shared memory
-- with fp32 storage too (fp32 48 KB, bf16 24 KB). With bf16 storage that measures 2.4-2.9
-- other instructions per mma (fwd, dgrad) where BK = 16 measured 2.9-3.6.
local math_defaults = {
  tf32 = { BM = 128, BN = 128, BK = 16, WARPS_M = 2, WARPS_N = 2, STAGES = 3, MATH = 1 },
  bf16 = { BM = 128, BN = 64, BK = 32, WARPS_M = 2, WARPS_N = 2, STAGES = 2, MATH = 2 },
}
-- The weight gradient's columns are the K output channels: 64-wide column tiles, so that
-- K = 64 layers (every ResNet's first stage) run no half-empty tile. Its BF16 default keeps
-- K-tiles of 16: at 32, the fp32-storage form spills on the 3-channel stem (its 1-channel
-- copies, 32 per thread, each keep their own tap in registers); with bf16 storage BK = 16
-- costs 3.5 other instructions per mma against 2.8 at 32 (shared/tools/sass, ResNet-50).
local wgrad_math_defaults = {
  tf32 = { BM = 128, BN = 64, BK = 16, WARPS_M = 2, WARPS_N = 2, STAGES = 4, MATH = 1 },
  bf16 = { BM = 128, BN = 64, BK = 16, WARPS_M = 2, WARPS_N = 2, STAGES = 4, MATH = 2 },
}

function M.default_index(op, math_mode)
  local want = (op == "conv_bwd_weight" and wgrad_math_defaults or math_defaults)[math_mode]
  if not want then return 0 end
  for i, cfg in ipairs(M.list(op)) do
    local same = true
    for k, v in pairs(want) do
      if cfg[k] ~= v then same = false end
    end
    if same and (cfg.MAX_SPLITS or 64) == 64 then return i end
  end
  error("variants.lua: the " .. math_mode .. " default of " .. op .. " is not in its space")
end

-- The configuration for a variant index, or nil and a message.
function M.get(op, index)
  local spec = spaces[op]
  if not spec then return nil, "unknown kernel op '" .. tostring(op) .. "'" end
  if index == 0 then return spec.default end
  local list = M.list(op)
  if index < 0 or index > #list then
    return nil, string.format("variant %d of %s is out of range 0..%d", index, op, #list)
  end
  return list[index]
end

function M.count(op)
  local list = M.list(op)
  return list and #list or nil
end

return M
