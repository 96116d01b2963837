-- api.lua: the generator's entry points for the runtime (and for tests). Each returns its
-- result, or nil, a message ("file:line: error: ..." for description problems) and a
-- kind: "parse" (a description file), "shape" (impossible values), "invalid" (arguments that
-- do not fit each other, errors.raise_invalid), "internal".
local bundle = require("poolprop.bundle")
local describe = require("poolprop.describe")
local errors = require("poolprop.errors")
local layer = require("poolprop.layer")
local util = require("poolprop.util")
local variants = require("poolprop.variants")

local M = {}

local function protect(kind, fn, ...)
  local ok, result = pcall(fn, ...)
  if ok then return result end
  if errors.is_error(result) then return nil, errors.format(result), result.kind or kind end
  return nil, errors.format(result), "internal"
end

-- raw: a table with the fields of describe.lua, as the C API passes them.
function M.layer(raw)
  return protect("shape", layer.from_table, raw, { file = "layer description", line = 0 })
end

-- Loads a description file (text given, so the runtime can pass embedded files too).
function M.load_layers(text, chunkname)
  return protect("parse", describe.load_string, text, chunkname)
end

function M.generate_layers(text, chunkname)
  return protect("parse", function()
    local results = {}
    for i, d in ipairs(describe.load_string(text, chunkname)) do results[i] = layer.generate(d) end
    return results
  end)
end

-- Generates the whole bundle in memory, then writes it; nothing is written on error.
-- dir nil: a dry run that only generates.
function M.write_bundle(text, chunkname, dir)
  local results, msg, kind = M.generate_layers(text, chunkname)
  if not results then return nil, msg, kind end
  local files = bundle.render(results, chunkname)
  if not dir then return #files end
  local ok, err = pcall(bundle.write, files, dir)
  if not ok then return nil, tostring(err), "io" end
  return #files
end

-- One kernel of ops.lua; params_text is a Lua table constructor, e.g. "{ N = 2, C = 3 }".
function M.op_kernel(op, params_text)
  return protect("shape", function()
    local chunk, err = load("return " .. params_text, "=op parameters", "t", {})
    if not chunk then errors.raise(nil, "%s", err) end
    return require("poolprop.ops").kernel(op, chunk())
  end)
end

-- The row slices the training plan gives a BN of m rows (N*HW) and c channels (ops.lua
-- bn_slices; 1: the one-pass kernels), so that a caller building the same BN kernels
-- (pp_op_create) chooses as the plan does.
function M.bn_slices(m, c)
  return protect("shape", function() return require("poolprop.ops").bn_slices(m, c) end)
end

-- The graph of a model with the policy resolved (see train_plan for the arguments).
local function resolved_graph(model_text, model_name, o, policy)
  local network = require("poolprop.network")
  local policies = require("poolprop.policy")
  local spec = network.load_string(model_text, model_name)
  local cifar = spec.kind == "cifar_resnet"
  local graph = network.instantiate(spec, {
    batch = o.batch, classes = (o.classes and o.classes > 0) and o.classes or (cifar and 10 or 1000),
    height = (o.height and o.height > 0) and o.height or (cifar and 32 or 224),
    width = (o.width and o.width > 0) and o.width or (cifar and 32 or 224) })
  local p
  if policy.file_text then
    p = policies.load_file(policy.file_text, policy.file_name)
  else
    p = policies.parse(policy.text, { file = "policy", line = 0 })
  end
  policies.resolve(p, graph, { file = "policy", line = 0 })
  return graph, p
end

-- A policy applied to the layers of a model poolprop did not describe (a framework's own,
-- for poolprop.torch): names[i] and stages[i] (stem, stageN, head or "") name layer i.
-- policy as in train_plan. Returns { factors = { ... }, mode, bn, act, math, relu }; a
-- stage or layer the policy names that no layer has is an error, as resolve makes it.
function M.policy_for_layers(policy, names, stages)
  return protect("parse", function()
    local policies = require("poolprop.policy")
    local where = { file = policy.file_name or "policy", line = 0 }
    local p = policy.file_text and policies.load_file(policy.file_text, policy.file_name)
      or policies.parse(policy.text, where)
    local graph = { name = "the model", layers = {}, stages = {} }
    for i, name in ipairs(names) do
      graph.layers[i] = { op = "conv", name = name, stage = stages[i] }
      if stages[i] ~= "" and not graph.stages[stages[i]] then
        graph.stages[stages[i]] = true
        graph.stages[#graph.stages + 1] = stages[i]
      end
    end
    policies.resolve(p, graph, where)
    local factors = {}
    for i, l in ipairs(graph.layers) do factors[i] = l.pool end
    return { factors = factors, mode = p.mode, bn = p.bn, act = p.act, math = p.math, relu = p.relu }
  end)
end

-- The training plan of a model. model_text/model_name: the model file; o: { batch,
-- height, width, classes, sources, tuned = { [tuning key] = variant } }; policy: { text = "2" }
-- or { file_text, file_name }.
function M.train_plan(model_text, model_name, o, policy)
  return protect("parse", function()
    local graph, p = resolved_graph(model_text, model_name, o, policy)
    return require("poolprop.train").build(graph, p, { sources = o.sources, tuned = o.tuned,
      sync_world = o.sync_world })
  end)
end

-- The bundle of a model's training step (arguments as train_plan; sources are always
-- built, and o.tuned applies exactly as in train_plan): { files = { { path, text }, ... }
-- (kernels/<name>.cu for every distinct kernel the step launches, then plan.lua; see
-- bundle.render_training), kernels, launches, math, batch, height, width, classes }.
-- Nothing is written here: the runtime writes the files.
function M.training_bundle(model_text, model_name, o, policy)
  return protect("parse", function()
    local graph, p = resolved_graph(model_text, model_name, o, policy)
    local plan = require("poolprop.train").build(graph, p, { sources = true, tuned = o.tuned })
    local files, kernels, launches = bundle.render_training(plan, model_name, policy.file_name or policy.text)
    return { files = files, kernels = kernels, launches = launches, math = plan.math, batch = graph.batch,
      height = graph.height, width = graph.width, classes = graph.classes }
  end)
