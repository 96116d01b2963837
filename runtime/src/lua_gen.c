/* lua_gen.c - runs the embedded Lua generator in-process: module loading from the
 * library's embedded files, and conversion of the generator's results (kernel sources,
 * launch geometry, buffers) into C structures. One Lua state per call; nothing persists. */
#include "lua_gen.h"
#include "plan.h"

#include "embedded.h"
#include "file.h"

#include <lauxlib.h>
#include <stdio.h>
#include <lua.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

/* package.searchers entry: "poolprop.x" -> embedded "generator/poolprop/x.lua". */
static int search_embedded(lua_State *L)
{
    const char *module = luaL_checkstring(L, 1);
    char path[512];
    snprintf(path, sizeof path, "generator/%s.lua", module);
    for (char *p = path + strlen("generator/"); *p; p++)
        if (*p == '.' && strcmp(p, ".lua") != 0) *p = '/';
    const pp_embedded_file *f = embedded_find(path);
    if (!f) {
        lua_pushfstring(L, "\n\tno embedded file '%s'", path);
        return 1;
    }
    char chunkname[600];
    snprintf(chunkname, sizeof chunkname, "@%s", path);
    if (luaL_loadbufferx(L, f->data, f->size, chunkname, "t") != LUA_OK) return lua_error(L);
    lua_pushstring(L, path);
    return 2;
}

/* files.read replacement: templates come from the embedded files. */
static int read_embedded(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    const pp_embedded_file *f = embedded_find(path);
    if (!f) return luaL_error(L, "no embedded file '%s'", path);
    lua_pushlstring(L, f->data, f->size);
    return 1;
}

static pp_status open_state(pp_context *ctx, lua_State **out)
{
    lua_State *L = luaL_newstate();
    if (!L) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "cannot create a Lua state");
    luaL_openlibs(L);
    /* table.insert(package.searchers, 2, search_embedded) */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchers");
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = n; i >= 2; i--) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushcfunction(L, search_embedded);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 2);
    /* require("poolprop.files").read = read_embedded */
    lua_getglobal(L, "require");
    lua_pushstring(L, "poolprop.files");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        pp_status st = ctx_fail(ctx, PP_ERR_INTERNAL, "generator: %s", lua_tostring(L, -1));
        lua_close(L);
        return st;
    }
    lua_pushcfunction(L, read_embedded);
    lua_setfield(L, -2, "read");
    lua_pop(L, 1);
    *out = L;
    return PP_OK;
}

/* Pushes require("poolprop.api")[fn] onto the stack. */
static pp_status push_api(pp_context *ctx, lua_State *L, const char *fn)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, "poolprop.api");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK)
        return ctx_fail(ctx, PP_ERR_INTERNAL, "generator: %s", lua_tostring(L, -1));
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    return PP_OK;
}

/* Calls the api function on the stack with nargs arguments; on success leaves its result
 * on the stack. Generator failures become ctx errors with the generator's message. */
static pp_status call_api(pp_context *ctx, lua_State *L, int nargs)
{
    if (lua_pcall(L, nargs, 3, 0) != LUA_OK)
        return ctx_fail(ctx, PP_ERR_INTERNAL, "generator: %s", lua_tostring(L, -1));
    if (lua_isnil(L, -3)) {
        const char *kind = lua_tostring(L, -1);
        pp_status st = PP_ERR_GENERATOR;
        if (kind && strcmp(kind, "parse") == 0) st = PP_ERR_PARSE;
        if (kind && strcmp(kind, "shape") == 0) st = PP_ERR_SHAPE;
        if (kind && strcmp(kind, "io") == 0) st = PP_ERR_IO;
        if (kind && strcmp(kind, "invalid") == 0) st = PP_ERR_INVALID_ARGUMENT;
        return ctx_fail(ctx, st, "%s", lua_tostring(L, -2));
    }
    lua_pop(L, 2);
    return PP_OK;
}

static int get_int(lua_State *L, int table, const char *key)
{
    lua_getfield(L, table, key);
    int v = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
}

static char *get_string(lua_State *L, int table, const char *key)
{
    lua_getfield(L, table, key);
    size_t len = 0;
    const char *s = lua_tolstring(L, -1, &len);
    char *copy = NULL;
    if (s) {
        copy = malloc(len + 1);
        if (copy) memcpy(copy, s, len + 1);
    }
    lua_pop(L, 1);
    return copy;
}

