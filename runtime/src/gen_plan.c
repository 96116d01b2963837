/* gen_plan.c - a model's training plan from the generator (api.lua train_plan, network.lua
 * and train.lua) read into a gen_plan: launches and their argument bindings, buffers,
 * parameters, the network's layers; and the other model-level results: the training
 * bundle of `poolprop gen --model` and the tuner's targets. The model and policy files are
 * read here (capped at GEN_LUA_FILE_LIMIT) and evaluated under gen_lua.c's limits. */
#include "gen_plan.h"

#include "embedded.h"
#include "gen_lua.h"
#include "name_index.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Lookups by name while one plan is read, so that reading is linear in the plan's size:
 * parameters and statistics by key, kernels and graph tensors by name, and the buffers of
 * the step list being read. Keys are borrowed from the plan, which outlives the reader.
 * A repeated name keeps its first entry, as a search from the front would find. */
typedef struct plan_reader {
    name_index params, state, kernels, tensors, buffers;
} plan_reader;

static void reader_free(plan_reader *r)
{
    name_index_free(&r->params), name_index_free(&r->state), name_index_free(&r->kernels);
    name_index_free(&r->tensors), name_index_free(&r->buffers);
}

/* Adds key -> value unless key is present; 0, or -1 where memory runs out. */
static int index_first(name_index *ix, const char *key, int value)
{
    return name_index_get(ix, key) >= 0 ? 0 : name_index_put(ix, key, value);
}

static pp_status read_tensor_infos(pp_context *ctx, lua_State *L, int t, plan_tensor_info **out, int *count,
                                   name_index *ix)
{
    int n = (int)luaL_len(L, t);
    plan_tensor_info *list = calloc((size_t)(n ? n : 1), sizeof *list);
    if (!list) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "plan: out of memory");
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, t, i + 1);
        int e = lua_gettop(L);
        gen_lua_copy_field(L, e, "key", list[i].key, sizeof list[i].key);
        gen_lua_copy_field(L, e, "init", list[i].init, sizeof list[i].init);
        list[i].offset = gen_lua_size(L, e, "offset");
        list[i].count = gen_lua_size(L, e, "count");
        lua_getfield(L, e, "shape");
        list[i].rank = (int)luaL_len(L, -1);
        for (int d = 0; d < list[i].rank && d < 4; d++) {
            lua_rawgeti(L, -1, d + 1);
            list[i].shape[d] = (size_t)lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
    }
    *out = list;
    *count = n;
    for (int i = 0; i < n; i++)
        if (index_first(ix, list[i].key, i) != 0) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "plan: out of memory");
    return PP_OK;
}

static const plan_tensor_info *find_info(const name_index *ix, const plan_tensor_info *list, const char *key)
{
    int i = name_index_get(ix, key);
    return i >= 0 ? &list[i] : NULL;
}

static int find_buffer(const plan_steps *s, const char *name)
{
    for (int i = 0; i < s->buffer_count; i++)
        if (strcmp(s->buffers[i].name, name) == 0) return i;
    return -1;
}