end

-- What the tuner measures for a model (arguments as train_plan): one target per distinct
-- (conv op, layer shape) the training step runs, { key, op, layer = {N..pool_mode}, name, count, candidates },
-- with the candidates the policy's math mode allows: the mode's default first, then the
-- fp32 reference 0, then the rest of the space in order. Also the math mode and the
-- version string that makes a tuning database stale when the generator's spaces change.
function M.tuning_targets(model_text, model_name, o, policy)
  return protect("parse", function()
    local graph, p = resolved_graph(model_text, model_name, o, policy)
    local math_mode = p.math or "fp32"
    local targets, by_key = {}, {}
    for _, l in ipairs(graph.layers) do
      if l.op == "conv" then
        local d = layer.graph_desc(l, { storage = p.act == "bf16" and "bf16" or nil })
        for _, op in ipairs(variants.ops) do
          local key = layer.tuning_key(op, d, math_mode)
          -- The plan computes no input gradient for the network's input (the image).
          local runs = op ~= "conv_bwd_data" or l.input ~= graph.input
          if runs and by_key[key] then
            by_key[key].count = by_key[key].count + 1
          elseif runs then
            local candidates = M.candidate_order(op, d, math_mode)
            local t = { key = key, op = op, layer = d, name = l.name, count = 1, candidates = candidates }
            by_key[key] = t
            targets[#targets + 1] = t
          end
        end
      end
    end
    return { targets = targets, math = math_mode, version = M.tuning_version() }
  end)
end

-- The order in which the tuner tries op's variants on layer d, so that a small
-- --max-variants or time budget is spent where a GPU most likely gains: the math mode's
-- default first, then the fp32 reference 0, then the other variants the mode allows,
-- the mode's own precision first, then by an estimate of how well the tile suits the
-- problem: (share of the tiles' work that is not padding) x (blocks to fill a large GPU,
-- 264 = 2 x 132 SMs, capped at 1) x (operand reuse BM*BN/(BM+BN)), pipelined before not,
-- then in space order. An estimate to spend a budget well, not a prediction: the tuner
-- measures.
function M.candidate_order(op, d, math_mode)
  local first = variants.default_index(op, math_mode)
  local own = variants.math_levels[math_mode] or 0
  local s = layer.shape(d)
  -- GEMM rows and columns per op (conv_bwd_data: one GEMM per stride phase).
  local rows, cols
  if op == "conv_fwd" then
    rows, cols = d.N * s.P * s.Q, d.K
  elseif op == "conv_bwd_data" then
    rows = d.N * util.ceil_div(d.H, d.stride) * util.ceil_div(d.W, d.stride) * d.stride * d.stride
    cols = d.C
  else
    rows, cols = d.K, d.C * d.R * d.S
  end
  local target = layer.split_target_blocks
  local scored = {}
  for i, cfg in ipairs(variants.list(op)) do
    if i ~= first and variants.allowed(cfg, math_mode) and variants.storage_allows(cfg, d.storage) then
      local tiles = util.ceil_div(rows, cfg.BM) * util.ceil_div(cols, cfg.BN)
      local useful = rows * cols / (tiles * cfg.BM * cfg.BN)
      local blocks = tiles
      if op == "conv_bwd_weight" then blocks = tiles * (cfg.MAX_SPLITS or 1) end -- split-K adds blocks
      local parallel = math.min(1.0, blocks / target)
      local reuse = cfg.BM * cfg.BN / (cfg.BM + cfg.BN)
      scored[#scored + 1] = { index = i, own = cfg.MATH == own and 1 or 0, value = useful * parallel * reuse,
        stages = cfg.STAGES }
    end
  end
  table.sort(scored, function(a, b)
    if a.own ~= b.own then return a.own > b.own end
    if a.value ~= b.value then return a.value > b.value end
    if a.stages ~= b.stages then return a.stages > b.stages end
    return a.index < b.index
  end)
  -- (With bf16 storage variant 0 is the BF16 default, first already.)
  local order = { first }
  if first ~= 0 and layer.storage(d) ~= "bf16" then order[2] = 0 end
  for _, c in ipairs(scored) do
    if c.index ~= 0 then order[#order + 1] = c.index end
  end
  return order
end

-- Names the generator and its variant spaces; tuning results of another version are stale.
function M.tuning_version()
  return require("poolprop.emit").generator_version:gsub("^poolprop%-generator ", "generator-") .. "/" ..
    variants.space_version()
end

-- One variant's configuration: { threads, stages, math, shared, shared_bf16, config =
-- "BK=16 BM=64 ..." }; shared is its shared memory with fp32 storage, shared_bf16 with bf16
-- storage (0 when the variant does not take bf16 storage: not BF16).
function M.variant_info(op, index)
  local cfg, msg = variants.get(op, index)
  if not cfg then return nil, msg, "shape" end
  return { threads = variants.threads(cfg), stages = cfg.STAGES, math = variants.math_name(cfg),
    shared = variants.shared_bytes(cfg, "fp32"),
    shared_bf16 = variants.storage_allows(cfg, "bf16") and variants.shared_bytes(cfg, "bf16") or 0,
    config = util.config_string(cfg, " ") }
end

function M.variant_count(op)
  local n = variants.count(op)
  if not n then return nil, "unknown kernel op '" .. tostring(op) .. "'", "shape" end
  return n
end

return M