static void get_dim3(lua_State *L, int table, const char *key, unsigned out[3])
{
    lua_getfield(L, table, key);
    for (int i = 0; i < 3; i++) {
        lua_rawgeti(L, -1, i + 1);
        out[i] = (unsigned)lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Converts one kernel table at stack index t; 0 on out of memory. */
static int read_kernel(lua_State *L, int t, gen_kernel *k)
{
    t = lua_absindex(L, t);
    k->name = get_string(L, t, "name");
    k->op = get_string(L, t, "op");
    k->source = get_string(L, t, "source");
    k->variant = get_int(L, t, "variant");
    lua_getfield(L, t, "math");
    snprintf(k->math, sizeof k->math, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "fp32");
    lua_pop(L, 1);
    get_dim3(L, t, "grid", k->grid);
    get_dim3(L, t, "block", k->block);
    k->dynamic_shared = get_int(L, t, "dynamic_shared");
    lua_getfield(L, t, "args");
    k->arg_count = (int)luaL_len(L, -1);
    if (k->arg_count > GEN_MAX_ARGS) k->arg_count = GEN_MAX_ARGS;
    for (int a = 0; a < k->arg_count; a++) {
        lua_rawgeti(L, -1, a + 1);
        snprintf(k->args[a], sizeof k->args[a], "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return k->name && k->op && k->source;
}

void gen_kernel_free(gen_kernel *k)
{
    free(k->name);
    free(k->op);
    free(k->source);
    memset(k, 0, sizeof *k);
}

/* Converts the layer.generate() result at stack index idx. */
static pp_status read_layer(pp_context *ctx, lua_State *L, int idx, gen_layer *out)
{
    memset(out, 0, sizeof *out);
    idx = lua_absindex(L, idx);
    lua_getfield(L, idx, "shape");
    int sh = lua_gettop(L);
    out->p = get_int(L, sh, "P");
    out->q = get_int(L, sh, "Q");
    out->hp = get_int(L, sh, "HP");
    out->wp = get_int(L, sh, "WP");
    lua_pop(L, 1);
    char *sig = get_string(L, idx, "signature");
    snprintf(out->signature, sizeof out->signature, "%s", sig ? sig : "");
    free(sig);

    lua_getfield(L, idx, "buffers");
    int bt = lua_gettop(L);
    out->buffer_count = (int)luaL_len(L, bt);
    out->buffers = calloc((size_t)out->buffer_count, sizeof *out->buffers);
    for (int i = 0; out->buffers && i < out->buffer_count; i++) {
        lua_rawgeti(L, bt, i + 1);
        char *name = get_string(L, lua_gettop(L), "name");
        snprintf(out->buffers[i].name, sizeof out->buffers[i].name, "%s", name ? name : "");
        free(name);
        lua_getfield(L, -1, "elems");
        out->buffers[i].elems = (size_t)lua_tointeger(L, -1);
        lua_pop(L, 1);
        char *dtype = get_string(L, lua_gettop(L), "dtype");
        out->buffers[i].elem_bytes = dtype && strcmp(dtype, "bf16") == 0 ? 2 : 4;
        free(dtype);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    lua_getfield(L, idx, "kernels");
    int kt = lua_gettop(L);
    out->kernel_count = (int)luaL_len(L, kt);
    out->kernels = calloc((size_t)out->kernel_count, sizeof *out->kernels);
    for (int i = 0; out->kernels && i < out->kernel_count; i++) {
        lua_rawgeti(L, kt, i + 1);
        int ok = read_kernel(L, -1, &out->kernels[i]);
        lua_pop(L, 1);
        if (!ok) {
            lua_pop(L, 1);
            gen_layer_free(out);
            return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "generator result: out of memory");
        }
    }
    lua_pop(L, 1);
    if (!out->buffers || !out->kernels) {
        gen_layer_free(out);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "generator result: out of memory");
    }
    return PP_OK;
}

static void push_desc(lua_State *L, const pp_layer_desc *d)
{
    lua_newtable(L);
    if (d->name) {
        lua_pushstring(L, d->name);
        lua_setfield(L, -2, "name");
    }
    const struct { const char *key; int value; } ints[] = {
        {"N", d->n}, {"C", d->c}, {"H", d->h}, {"W", d->w}, {"K", d->k}, {"R", d->r},
        {"S", d->s}, {"stride", d->stride}, {"pad", d->pad}, {"pool", d->pool},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        lua_pushinteger(L, ints[i].value);
        lua_setfield(L, -2, ints[i].key);
    }
    lua_pushstring(L, d->pool_mode == PP_POOL_MAX ? "max" : d->pool_mode == PP_POOL_AVG ? "avg" : "?");
    lua_setfield(L, -2, "pool_mode");
    lua_pushstring(L, d->storage == PP_STORAGE_BF16 ? "bf16" : d->storage == PP_STORAGE_F32 ? "fp32" : "?");
    lua_setfield(L, -2, "storage");
    lua_newtable(L);
    lua_pushinteger(L, d->variant_fwd);
    lua_setfield(L, -2, "conv_fwd");
    lua_pushinteger(L, d->variant_bwd_data);
    lua_setfield(L, -2, "conv_bwd_data");
    lua_pushinteger(L, d->variant_bwd_weight);
    lua_setfield(L, -2, "conv_bwd_weight");
    lua_setfield(L, -2, "variant");
}

pp_status gen_layer_from_desc(pp_context *ctx, const pp_layer_desc *desc, gen_layer *out)
{
    lua_State *L;
    PP_TRY(open_state(ctx, &L));
    pp_status st = push_api(ctx, L, "layer");
    if (st == PP_OK) {
        push_desc(L, desc);
        st = call_api(ctx, L, 1);
    }
    if (st == PP_OK) st = read_layer(ctx, L, -1, out);
    lua_close(L);
    return st;
}

pp_status gen_op_kernel(pp_context *ctx, const char *op, const char *params_lua, gen_kernel *out)
{
    memset(out, 0, sizeof *out);
    lua_State *L;
    PP_TRY(open_state(ctx, &L));
    pp_status st = push_api(ctx, L, "op_kernel");
    if (st == PP_OK) {
        lua_pushstring(L, op);
        lua_pushstring(L, params_lua);
        st = call_api(ctx, L, 2);
    }
    if (st == PP_OK && !read_kernel(L, -1, out)) {
        gen_kernel_free(out);
        st = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "generator result: out of memory");
    }
    lua_close(L);
    return st;
}

pp_status gen_variant_count(pp_context *ctx, const char *op, int *out)
{
    lua_State *L;
    PP_TRY(open_state(ctx, &L));
    pp_status st = push_api(ctx, L, "variant_count");
    if (st == PP_OK) {
        lua_pushstring(L, op);
        st = call_api(ctx, L, 1);
    }
    if (st == PP_OK) *out = (int)lua_tointeger(L, -1);
    lua_close(L);
    return st;
}

static void copy_field(lua_State *L, int t, const char *key, char *dst, size_t len)
{
    lua_getfield(L, t, key);
    const char *s = lua_tostring(L, -1);
    snprintf(dst, len, "%s", s ? s : "");
    lua_pop(L, 1);
}

pp_status gen_tuning_version(pp_context *ctx, char *out, size_t size)
{
    lua_State *L;
    PP_TRY(open_state(ctx, &L));
    pp_status st = push_api(ctx, L, "tuning_version");
    if (st == PP_OK) st = call_api(ctx, L, 0);
    if (st == PP_OK) snprintf(out, size, "%s", lua_tostring(L, -1));
    lua_close(L);
    return st;
}

pp_status gen_variant_info(pp_context *ctx, const char *op, int index, pp_variant_info *out)
{
    lua_State *L;
    PP_TRY(open_state(ctx, &L));
    pp_status st = push_api(ctx, L, "variant_info");
    if (st == PP_OK) {
        lua_pushstring(L, op);
        lua_pushinteger(L, index);
        st = call_api(ctx, L, 2);
    }
    if (st == PP_OK) {
        int t = lua_gettop(L);
        memset(out, 0, sizeof *out);
        out->threads = get_int(L, t, "threads");
        out->stages = get_int(L, t, "stages");
        out->shared_bytes = get_int(L, t, "shared");
        out->shared_bytes_bf16 = get_int(L, t, "shared_bf16");
        lua_getfield(L, t, "math");
        const char *math = lua_tostring(L, -1);
        out->math = math && strcmp(math, "tf32") == 0 ? "tf32" : math && strcmp(math, "bf16") == 0 ? "bf16" : "fp32";
        lua_pop(L, 1);
        copy_field(L, t, "config", out->config, sizeof out->config);
    }
    lua_close(L);
    return st;
}

/* Reads a description file, or the embedded default when path is NULL. */
static pp_status description_text(pp_context *ctx, const char *path, char **text, size_t *len,
                                  const char **chunkname)
{
    if (path) {
        *chunkname = path;
        return file_read_all(ctx, path, text, len);
    }
    const pp_embedded_file *f = embedded_find(GEN_DEFAULT_LAYERS);
    if (!f) return ctx_fail(ctx, PP_ERR_INTERNAL, "the embedded default layer set is missing");
    *text = malloc(f->size + 1);
    if (!*text) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    memcpy(*text, f->data, f->size + 1);
    *len = f->size;
    *chunkname = GEN_DEFAULT_LAYERS;
    return PP_OK;
}

/* Opens a state and calls api[fn](description text, chunk name, out_dir) for the file at
 * path (NULL: the embedded default set). out_dir is passed only when pass_dir is set (as
 * nil when NULL). On success *out holds the state with the result on top. */
static pp_status call_with_description(pp_context *ctx, const char *path, const char *fn, int pass_dir,
                                       const char *out_dir, lua_State **out)
{
    char *text = NULL;
    size_t len = 0;
    const char *chunkname = NULL;
    PP_TRY(description_text(ctx, path, &text, &len, &chunkname));
    lua_State *L = NULL;
    pp_status st = open_state(ctx, &L);
    if (st == PP_OK) st = push_api(ctx, L, fn);
    if (st == PP_OK) {
        lua_pushlstring(L, text, len);
        lua_pushstring(L, chunkname);
        if (pass_dir) {
            if (out_dir)
                lua_pushstring(L, out_dir);
            else
                lua_pushnil(L);
        }
        st = call_api(ctx, L, pass_dir ? 3 : 2);
    }
    free(text);
    if (st != PP_OK && L) lua_close(L);
    *out = st == PP_OK ? L : NULL;
    return st;
}

pp_status gen_load_descs(pp_context *ctx, const char *path, pp_layer_desc **descs, int *count)
{
    *descs = NULL;
    *count = 0;
    lua_State *L;
    PP_TRY(call_with_description(ctx, path, "load_layers", 0, NULL, &L));
    pp_status st = PP_OK;
    int n = (int)luaL_len(L, -1);
    pp_layer_desc *list = calloc((size_t)(n ? n : 1), sizeof *list);
    if (!list) st = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; list && i < n; i++) {
        lua_rawgeti(L, -1, i + 1);
        int t = lua_gettop(L);
        pp_layer_desc *d = &list[i];
        pp_layer_desc_init(d);
        d->n = get_int(L, t, "N");
        d->c = get_int(L, t, "C");
        d->h = get_int(L, t, "H");
        d->w = get_int(L, t, "W");
        d->k = get_int(L, t, "K");
        d->r = get_int(L, t, "R");
        d->s = get_int(L, t, "S");
        d->stride = get_int(L, t, "stride");
        d->pad = get_int(L, t, "pad");
        d->pool = get_int(L, t, "pool");
        char *mode = get_string(L, t, "pool_mode");
        d->pool_mode = mode && strcmp(mode, "max") == 0 ? PP_POOL_MAX : PP_POOL_AVG;
        free(mode);
        char *storage = get_string(L, t, "storage");
        d->storage = storage && strcmp(storage, "bf16") == 0 ? PP_STORAGE_BF16 : PP_STORAGE_F32;
        free(storage);
        d->name = get_string(L, t, "name");
        lua_getfield(L, t, "variant");
        int vt = lua_gettop(L);
        d->variant_fwd = get_int(L, vt, "conv_fwd");
        d->variant_bwd_data = get_int(L, vt, "conv_bwd_data");
        d->variant_bwd_weight = get_int(L, vt, "conv_bwd_weight");
        lua_pop(L, 2);
    }
    if (list) {
        *descs = list;
        *count = n;
    }
    lua_close(L);
    return st;
}

pp_status gen_write_bundle(pp_context *ctx, const char *path, const char *out_dir, int *files_written)
{
    lua_State *L;
    PP_TRY(call_with_description(ctx, path, "write_bundle", 1, out_dir, &L));
    if (files_written) *files_written = (int)lua_tointeger(L, -1);
    lua_close(L);
    return PP_OK;
}

void gen_layer_free(gen_layer *layer)
{
    if (!layer) return;
    for (int i = 0; layer->kernels && i < layer->kernel_count; i++) gen_kernel_free(&layer->kernels[i]);
    free(layer->kernels);
    free(layer->buffers);
    memset(layer, 0, sizeof *layer);
}

/* ---- training plans (generator/poolprop/train.lua) ---- */


static size_t get_size(lua_State *L, int t, const char *key)
{
    lua_getfield(L, t, key);
    size_t v = (size_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
}

static pp_status read_tensor_infos(pp_context *ctx, lua_State *L, int t, plan_tensor_info **out, int *count)
{
    int n = (int)luaL_len(L, t);
    plan_tensor_info *list = calloc((size_t)(n ? n : 1), sizeof *list);
    if (!list) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "plan: out of memory");
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, t, i + 1);
        int e = lua_gettop(L);
        copy_field(L, e, "key", list[i].key, sizeof list[i].key);
        copy_field(L, e, "init", list[i].init, sizeof list[i].init);
        list[i].offset = get_size(L, e, "offset");
        list[i].count = get_size(L, e, "count");
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
    return PP_OK;
}