static pp_status parse_ref(pp_context *ctx, const plan_reader *r, const gen_plan *plan, const char *text, plan_ref *ref)
{
    static const char *const scalars[] = {"lr", "momentum", "weight_decay"};
    const plan_tensor_info *info;
    ref->index = 0;
    if (strcmp(text, "null") == 0) {
        ref->kind = REF_NULL;
    } else if (strncmp(text, "buf:", 4) == 0) {
        int b = name_index_get(&r->buffers, text + 4);
        if (b < 0) return ctx_fail(ctx, PP_ERR_INTERNAL, "plan: unknown buffer '%s'", text + 4);
        ref->kind = REF_BUFFER;
        ref->index = (size_t)b;
    } else if (strncmp(text, "param:", 6) == 0 || strncmp(text, "grad:", 5) == 0) {
        int is_param = text[0] == 'p';
        const char *key = text + (is_param ? 6 : 5);
        if (!(info = find_info(&r->params, plan->params, key)))
            return ctx_fail(ctx, PP_ERR_INTERNAL, "plan: unknown parameter '%s'", key);
        ref->kind = is_param ? REF_PARAM : REF_GRAD;
        ref->index = info->offset;
    } else if (strncmp(text, "state:", 6) == 0) {
        if (!(info = find_info(&r->state, plan->state, text + 6)))
            return ctx_fail(ctx, PP_ERR_INTERNAL, "plan: unknown statistic '%s'", text + 6);
        ref->kind = REF_STATE;
        ref->index = info->offset;
    } else if (strncmp(text, "shadow:", 7) == 0) {
        if (!(info = find_info(&r->params, plan->params, text + 7)))
            return ctx_fail(ctx, PP_ERR_INTERNAL, "plan: unknown parameter '%s'", text + 7);
        ref->kind = REF_SHADOW_PARAM;
        ref->index = info->offset;
    } else if (strcmp(text, "shadow") == 0) {
        ref->kind = REF_SHADOW;
    } else if (strcmp(text, "params") == 0) {
        ref->kind = REF_PARAMS;
    } else if (strcmp(text, "grads") == 0) {
        ref->kind = REF_GRADS;
    } else if (strcmp(text, "momentum") == 0) {
        ref->kind = REF_MOMENTUM;
    } else if (strncmp(text, "scalar:", 7) == 0) {
        ref->kind = REF_SCALAR;
        for (size_t i = 0; i < 3; i++)
            if (strcmp(text + 7, scalars[i]) == 0) ref->index = i + 1;
        if (!ref->index) return ctx_fail(ctx, PP_ERR_INTERNAL, "plan: unknown scalar '%s'", text + 7);
        ref->index--;
    } else {
        return ctx_fail(ctx, PP_ERR_INTERNAL, "plan: unknown argument binding '%s'", text);
    }
    return PP_OK;
}

/* Index of the kernel named like the table at stack index t, adding it if new. */
static pp_status intern_kernel(pp_context *ctx, plan_reader *r, lua_State *L, int t, gen_plan *plan, int *index)
{
    lua_getfield(L, t, "name");
    const char *name = lua_tostring(L, -1);
    int known = name ? name_index_get(&r->kernels, name) : -1;
    lua_pop(L, 1);
    if (known >= 0) {
        *index = known;
        return PP_OK;
    }
    gen_kernel *grown = realloc(plan->kernels, sizeof *grown * (size_t)(plan->kernel_count + 1));
    if (!grown) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "plan: out of memory");
    plan->kernels = grown;
    gen_kernel *k = &plan->kernels[plan->kernel_count];
    memset(k, 0, sizeof *k);
    if (!gen_layer_read_kernel(L, t, k)) {
        gen_layer_kernel_free(k);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "plan: out of memory");
    }
    if (k->name && index_first(&r->kernels, k->name, plan->kernel_count) != 0) {
        gen_layer_kernel_free(k);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "plan: out of memory");
    }
    *index = plan->kernel_count++;
    return PP_OK;
}

