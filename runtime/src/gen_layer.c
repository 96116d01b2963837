/* gen_layer.c - one layer from the generator: its kernels (sources, launch geometry,
 * argument names) and buffers as C structures, single op kernels and the variant spaces,
 * and layer description files (load_layers, write_bundle). A pp_layer_desc is pushed to
 * Lua by push_desc and read back by gen_layer_read_desc, nowhere else. */
#include "gen_layer.h"

#include "embedded.h"
#include "gen_lua.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_LAYERS "models/layers_default.lua"

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

int gen_layer_read_kernel(lua_State *L, int t, gen_kernel *k)
{
    t = lua_absindex(L, t);
    k->name = gen_lua_string(L, t, "name");
    k->op = gen_lua_string(L, t, "op");
    k->source = gen_lua_string(L, t, "source");
    k->variant = gen_lua_int(L, t, "variant");
    lua_getfield(L, t, "math");
    snprintf(k->math, sizeof k->math, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "fp32");
    lua_pop(L, 1);
    get_dim3(L, t, "grid", k->grid);
    get_dim3(L, t, "block", k->block);
    k->dynamic_shared = gen_lua_int(L, t, "dynamic_shared");
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

void gen_layer_kernel_free(gen_kernel *k)
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
    out->p = gen_lua_int(L, sh, "P");
    out->q = gen_lua_int(L, sh, "Q");
    out->hp = gen_lua_int(L, sh, "HP");
    out->wp = gen_lua_int(L, sh, "WP");
    lua_pop(L, 1);
    char *sig = gen_lua_string(L, idx, "signature");
    snprintf(out->signature, sizeof out->signature, "%s", sig ? sig : "");
    free(sig);

    lua_getfield(L, idx, "buffers");
    int bt = lua_gettop(L);
    out->buffer_count = (int)luaL_len(L, bt);
    out->buffers = calloc((size_t)out->buffer_count, sizeof *out->buffers);
    for (int i = 0; out->buffers && i < out->buffer_count; i++) {
        lua_rawgeti(L, bt, i + 1);
        char *name = gen_lua_string(L, lua_gettop(L), "name");
        snprintf(out->buffers[i].name, sizeof out->buffers[i].name, "%s", name ? name : "");
        free(name);
        lua_getfield(L, -1, "elems");
        out->buffers[i].elems = (size_t)lua_tointeger(L, -1);
        lua_pop(L, 1);
        char *dtype = gen_lua_string(L, lua_gettop(L), "dtype");
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
        int ok = gen_layer_read_kernel(L, -1, &out->kernels[i]);
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
    const struct {
        const char *key;
        int value;
    } ints[] = {
        {"N", d->n}, {"C", d->c}, {"H", d->h},           {"W", d->w},     {"K", d->k},
        {"R", d->r}, {"S", d->s}, {"stride", d->stride}, {"pad", d->pad}, {"pool", d->pool},
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

void gen_layer_read_desc(lua_State *L, int t, pp_layer_desc *d)
{
    t = lua_absindex(L, t);
    pp_layer_desc_init(d);
    int *ints[] = {&d->n, &d->c, &d->h, &d->w, &d->k, &d->r, &d->s, &d->stride, &d->pad, &d->pool};
    const char *keys[] = {"N", "C", "H", "W", "K", "R", "S", "stride", "pad", "pool"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) *ints[i] = gen_lua_int(L, t, keys[i]);
    char mode[8];
    gen_lua_copy_field(L, t, "pool_mode", mode, sizeof mode);
    d->pool_mode = strcmp(mode, "max") == 0 ? PP_POOL_MAX : PP_POOL_AVG;
    gen_lua_copy_field(L, t, "storage", mode, sizeof mode);
    d->storage = strcmp(mode, "bf16") == 0 ? PP_STORAGE_BF16 : PP_STORAGE_F32;
    lua_getfield(L, t, "variant");
    if (lua_istable(L, -1)) {
        int vt = lua_gettop(L);
        d->variant_fwd = gen_lua_int(L, vt, "conv_fwd");
        d->variant_bwd_data = gen_lua_int(L, vt, "conv_bwd_data");
        d->variant_bwd_weight = gen_lua_int(L, vt, "conv_bwd_weight");
    }
    lua_pop(L, 1);
}

pp_status gen_layer_from_desc(pp_context *ctx, const pp_layer_desc *desc, gen_layer *out)
{
    lua_State *L;
    PP_TRY(gen_lua_open(ctx, NULL, 0, &L));
    pp_status st = gen_lua_push_api(ctx, L, "layer");
    if (st == PP_OK) {
        push_desc(L, desc);
        st = gen_lua_call_api(ctx, L, 1);
    }
    if (st == PP_OK) st = read_layer(ctx, L, -1, out);
    gen_lua_close(L);
    return st;
}

pp_status gen_layer_op_kernel(pp_context *ctx, const char *op, const char *params_lua, gen_kernel *out)
{
    memset(out, 0, sizeof *out);
    lua_State *L;
    PP_TRY(gen_lua_open(ctx, NULL, 0, &L));
    pp_status st = gen_lua_push_api(ctx, L, "op_kernel");
    if (st == PP_OK) {
        lua_pushstring(L, op);
        lua_pushstring(L, params_lua);
        st = gen_lua_call_api(ctx, L, 2);
    }
    if (st == PP_OK && !gen_layer_read_kernel(L, -1, out)) {
        gen_layer_kernel_free(out);
        st = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "generator result: out of memory");
    }
    gen_lua_close(L);
    return st;
}

pp_status gen_layer_bn_slices(pp_context *ctx, int m, int c, int *out)
{
    lua_State *L;
    PP_TRY(gen_lua_open(ctx, NULL, 0, &L));
    pp_status st = gen_lua_push_api(ctx, L, "bn_slices");
    if (st == PP_OK) {
        lua_pushinteger(L, m);
        lua_pushinteger(L, c);
        st = gen_lua_call_api(ctx, L, 2);
    }
    if (st == PP_OK) *out = (int)lua_tointeger(L, -1);
    gen_lua_close(L);
    return st;
}

pp_status gen_layer_variant_count(pp_context *ctx, const char *op, int *out)
{
    lua_State *L;
    PP_TRY(gen_lua_open(ctx, NULL, 0, &L));
    pp_status st = gen_lua_push_api(ctx, L, "variant_count");
    if (st == PP_OK) {
        lua_pushstring(L, op);
        st = gen_lua_call_api(ctx, L, 1);
    }
    if (st == PP_OK) *out = (int)lua_tointeger(L, -1);
    gen_lua_close(L);
    return st;
}

pp_status gen_layer_variant_info(pp_context *ctx, const char *op, int index, pp_variant_info *out)
{
    lua_State *L;
    PP_TRY(gen_lua_open(ctx, NULL, 0, &L));
    pp_status st = gen_lua_push_api(ctx, L, "variant_info");
    if (st == PP_OK) {
        lua_pushstring(L, op);
        lua_pushinteger(L, index);
        st = gen_lua_call_api(ctx, L, 2);
    }
    if (st == PP_OK) {
        int t = lua_gettop(L);
        memset(out, 0, sizeof *out);
        out->threads = gen_lua_int(L, t, "threads");
        out->stages = gen_lua_int(L, t, "stages");
        out->shared_bytes = gen_lua_int(L, t, "shared");
        out->shared_bytes_bf16 = gen_lua_int(L, t, "shared_bf16");
        lua_getfield(L, t, "math");
        const char *math = lua_tostring(L, -1);
        out->math = math && strcmp(math, "tf32") == 0 ? "tf32" : math && strcmp(math, "bf16") == 0 ? "bf16" : "fp32";
        lua_pop(L, 1);
        gen_lua_copy_field(L, t, "config", out->config, sizeof out->config);
    }
    gen_lua_close(L);
    return st;
}

/* Reads a description file, or the embedded default when path is NULL. */
static pp_status description_text(pp_context *ctx, const char *path, char **text, size_t *len, const char **chunkname)
{
    if (path) {
        *chunkname = path;
        return gen_lua_read_file(ctx, path, "layer file", text, len);
    }
    const pp_embedded_file *f = embedded_find(DEFAULT_LAYERS);
    if (!f) return ctx_fail(ctx, PP_ERR_INTERNAL, "the embedded default layer set is missing");
    *text = malloc(f->size + 1);
    if (!*text) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    memcpy(*text, f->data, f->size + 1);
    *len = f->size;
    *chunkname = DEFAULT_LAYERS;
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
    const gen_lua_file file = {chunkname, "layer file"};
    lua_State *L = NULL;
    pp_status st = gen_lua_open(ctx, &file, 1, &L);
    if (st == PP_OK) st = gen_lua_push_api(ctx, L, fn);
    if (st == PP_OK) {
        lua_pushlstring(L, text, len);
        lua_pushstring(L, chunkname);
        if (pass_dir) {
            if (out_dir)
                lua_pushstring(L, out_dir);
            else
                lua_pushnil(L);
        }
        st = gen_lua_call_api(ctx, L, pass_dir ? 3 : 2);
    }
    free(text);
    if (st != PP_OK) gen_lua_close(L);
    *out = st == PP_OK ? L : NULL;
    return st;
}

pp_status gen_layer_load_descs(pp_context *ctx, const char *path, pp_layer_desc **descs, int *count)
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
        gen_layer_read_desc(L, t, d);
        d->name = gen_lua_string(L, t, "name");
        lua_pop(L, 1);
    }
    if (list) {
        *descs = list;
        *count = n;
    }
    gen_lua_close(L);
    return st;
}

pp_status gen_layer_write_bundle(pp_context *ctx, const char *path, const char *out_dir, int *files_written)
{
    lua_State *L;
    PP_TRY(call_with_description(ctx, path, "write_bundle", 1, out_dir, &L));
    if (files_written) *files_written = (int)lua_tointeger(L, -1);
    gen_lua_close(L);
    return PP_OK;
}

void gen_layer_free(gen_layer *layer)
{
    if (!layer) return;
    for (int i = 0; layer->kernels && i < layer->kernel_count; i++) gen_layer_kernel_free(&layer->kernels[i]);
    free(layer->kernels);
    free(layer->buffers);
    memset(layer, 0, sizeof *layer);
}