static const plan_tensor_info *find_info(const plan_tensor_info *list, int n, const char *key)
{
    for (int i = 0; i < n; i++)
        if (strcmp(list[i].key, key) == 0) return &list[i];
    return NULL;
}

static int find_buffer(const plan_steps *s, const char *name)
{
    for (int i = 0; i < s->buffer_count; i++)
        if (strcmp(s->buffers[i].name, name) == 0) return i;
    return -1;
}

static pp_status parse_ref(pp_context *ctx, const gen_plan *plan, const plan_steps *s, const char *text,
                           plan_ref *ref)
{
    static const char *const scalars[] = {"lr", "momentum", "weight_decay"};
    const plan_tensor_info *info;
    ref->index = 0;
    if (strcmp(text, "null") == 0) {
        ref->kind = REF_NULL;
    } else if (strncmp(text, "buf:", 4) == 0) {
        int b = find_buffer(s, text + 4);
        if (b < 0) return ctx_fail(ctx, PP_ERR_INTERNAL, "plan: unknown buffer '%s'", text + 4);
        ref->kind = REF_BUFFER;
        ref->index = (size_t)b;
    } else if (strncmp(text, "param:", 6) == 0 || strncmp(text, "grad:", 5) == 0) {
        int is_param = text[0] == 'p';
        const char *key = text + (is_param ? 6 : 5);
        if (!(info = find_info(plan->params, plan->param_count_keys, key)))
            return ctx_fail(ctx, PP_ERR_INTERNAL, "plan: unknown parameter '%s'", key);
        ref->kind = is_param ? REF_PARAM : REF_GRAD;
        ref->index = info->offset;
    } else if (strncmp(text, "state:", 6) == 0) {
        if (!(info = find_info(plan->state, plan->state_count_keys, text + 6)))
            return ctx_fail(ctx, PP_ERR_INTERNAL, "plan: unknown statistic '%s'", text + 6);
        ref->kind = REF_STATE;
        ref->index = info->offset;
    } else if (strncmp(text, "shadow:", 7) == 0) {
        if (!(info = find_info(plan->params, plan->param_count_keys, text + 7)))
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
static pp_status intern_kernel(pp_context *ctx, lua_State *L, int t, gen_plan *plan, int *index)
{
    lua_getfield(L, t, "name");
    const char *name = lua_tostring(L, -1);
    for (int i = 0; name && i < plan->kernel_count; i++)
        if (strcmp(plan->kernels[i].name, name) == 0) {
            lua_pop(L, 1);
            *index = i;
            return PP_OK;
        }
    lua_pop(L, 1);
    gen_kernel *grown = realloc(plan->kernels, sizeof *grown * (size_t)(plan->kernel_count + 1));
    if (!grown) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "plan: out of memory");
    plan->kernels = grown;
    gen_kernel *k = &plan->kernels[plan->kernel_count];
    memset(k, 0, sizeof *k);
    if (!read_kernel(L, t, k)) {
        gen_kernel_free(k);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "plan: out of memory");
    }
    *index = plan->kernel_count++;
    return PP_OK;
}