/* Reads steps and buffers from the tables at stack indices st (steps) and bt (buffers). */
static pp_status read_steps(pp_context *ctx, plan_reader *r, lua_State *L, int st, int bt, gen_plan *plan,
                            plan_steps *out)
{
    memset(out, 0, sizeof *out);
    out->buffer_count = (int)luaL_len(L, bt);
    out->buffers = calloc((size_t)(out->buffer_count ? out->buffer_count : 1), sizeof *out->buffers);
    out->step_count = (int)luaL_len(L, st);
    out->steps = calloc((size_t)(out->step_count ? out->step_count : 1), sizeof *out->steps);
    if (!out->buffers || !out->steps) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "plan: out of memory");
    for (int i = 0; i < out->buffer_count; i++) {
        plan_buffer *b = &out->buffers[i];
        lua_rawgeti(L, bt, i + 1);
        int t = lua_gettop(L);
        gen_lua_copy_field(L, t, "name", b->name, sizeof b->name);
        gen_lua_copy_field(L, t, "kind", b->kind, sizeof b->kind);
        gen_lua_copy_field(L, t, "stage", b->stage, sizeof b->stage);
        b->bytes = gen_lua_size(L, t, "bytes");
        b->first = gen_lua_int(L, t, "first") - 1;
        b->last = gen_lua_int(L, t, "last") - 1;
        lua_getfield(L, t, "saved");
        b->saved = lua_toboolean(L, -1);
        lua_pop(L, 2);
    }
    name_index_free(&r->buffers);
    for (int i = 0; i < out->buffer_count; i++)
        if (index_first(&r->buffers, out->buffers[i].name, i) != 0)
            return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "plan: out of memory");
    for (int i = 0; i < out->step_count; i++) {
        plan_step *s = &out->steps[i];
        lua_rawgeti(L, st, i + 1);
        int t = lua_gettop(L);
        gen_lua_copy_field(L, t, "phase", s->phase, sizeof s->phase);
        gen_lua_copy_field(L, t, "layer", s->layer, sizeof s->layer);
        s->kernel = -1;
        lua_getfield(L, t, "refs");
        if (lua_istable(L, -1)) {
            lua_getfield(L, t, "kernel");
            pp_status rc = intern_kernel(ctx, r, L, lua_gettop(L), plan, &s->kernel);
            lua_pop(L, 1);
            if (rc != PP_OK) return rc;
            s->ref_count = (int)luaL_len(L, -1);
            if (s->ref_count > GEN_MAX_ARGS) return ctx_fail(ctx, PP_ERR_INTERNAL, "plan: too many kernel arguments");
            for (int a = 0; a < s->ref_count; a++) {
                lua_rawgeti(L, -1, a + 1);
                pp_status rs = parse_ref(ctx, r, plan, lua_tostring(L, -1), &s->refs[a]);
                lua_pop(L, 1);
                if (rs != PP_OK) return rs;
            }
        }
        char sync[16];
        gen_lua_copy_field(L, t, "sync", sync, sizeof sync);
        s->sync = strcmp(sync, "bn_stats") == 0  ? SYNC_BN_STATS
                  : strcmp(sync, "bn_sums") == 0 ? SYNC_BN_SUMS
                                                 : SYNC_NONE;
        if (s->sync != SYNC_NONE) {
            s->sync_parts = gen_lua_int(L, t, "sync_parts");
            s->sync_channels = gen_lua_int(L, t, "sync_channels");
            s->sync_shift = gen_lua_int(L, t, "sync_shift");
            s->sync_arg = -1;
            const gen_kernel *k = s->kernel >= 0 ? &plan->kernels[s->kernel] : NULL;
            for (int a = 0; k && a < k->arg_count; a++)
                if (strcmp(k->args[a], "partials") == 0) s->sync_arg = a;
            if (k && s->sync_arg < 0)
                return ctx_fail(ctx, PP_ERR_INTERNAL, "plan: step %d (%s) synchronises but has no partials", i,
                                k->name);
        }
        lua_pop(L, 2);
    }
    return PP_OK;
}

static pp_status model_text(pp_context *ctx, const char *model, char **text, size_t *len, char *name, size_t name_len)
{
    size_t n = strlen(model);
    if (strchr(model, '/') || (n > 4 && strcmp(model + n - 4, ".lua") == 0)) {
        snprintf(name, name_len, "%s", model);
        return gen_lua_read_file(ctx, model, "model file", text, len);
    }
    char path[256];
    snprintf(path, sizeof path, "models/%s.lua", model);
    const pp_embedded_file *f = embedded_find(path);
    if (!f)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                        "unknown model '%s': not a file, and not a built-in model (resnet18, resnet34, resnet50, "
                        "resnet101, resnet152, cifar_resnet8, cifar_resnet20, cifar_resnet32, cifar_resnet44, "
                        "cifar_resnet56, cifar_resnet110)",
                        model);
    *text = malloc(f->size + 1);
    if (!*text) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    memcpy(*text, f->data, f->size + 1);
    *len = f->size;
    snprintf(name, name_len, "%s", path);
    return PP_OK;
}

/* Tensor id of a tensor name, adding it (with its element count from graph.tensors at
 * stack index tensors) when new. */
