-- variants.lua: the declared tile search space of each kernel template. Variant 0 is
-- the default configuration; variants 1..n enumerate the space in a fixed order, so an
-- index names the same configuration on every machine (the tuner records indices).
-- Every configuration in a space must give correct results; the tests run several.
local M = {}

-- Limits a configuration must respect on every target (sm_80 and later).
M.max_threads = 512
M.max_static_shared_bytes = 48 * 1024

local gemm_space = {
  BM = { 32, 64, 128 },
  BN = { 32, 64 },
  BK = { 8, 16 },
  TM = { 4, 8 },
  TN = { 2, 4 },
}

-- conv_bwd_weight also bounds how far the reduction over N*P*Q is split across blocks.
local spaces = {
  conv_fwd = { space = gemm_space, default = { BM = 64, BN = 32, BK = 16, TM = 8, TN = 4 } },
  conv_bwd_data = { space = gemm_space, default = { BM = 64, BN = 32, BK = 16, TM = 8, TN = 4 } },
  conv_bwd_weight = {
    space = { BM = { 16, 32, 64 }, BN = { 32, 64, 128 }, BK = { 8, 16 }, TM = { 2, 4 },
      TN = { 4 }, MAX_SPLITS = { 1, 64 } },
    default = { BM = 32, BN = 64, BK = 16, TM = 4, TN = 4, MAX_SPLITS = 64 },
  },
}
M.ops = { "conv_fwd", "conv_bwd_data", "conv_bwd_weight" }

function M.threads(cfg) return (cfg.BM // cfg.TM) * (cfg.BN // cfg.TN) end

function M.valid(cfg)
  if cfg.BM % cfg.TM ~= 0 or cfg.BN % cfg.TN ~= 0 then return false end
  local t = M.threads(cfg)
  if t < 32 or t > M.max_threads or t % 32 ~= 0 then return false end
  return cfg.BK * (cfg.BM + cfg.BN) * 4 <= M.max_static_shared_bytes
end

local enumerated = {}

-- All valid configurations of op's space, in a fixed order (keys sorted, values as listed).
function M.list(op)
  if enumerated[op] then return enumerated[op] end
  local spec = spaces[op]
  if not spec then return nil end
  local keys = {}
  for k in pairs(spec.space) do keys[#keys + 1] = k end
  table.sort(keys)
  local out = {}
  local function walk(i, cfg)
    if i > #keys then
      if M.valid(cfg) then
        local copy = {}
        for k, v in pairs(cfg) do copy[k] = v end
        out[#out + 1] = copy
      end
      return
    end
    for _, v in ipairs(spec.space[keys[i]]) do
      cfg[keys[i]] = v
      walk(i + 1, cfg)
    end
    cfg[keys[i]] = nil
  end
  walk(1, {})
  enumerated[op] = out
  return out
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