/* Reads steps and buffers from the tables at stack indices st (steps) and bt (buffers). */
static pp_status read_steps(pp_context *ctx, lua_State *L, int st, int bt, gen_plan *plan, plan_steps *out)
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
        copy_field(L, t, "name", b->name, sizeof b->name);
        copy_field(L, t, "kind", b->kind, sizeof b->kind);
        copy_field(L, t, "stage", b->stage, sizeof b->stage);
        b->bytes = get_size(L, t, "bytes");
        b->first = get_int(L, t, "first") - 1;
        b->last = get_int(L, t, "last") - 1;
        lua_getfield(L, t, "saved");
        b->saved = lua_toboolean(L, -1);
        lua_pop(L, 2);
    }
    for (int i = 0; i < out->step_count; i++) {
        plan_step *s = &out->steps[i];
        lua_rawgeti(L, st, i + 1);
        int t = lua_gettop(L);
        copy_field(L, t, "phase", s->phase, sizeof s->phase);
        copy_field(L, t, "layer", s->layer, sizeof s->layer);
        s->kernel = -1;
        lua_getfield(L, t, "refs");
        if (lua_istable(L, -1)) {
            lua_getfield(L, t, "kernel");
            pp_status rc = intern_kernel(ctx, L, lua_gettop(L), plan, &s->kernel);
            lua_pop(L, 1);
            if (rc != PP_OK) return rc;
            s->ref_count = (int)luaL_len(L, -1);
            if (s->ref_count > GEN_MAX_ARGS) return ctx_fail(ctx, PP_ERR_INTERNAL, "plan: too many kernel arguments");
            for (int a = 0; a < s->ref_count; a++) {
                lua_rawgeti(L, -1, a + 1);
                pp_status rs = parse_ref(ctx, plan, out, lua_tostring(L, -1), &s->refs[a]);
                lua_pop(L, 1);
                if (rs != PP_OK) return rs;
            }
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
        return file_read_all(ctx, model, text, len);
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
static int tensor_id(lua_State *L, int tensors, const char *name, gen_plan *plan, char (*names)[96])
{
    for (int i = 0; i < plan->tensor_count; i++)
        if (strcmp(names[i], name) == 0) return i;
    int id = plan->tensor_count++;
    snprintf(names[id], 96, "%s", name);
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

static size_t info_offset(const plan_tensor_info *list, int n, lua_State *L, int t, const char *field)
{
    lua_getfield(L, t, field);
    const char *key = lua_tostring(L, -1);
    const plan_tensor_info *info = key ? find_info(list, n, key) : NULL;
    lua_pop(L, 1);
    return info ? info->offset : 0;
}

/* graph.layers (graph at stack index g) into plan->layers. */
static pp_status read_layers(pp_context *ctx, lua_State *L, int g, gen_plan *plan)
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
    tensor_id(L, tensors, "x", plan, names);
    for (int i = 0; i < n; i++) {
        plan_layer *l = &plan->layers[i];
        lua_rawgeti(L, lt, i + 1);
        int t = lua_gettop(L);
        copy_field(L, t, "op", l->op, sizeof l->op);
        copy_field(L, t, "name", l->name, sizeof l->name);
        char buf[96];
        copy_field(L, t, "input", buf, sizeof buf);
        l->input = tensor_id(L, tensors, buf, plan, names);
        copy_field(L, t, "output", buf, sizeof buf);
        l->output = buf[0] ? tensor_id(L, tensors, buf, plan, names) : -1;
        copy_field(L, t, "residual", buf, sizeof buf);
        l->residual = buf[0] ? tensor_id(L, tensors, buf, plan, names) : -1;
        int *ints[] = {&l->n, &l->c, &l->h, &l->w, &l->k, &l->r, &l->s, &l->stride, &l->pad, &l->p, &l->q,
                       &l->in, &l->out, &l->classes, &l->pool};
        const char *keys[] = {"N", "C", "H", "W", "K", "R", "S", "stride", "pad", "P", "Q", "IN", "OUT", "CLASSES", "pool"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) *ints[k] = get_int(L, t, keys[k]);
        if (strcmp(l->op, "bn") == 0) l->h = get_int(L, t, "HW"), l->w = 1;
        lua_getfield(L, t, "relu");
        l->relu = lua_toboolean(L, -1);
        lua_pop(L, 1);
        copy_field(L, t, "pool_mode", buf, sizeof buf);
        l->pool_max = strcmp(buf, "max") == 0;
        lua_getfield(L, t, "variant");
        if (lua_istable(L, -1)) {
            int vt = lua_gettop(L);
            l->variant_fwd = get_int(L, vt, "conv_fwd");
            l->variant_bwd_data = get_int(L, vt, "conv_bwd_data");
            l->variant_bwd_weight = get_int(L, vt, "conv_bwd_weight");
        }
        lua_pop(L, 1);
        l->weight = info_offset(plan->params, plan->param_count_keys, L, t, "weight");
        l->bias = info_offset(plan->params, plan->param_count_keys, L, t, "bias");
        l->running_mean = info_offset(plan->state, plan->state_count_keys, L, t, "running_mean");
        l->running_var = info_offset(plan->state, plan->state_count_keys, L, t, "running_var");
        lua_pop(L, 1);
    }
    plan->layer_count = n;
    free(names);
    lua_pop(L, 2);
    return PP_OK;
}

static pp_status read_plan(pp_context *ctx, lua_State *L, gen_plan *plan)
{
    int p = lua_gettop(L);
    lua_getfield(L, p, "graph");
    int g = lua_gettop(L);
    copy_field(L, g, "name", plan->model, sizeof plan->model);
    plan->batch = get_int(L, g, "batch");
    plan->height = get_int(L, g, "height");
    plan->width = get_int(L, g, "width");
    plan->classes = get_int(L, g, "classes");
    plan->param_count = get_size(L, g, "param_count");
    plan->state_count = get_size(L, g, "state_count");
    lua_getfield(L, g, "tensors");
    lua_getfield(L, -1, "x");
    lua_rawgeti(L, -1, 2);
    plan->channels = (int)lua_tointeger(L, -1);
    lua_pop(L, 3);
    lua_getfield(L, g, "params");
    pp_status st = read_tensor_infos(ctx, L, lua_gettop(L), &plan->params, &plan->param_count_keys);
    lua_pop(L, 1);
    if (st != PP_OK) return st;
    lua_getfield(L, g, "state");
    st = read_tensor_infos(ctx, L, lua_gettop(L), &plan->state, &plan->state_count_keys);
    lua_pop(L, 1);
    if (st != PP_OK) return st;
    char logits[96];
    copy_field(L, g, "logits", logits, sizeof logits);
    st = read_layers(ctx, L, g, plan);
    lua_pop(L, 1);
    if (st != PP_OK) return st;

    plan->forward_end = get_int(L, p, "forward_end");
    copy_field(L, p, "math", plan->math, sizeof plan->math);
    char act[8];
    copy_field(L, p, "act", act, sizeof act);
    plan->act_bf16 = strcmp(act, "bf16") == 0;
    copy_field(L, p, "baseline_policy", plan->baseline_policy, sizeof plan->baseline_policy);
    lua_getfield(L, p, "steps");
    lua_getfield(L, p, "buffers");
    st = read_steps(ctx, L, lua_gettop(L) - 1, lua_gettop(L), plan, &plan->train);
    lua_pop(L, 2);
    if (st != PP_OK) return st;
    lua_getfield(L, p, "infer_steps");
    lua_getfield(L, p, "infer_buffers");
    st = read_steps(ctx, L, lua_gettop(L) - 1, lua_gettop(L), plan, &plan->infer);
    lua_pop(L, 2);
    if (st != PP_OK) return st;
    plan->x_buffer = find_buffer(&plan->train, "x");
    plan->labels_buffer = find_buffer(&plan->train, "labels");
    plan->loss_buffer = find_buffer(&plan->train, "loss");
    plan->logits_buffer = find_buffer(&plan->infer, logits);

    lua_getfield(L, p, "report");
    int r = lua_gettop(L);
    plan->weights = get_size(L, r, "weights");
    plan->gradients = get_size(L, r, "gradients");
    plan->optimizer = get_size(L, r, "optimizer");
    plan->state_bytes = get_size(L, r, "state");
    plan->saved = get_size(L, r, "saved");
    plan->largest_transient = get_size(L, r, "largest_transient");
    plan->live_peak = get_size(L, r, "live_peak");
    lua_getfield(L, r, "saved_by_stage");
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
    size_t plen = strlen(policy);
    int policy_file = plen > 4 && strcmp(policy + plen - 4, ".lua") == 0;
    pp_status st = PP_OK;
    if (policy_file) st = file_read_all(ctx, policy, &policy_text, &policy_len);
    lua_State *L = NULL;
    if (st == PP_OK) st = open_state(ctx, &L);
    if (st == PP_OK) st = push_api(ctx, L, function);
    if (st == PP_OK) {
        lua_pushlstring(L, text, len);
        lua_pushstring(L, name);
        lua_createtable(L, 0, 6);
        const struct { const char *key; int value; } fields[] = {
            {"batch", req->batch}, {"height", req->height}, {"width", req->width}, {"classes", req->classes}};
        for (size_t i = 0; i < 4; i++) {
            lua_pushinteger(L, fields[i].value);
            lua_setfield(L, -2, fields[i].key);
        }
        lua_pushboolean(L, req->sources);
        lua_setfield(L, -2, "sources");
        lua_createtable(L, 0, req->tuned_count);
        for (int i = 0; i < req->tuned_count; i++) {
            lua_pushinteger(L, req->tuned_variants[i]);
            lua_setfield(L, -2, req->tuned_keys[i]);
        }
        lua_setfield(L, -2, "tuned");
        lua_createtable(L, 0, 2);
        if (policy_file) {
            lua_pushlstring(L, policy_text, policy_len);
            lua_setfield(L, -2, "file_text");
            lua_pushstring(L, policy);
            lua_setfield(L, -2, "file_name");
        } else {
            lua_pushstring(L, policy);
            lua_setfield(L, -2, "text");
        }
        st = call_api(ctx, L, 4);
    }
    free(text);
    free(policy_text);
    if (st != PP_OK) {
        if (L) lua_close(L);
        return st;
    }
    *out = L;
    return PP_OK;
}

pp_status gen_train_plan(pp_context *ctx, const gen_plan_request *req, gen_plan *out)
{
    memset(out, 0, sizeof *out);
    lua_State *L = NULL;
    pp_status st = call_model_api(ctx, req, "train_plan", &L);
    if (st == PP_OK) st = read_plan(ctx, L, out);
    if (st == PP_OK) st = planner_place(ctx, &out->train);
    if (st == PP_OK) st = planner_place(ctx, &out->infer);
    if (L) lua_close(L);
    if (st != PP_OK) gen_plan_free(out);
    return st;
}

pp_status gen_training_bundle(pp_context *ctx, const gen_plan_request *req, gen_bundle *out)
{
    memset(out, 0, sizeof *out);
    lua_State *L = NULL;
    PP_TRY(call_model_api(ctx, req, "training_bundle", &L));
    int r = lua_gettop(L);
    out->kernels = get_int(L, r, "kernels");
    out->launches = get_int(L, r, "launches");
    out->batch = get_int(L, r, "batch");
    out->height = get_int(L, r, "height");
    out->width = get_int(L, r, "width");
    out->classes = get_int(L, r, "classes");
    copy_field(L, r, "math", out->math, sizeof out->math);
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
        bf->path = get_string(L, f, "path");
        lua_getfield(L, f, "text");
        size_t len = 0;
        const char *text = lua_tolstring(L, -1, &len);
        bf->text = text ? malloc(len + 1) : NULL;
        if (bf->text) memcpy(bf->text, text, len + 1), bf->len = len;
        lua_pop(L, 2);
        if (!bf->path || !bf->text) st = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    }
    lua_close(L);
    if (st != PP_OK) gen_bundle_free(out);
    return st;
}

void gen_bundle_free(gen_bundle *b)
{
    if (!b) return;
    for (int i = 0; i < b->file_count; i++) free(b->files[i].path), free(b->files[i].text);
    free(b->files);
    memset(b, 0, sizeof *b);
}

pp_status gen_tuning_targets(pp_context *ctx, const gen_plan_request *req, gen_tuning *out)
{
    memset(out, 0, sizeof *out);
    lua_State *L = NULL;
    PP_TRY(call_model_api(ctx, req, "tuning_targets", &L));
    int r = lua_gettop(L);
    copy_field(L, r, "math", out->math, sizeof out->math);
    copy_field(L, r, "version", out->version, sizeof out->version);
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
        copy_field(L, e, "key", t->key, sizeof t->key);
        copy_field(L, e, "op", t->op, sizeof t->op);
        copy_field(L, e, "name", t->name, sizeof t->name);
        t->count = get_int(L, e, "count");
        lua_getfield(L, e, "layer");
        int d = lua_gettop(L);
        pp_layer_desc_init(&t->desc);
        t->desc.n = get_int(L, d, "N"), t->desc.c = get_int(L, d, "C"), t->desc.h = get_int(L, d, "H");
        t->desc.w = get_int(L, d, "W"), t->desc.k = get_int(L, d, "K"), t->desc.r = get_int(L, d, "R");
        t->desc.s = get_int(L, d, "S"), t->desc.stride = get_int(L, d, "stride"), t->desc.pad = get_int(L, d, "pad");
        t->desc.pool = get_int(L, d, "pool");
        char mode[8];
        copy_field(L, d, "pool_mode", mode, sizeof mode);
        t->desc.pool_mode = strcmp(mode, "max") == 0 ? PP_POOL_MAX : PP_POOL_AVG;
        copy_field(L, d, "storage", mode, sizeof mode);
        t->desc.storage = strcmp(mode, "bf16") == 0 ? PP_STORAGE_BF16 : PP_STORAGE_F32;
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
    lua_close(L);
    if (st != PP_OK) gen_tuning_free(out);
    return st;
}

void gen_tuning_free(gen_tuning *t)
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
    for (int i = 0; i < plan->kernel_count; i++) gen_kernel_free(&plan->kernels[i]);
    free(plan->kernels);
    free(plan->params);
    free(plan->state);
    free(plan->layers);
    free(plan->tensor_elems);
    memset(plan, 0, sizeof *plan);
}