static int tensor_id(plan_reader *r, lua_State *L, int tensors, const char *name, gen_plan *plan, char (*names)[96])
{
    int known = name_index_get(&r->tensors, name);
    if (known >= 0) return known;
    int id = plan->tensor_count++;
    snprintf(names[id], 96, "%s", name);
    if (name_index_put(&r->tensors, names[id], id) != 0) return -2; /* out of memory */
    lua_getfield(L, tensors, name);
    size_t n = 1;
    int rank = (int)luaL_len(L, -1);
    for (int d = 0; d < rank; d++) {
        lua_rawgeti(L, -1, d + 1);
        n *= (size_t)lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    plan->tensor_elems[id] = n;
    return id;
}

static size_t info_offset(const name_index *ix, const plan_tensor_info *list, lua_State *L, int t, const char *field)
{
    lua_getfield(L, t, field);
    const char *key = lua_tostring(L, -1);
    const plan_tensor_info *info = key ? find_info(ix, list, key) : NULL;
    lua_pop(L, 1);
    return info ? info->offset : 0;
}

/* graph.layers (graph at stack index g) into plan->layers. */
static pp_status read_layers(pp_context *ctx, plan_reader *r, lua_State *L, int g, gen_plan *plan)
{
    lua_getfield(L, g, "layers");
    int lt = lua_gettop(L);
    lua_getfield(L, g, "tensors");
    int tensors = lua_gettop(L);
    int n = (int)luaL_len(L, lt);
    plan->layers = calloc((size_t)n + 1, sizeof *plan->layers);
    plan->tensor_elems = calloc((size_t)(2 * n + 2), sizeof *plan->tensor_elems);
    char(*names)[96] = calloc((size_t)(2 * n + 2), sizeof *names);
    if (!plan->layers || !plan->tensor_elems || !names) {
        free(names);
        lua_pop(L, 2);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "plan: out of memory");
    }
    int oom = tensor_id(r, L, tensors, "x", plan, names) == -2;
    for (int i = 0; i < n && !oom; i++) {
        plan_layer *l = &plan->layers[i];
        lua_rawgeti(L, lt, i + 1);
        int t = lua_gettop(L);
        gen_lua_copy_field(L, t, "op", l->op, sizeof l->op);
        gen_lua_copy_field(L, t, "name", l->name, sizeof l->name);
        char buf[96];
        gen_lua_copy_field(L, t, "input", buf, sizeof buf);
        l->input = tensor_id(r, L, tensors, buf, plan, names);
        gen_lua_copy_field(L, t, "output", buf, sizeof buf);
        l->output = buf[0] ? tensor_id(r, L, tensors, buf, plan, names) : -1;
        gen_lua_copy_field(L, t, "residual", buf, sizeof buf);
        l->residual = buf[0] ? tensor_id(r, L, tensors, buf, plan, names) : -1;
        oom = l->input == -2 || l->output == -2 || l->residual == -2;
        /* The description fields as a pp_layer_desc has them (0 where the op has none). */
        pp_layer_desc d;
        gen_layer_read_desc(L, t, &d);
        l->n = d.n, l->c = d.c, l->h = d.h, l->w = d.w, l->k = d.k, l->r = d.r, l->s = d.s;
        l->stride = d.stride, l->pad = d.pad, l->pool = d.pool, l->pool_max = d.pool_mode == PP_POOL_MAX;
        l->variant_fwd = d.variant_fwd, l->variant_bwd_data = d.variant_bwd_data;
        l->variant_bwd_weight = d.variant_bwd_weight;
        int *ints[] = {&l->p, &l->q, &l->in, &l->out, &l->classes};
        const char *keys[] = {"P", "Q", "IN", "OUT", "CLASSES"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) *ints[k] = gen_lua_int(L, t, keys[k]);
        if (strcmp(l->op, "bn") == 0) l->h = gen_lua_int(L, t, "HW"), l->w = 1;
        lua_getfield(L, t, "relu");
        l->relu = lua_toboolean(L, -1);
        lua_pop(L, 1);
        l->weight = info_offset(&r->params, plan->params, L, t, "weight");
        l->bias = info_offset(&r->params, plan->params, L, t, "bias");
        l->running_mean = info_offset(&r->state, plan->state, L, t, "running_mean");
        l->running_var = info_offset(&r->state, plan->state, L, t, "running_var");
        lua_pop(L, 1);
    }
    plan->layer_count = n;
    /* The tensor index borrows names, which are freed here. */
    name_index_free(&r->tensors);
    free(names);
    lua_pop(L, 2);
    return oom ? ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "plan: out of memory") : PP_OK;
}

static pp_status read_plan_with(pp_context *ctx, plan_reader *r, lua_State *L, gen_plan *plan)
{
    int p = lua_gettop(L);
    lua_getfield(L, p, "graph");
    int g = lua_gettop(L);
    gen_lua_copy_field(L, g, "name", plan->model, sizeof plan->model);
    plan->batch = gen_lua_int(L, g, "batch");
    plan->height = gen_lua_int(L, g, "height");
    plan->width = gen_lua_int(L, g, "width");
    plan->classes = gen_lua_int(L, g, "classes");
    plan->param_count = gen_lua_size(L, g, "param_count");
    plan->state_count = gen_lua_size(L, g, "state_count");
    lua_getfield(L, g, "tensors");
    lua_getfield(L, -1, "x");
    lua_rawgeti(L, -1, 2);
    plan->channels = (int)lua_tointeger(L, -1);
    lua_pop(L, 3);
    lua_getfield(L, g, "params");
    pp_status st = read_tensor_infos(ctx, L, lua_gettop(L), &plan->params, &plan->param_count_keys, &r->params);
    lua_pop(L, 1);
    if (st != PP_OK) return st;
    lua_getfield(L, g, "state");
    st = read_tensor_infos(ctx, L, lua_gettop(L), &plan->state, &plan->state_count_keys, &r->state);
    lua_pop(L, 1);
    if (st != PP_OK) return st;
    char logits[96];
    gen_lua_copy_field(L, g, "logits", logits, sizeof logits);
    st = read_layers(ctx, r, L, g, plan);
    lua_pop(L, 1);
    if (st != PP_OK) return st;

    plan->forward_end = gen_lua_int(L, p, "forward_end");
    gen_lua_copy_field(L, p, "math", plan->math, sizeof plan->math);
    char act[8];
    gen_lua_copy_field(L, p, "act", act, sizeof act);
    plan->act_bf16 = strcmp(act, "bf16") == 0;
    gen_lua_copy_field(L, p, "baseline_policy", plan->baseline_policy, sizeof plan->baseline_policy);
    lua_getfield(L, p, "steps");
    lua_getfield(L, p, "buffers");
    st = read_steps(ctx, r, L, lua_gettop(L) - 1, lua_gettop(L), plan, &plan->train);
    lua_pop(L, 2);
    if (st != PP_OK) return st;
    lua_getfield(L, p, "infer_steps");
    lua_getfield(L, p, "infer_buffers");
    st = read_steps(ctx, r, L, lua_gettop(L) - 1, lua_gettop(L), plan, &plan->infer);
    lua_pop(L, 2);
    if (st != PP_OK) return st;
    plan->x_buffer = find_buffer(&plan->train, "x");
    plan->labels_buffer = find_buffer(&plan->train, "labels");
    plan->loss_buffer = find_buffer(&plan->train, "loss");
    plan->logits_buffer = find_buffer(&plan->infer, logits);

    lua_getfield(L, p, "report");
    int report = lua_gettop(L);
    plan->weights = gen_lua_size(L, report, "weights");
    plan->gradients = gen_lua_size(L, report, "gradients");
    plan->optimizer = gen_lua_size(L, report, "optimizer");
    plan->state_bytes = gen_lua_size(L, report, "state");
    plan->saved = gen_lua_size(L, report, "saved");
    plan->largest_transient = gen_lua_size(L, report, "largest_transient");
    plan->live_peak = gen_lua_size(L, report, "live_peak");
    lua_getfield(L, report, "saved_by_stage");
    int by_stage = lua_gettop(L);
    lua_getfield(L, p, "graph");
    lua_getfield(L, -1, "stages");
    int stages = lua_gettop(L);
    int n = (int)luaL_len(L, stages);
    for (int i = 0; i < n && plan->stage_count < PLAN_MAX_STAGES; i++) {
        lua_rawgeti(L, stages, i + 1);
        const char *name = lua_tostring(L, -1);
        int k = plan->stage_count++;
        snprintf(plan->stage_names[k], sizeof plan->stage_names[k], "%s", name ? name : "");
        lua_getfield(L, by_stage, plan->stage_names[k]);
        plan->saved_by_stage[k] = (size_t)lua_tointeger(L, -1);
        lua_pop(L, 2);
    }
    lua_pop(L, 4);
    return PP_OK;
}

static pp_status read_plan(pp_context *ctx, lua_State *L, gen_plan *plan)
{
    plan_reader r;
    name_index_init(&r.params), name_index_init(&r.state), name_index_init(&r.kernels);
    name_index_init(&r.tensors), name_index_init(&r.buffers);
    pp_status st = read_plan_with(ctx, &r, L, plan);
    reader_free(&r);
    return st;
}

/* Whether a policy argument names a policy file (ends in .lua) rather than policy text. */
static int is_policy_file(const char *policy)
{
    size_t len = strlen(policy);
    return len > 4 && strcmp(policy + len - 4, ".lua") == 0;
}

/* Pushes the policy argument of the api functions: { text = policy }, or, for a policy
 * file read into file_text, { file_text, file_name = policy }. */
static void push_policy(lua_State *L, const char *policy, const char *file_text, size_t file_len)
{
    lua_createtable(L, 0, 2);
    if (file_text) {
        lua_pushlstring(L, file_text, file_len);
        lua_setfield(L, -2, "file_text");
        lua_pushstring(L, policy);
        lua_setfield(L, -2, "file_name");
    } else {
        lua_pushstring(L, policy);
        lua_setfield(L, -2, "text");
    }
}

/* Calls api.<function>(model_text, model_name, options, policy) for req, leaving the
 * result on the stack of the returned state (closed by the caller). */
static pp_status call_model_api(pp_context *ctx, const gen_plan_request *req, const char *function, lua_State **out)
{
    *out = NULL;
    if (!req->model) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "no model given");
    if (req->batch < 1) return ctx_fail(ctx, PP_ERR_SHAPE, "batch must be >= 1, got %d", req->batch);
    char *text = NULL, *policy_text = NULL;
    size_t len = 0, policy_len = 0;
    char name[4200];
    PP_TRY(model_text(ctx, req->model, &text, &len, name, sizeof name));
    const char *policy = req->policy ? req->policy : "1";
    int policy_file = is_policy_file(policy);
    pp_status st = PP_OK;
    if (policy_file) st = gen_lua_read_file(ctx, policy, "policy file", &policy_text, &policy_len);
    const gen_lua_file files[2] = {{name, "model file"}, {policy, "policy file"}};
    lua_State *L = NULL;
    if (st == PP_OK) st = gen_lua_open(ctx, files, policy_file ? 2 : 1, &L);
    if (st == PP_OK) st = gen_lua_push_api(ctx, L, function);
    if (st == PP_OK) {
        lua_pushlstring(L, text, len);
        lua_pushstring(L, name);
        lua_createtable(L, 0, 6);
        const struct {
            const char *key;
            int value;
        } fields[] = {{"batch", req->batch}, {"height", req->height}, {"width", req->width}, {"classes", req->classes}};
        for (size_t i = 0; i < 4; i++) {
            lua_pushinteger(L, fields[i].value);
            lua_setfield(L, -2, fields[i].key);
        }
        lua_pushboolean(L, req->sources);
        lua_setfield(L, -2, "sources");
        lua_pushinteger(L, req->sync_world > 1 ? req->sync_world : 1);
        lua_setfield(L, -2, "sync_world");
        lua_createtable(L, 0, req->tuned_count);
        for (int i = 0; i < req->tuned_count; i++) {
            lua_pushinteger(L, req->tuned_variants[i]);
            lua_setfield(L, -2, req->tuned_keys[i]);
        }
        lua_setfield(L, -2, "tuned");
        push_policy(L, policy, policy_text, policy_len);
        st = gen_lua_call_api(ctx, L, 4);
    }
    free(text);
    free(policy_text);
    if (st != PP_OK) {
        gen_lua_close(L);
        return st;
    }
    *out = L;
    return PP_OK;
}

pp_status gen_plan_train(pp_context *ctx, const gen_plan_request *req, gen_plan *out)
{
    memset(out, 0, sizeof *out);
    lua_State *L = NULL;
    pp_status st = call_model_api(ctx, req, "train_plan", &L);
    if (st == PP_OK) st = read_plan(ctx, L, out);
    out->sync_world = req->sync_world > 1 ? req->sync_world : 1;
    if (st == PP_OK) st = planner_place(ctx, &out->train);
    if (st == PP_OK) st = planner_place(ctx, &out->infer);
    gen_lua_close(L);
    if (st != PP_OK) gen_plan_free(out);
    return st;
}

pp_status gen_plan_bundle(pp_context *ctx, const gen_plan_request *req, gen_bundle *out)
{
    memset(out, 0, sizeof *out);
    lua_State *L = NULL;
    PP_TRY(call_model_api(ctx, req, "training_bundle", &L));
    int r = lua_gettop(L);
    out->kernels = gen_lua_int(L, r, "kernels");
    out->launches = gen_lua_int(L, r, "launches");
    out->batch = gen_lua_int(L, r, "batch");
    out->height = gen_lua_int(L, r, "height");
    out->width = gen_lua_int(L, r, "width");
    out->classes = gen_lua_int(L, r, "classes");
    gen_lua_copy_field(L, r, "math", out->math, sizeof out->math);
    lua_getfield(L, r, "files");
    int list = lua_gettop(L);
    int n = (int)luaL_len(L, list);
    pp_status st = PP_OK;
    out->files = calloc((size_t)n + 1, sizeof *out->files);
    if (!out->files) st = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < n && st == PP_OK; i++) {
        lua_rawgeti(L, list, i + 1);
        int f = lua_gettop(L);
        gen_bundle_file *bf = &out->files[i];
        out->file_count = i + 1;
        bf->path = gen_lua_string(L, f, "path");
        lua_getfield(L, f, "text");
        size_t len = 0;
        const char *text = lua_tolstring(L, -1, &len);
        bf->text = text ? malloc(len + 1) : NULL;
        if (bf->text) memcpy(bf->text, text, len + 1), bf->len = len;
        lua_pop(L, 2);
        if (!bf->path || !bf->text) st = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    }
    gen_lua_close(L);
    if (st != PP_OK) gen_plan_bundle_free(out);
    return st;
}

void gen_plan_bundle_free(gen_bundle *b)
{
    if (!b) return;
    for (int i = 0; i < b->file_count; i++) free(b->files[i].path), free(b->files[i].text);
    free(b->files);
    memset(b, 0, sizeof *b);
}

pp_status gen_plan_tuning_version(pp_context *ctx, char *out, size_t size)
{
    lua_State *L;
    PP_TRY(gen_lua_open(ctx, NULL, 0, &L));
    pp_status st = gen_lua_push_api(ctx, L, "tuning_version");
    if (st == PP_OK) st = gen_lua_call_api(ctx, L, 0);
    if (st == PP_OK) snprintf(out, size, "%s", lua_tostring(L, -1));
    gen_lua_close(L);
    return st;
}

pp_status gen_plan_tuning_targets(pp_context *ctx, const gen_plan_request *req, gen_tuning *out)
{
    memset(out, 0, sizeof *out);
    lua_State *L = NULL;
    PP_TRY(call_model_api(ctx, req, "tuning_targets", &L));
    int r = lua_gettop(L);
    gen_lua_copy_field(L, r, "math", out->math, sizeof out->math);
    gen_lua_copy_field(L, r, "version", out->version, sizeof out->version);
    lua_getfield(L, r, "targets");
    int list = lua_gettop(L);
    int n = (int)luaL_len(L, list);
    pp_status st = PP_OK;
    out->targets = calloc((size_t)n + 1, sizeof *out->targets);
    if (!out->targets) st = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < n && st == PP_OK; i++) {
        gen_tuning_target *t = &out->targets[i];
        lua_rawgeti(L, list, i + 1);
        int e = lua_gettop(L);
        gen_lua_copy_field(L, e, "key", t->key, sizeof t->key);
        gen_lua_copy_field(L, e, "op", t->op, sizeof t->op);
        gen_lua_copy_field(L, e, "name", t->name, sizeof t->name);
        t->count = gen_lua_int(L, e, "count");
        lua_getfield(L, e, "layer");
        gen_layer_read_desc(L, -1, &t->desc);
        lua_pop(L, 1);
        lua_getfield(L, e, "candidates");
        t->candidate_count = (int)luaL_len(L, -1);
        t->candidates = malloc(sizeof(int) * ((size_t)t->candidate_count + 1));
        if (!t->candidates) {
            st = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
        } else {
            for (int c = 0; c < t->candidate_count; c++) {
                lua_rawgeti(L, -1, c + 1);
                t->candidates[c] = (int)lua_tointeger(L, -1);
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 2);
        out->count = i + 1;
    }
    gen_lua_close(L);
    if (st != PP_OK) gen_plan_tuning_free(out);
    return st;
}

void gen_plan_tuning_free(gen_tuning *t)
{
    if (!t) return;
    for (int i = 0; i < t->count; i++) free(t->targets[i].candidates);
    free(t->targets);
    memset(t, 0, sizeof *t);
}

static void steps_free(plan_steps *s)
{
    free(s->steps);
    free(s->buffers);
}

void gen_plan_free(gen_plan *plan)
{
    if (!plan) return;
    steps_free(&plan->train);
    steps_free(&plan->infer);
    for (int i = 0; i < plan->kernel_count; i++) gen_layer_kernel_free(&plan->kernels[i]);
    free(plan->kernels);
    free(plan->params);
    free(plan->state);
    free(plan->layers);
    free(plan->tensor_elems);
    memset(plan, 0, sizeof *plan);
}

pp_status gen_plan_policy_for_layers(pp_context *ctx, const char *policy, int count, const char *const *names,
                                     const char *const *stages, int *factors, pp_policy_options *options)
{
    char *policy_text = NULL;
    size_t policy_len = 0;
    int policy_file = is_policy_file(policy);
    pp_status st = PP_OK;
    if (policy_file) st = gen_lua_read_file(ctx, policy, "policy file", &policy_text, &policy_len);
    const gen_lua_file files[1] = {{policy, "policy file"}};
    lua_State *L = NULL;
    if (st == PP_OK) st = gen_lua_open(ctx, files, 1, &L);
    if (st == PP_OK) st = gen_lua_push_api(ctx, L, "policy_for_layers");
    if (st == PP_OK) {
        push_policy(L, policy, policy_text, policy_len);
        lua_createtable(L, count, 0);
        lua_createtable(L, count, 0);
        for (int i = 0; i < count; i++) {
            lua_pushstring(L, names[i]);
            lua_rawseti(L, -3, i + 1);
            lua_pushstring(L, stages[i] ? stages[i] : "");
            lua_rawseti(L, -2, i + 1);
        }
        st = gen_lua_call_api(ctx, L, 3);
    }
    free(policy_text);
    if (st == PP_OK) {
        lua_getfield(L, -1, "factors");
        for (int i = 0; i < count; i++) {
            lua_rawgeti(L, -1, i + 1);
            factors[i] = (int)lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        char text[16];
        gen_lua_copy_field(L, -1, "mode", text, sizeof text);
        options->mode = strcmp(text, "max") == 0 ? PP_POOL_MAX : PP_POOL_AVG;
        gen_lua_copy_field(L, -1, "bn", text, sizeof text);
        options->bn_bf16 = strcmp(text, "bf16") == 0;
        gen_lua_copy_field(L, -1, "act", text, sizeof text);
        options->act_bf16 = strcmp(text, "bf16") == 0;
        gen_lua_copy_field(L, -1, "relu", text, sizeof text);
        options->relu_mask = strcmp(text, "mask") == 0;
        gen_lua_copy_field(L, -1, "math", options->math, sizeof options->math);
    }
    gen_lua_close(L);
    return st;
}
