/* layer.c - one convolution layer end to end: generate its kernels (embedded Lua), compile
 * them on the context's backend, read their static resource use from NVRTC's ptxas
 * report, and run forward + pool-save, input gradient and weight gradient on host arrays.
 * Invariant: a pp_layer holds one loaded function per generated kernel, in launch order.
 * Host arrays are float32 NCHW; device buffers are channels last, float32 or (a layer's
 * bf16 storage, gen_buffer.elem_bytes == 2) bf16 bits, converted on the way. */
#include "layer.h"
#include "bundle_dir.h"
#include "layout.h"
#include "gen_layer.h"
#include "nvrtc_compile.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

struct pp_layer {
    pp_context *ctx;
    pp_layer_desc desc;
    gen_layer gen;
    pp_module **modules;     /* one per kernel */
    pp_function **functions; /* one per kernel */
    pp_kernel_info *info;    /* one per kernel */
    unsigned char *checked;  /* per kernel: info holds its static check */
};

void pp_layer_desc_init(pp_layer_desc *desc)
{
    if (!desc) return;
    memset(desc, 0, sizeof *desc);
    desc->stride = 1;
    desc->pool = 1;
    desc->pool_mode = PP_POOL_AVG;
    desc->storage = PP_STORAGE_F32;
}

static pp_status usable(pp_context *ctx)
{
    if (!ctx) return PP_ERR_INVALID_ARGUMENT;
    if (!ctx->ops)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                        "the context has no backend (PP_BACKEND_NONE, or its creation failed)");
    ctx_clear_error(ctx);
    return PP_OK;
}

pp_status pp_layer_variant_count(pp_context *ctx, const char *op, int *out)
{
    PP_TRY(usable(ctx));
    if (!op || !out) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "pp_layer_variant_count: NULL argument");
    return gen_layer_variant_count(ctx, op, out);
}

pp_status pp_layer_variant_info(pp_context *ctx, const char *op, int index, pp_variant_info *out)
{
    if (!ctx) return PP_ERR_INVALID_ARGUMENT;
    if (!op || !out) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "pp_layer_variant_info: NULL argument");
    return gen_layer_variant_info(ctx, op, index, out);
}

/* Compiles one kernel with NVRTC for the static check (registers, spills, shared memory)
 * and copies the report into info. */
static pp_status static_check(pp_context *ctx, const gen_kernel *k, pp_kernel_info *info)
{
    pp_nvrtc_output out;
    char source_name[300];
    snprintf(source_name, sizeof source_name, "%s.cu", k->name);
    PP_TRY(nvrtc_compile(ctx, k->source, source_name, ctx->arch ? ctx->arch : 90, &out));
    for (int i = 0; i < out.kernel_count; i++) {
        if (strcmp(out.kernels[i].name, k->name) != 0) continue;
        info->registers = out.kernels[i].info.registers;
        info->spill_store_bytes = out.kernels[i].info.spill_store_bytes;
        info->spill_load_bytes = out.kernels[i].info.spill_load_bytes;
        info->shared_bytes = out.kernels[i].info.shared_bytes;
        info->stack_bytes = out.kernels[i].info.stack_bytes;
    }
    info->nvrtc_ms = out.compile_ms;
    nvrtc_output_free(&out);
    return PP_OK;
}

pp_status pp_layer_create(pp_context *ctx, const pp_layer_desc *desc, pp_layer **out)
{
    PP_TRY(usable(ctx));
    if (!desc || !out) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "pp_layer_create: NULL argument");
    *out = NULL;
    if (desc->storage != PP_STORAGE_F32 && desc->storage != PP_STORAGE_BF16)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                        "pp_layer_create: storage %d is neither PP_STORAGE_F32 nor PP_STORAGE_BF16",
                        (int)desc->storage);
    pp_layer *layer = calloc(1, sizeof *layer);
    if (!layer) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    layer->ctx = ctx;
    layer->desc = *desc;
    layer->desc.name = NULL; /* the caller's string need not outlive this call */
    pp_status st = gen_layer_from_desc(ctx, desc, &layer->gen);
    if (st != PP_OK) {
        free(layer);
        return st;
    }
    int n = layer->gen.kernel_count;
    layer->modules = calloc((size_t)n, sizeof *layer->modules);
    layer->functions = calloc((size_t)n, sizeof *layer->functions);
    layer->info = calloc((size_t)n, sizeof *layer->info);
    layer->checked = calloc((size_t)n + 1, 1);
    if (!layer->modules || !layer->functions || !layer->info || !layer->checked) {
        pp_layer_destroy(layer);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (int i = 0; i < n && st == PP_OK; i++) {
        const gen_kernel *k = &layer->gen.kernels[i];
        pp_kernel_info *info = &layer->info[i];
        info->name = k->name;
        info->op = k->op;
        info->math = k->math;
        memcpy(info->grid, k->grid, sizeof info->grid);
        memcpy(info->block, k->block, sizeof info->block);
        info->registers = info->spill_store_bytes = info->spill_load_bytes = -1;
        info->shared_bytes = info->stack_bytes = -1;
        char source_name[300];
        snprintf(source_name, sizeof source_name, "%s.cu", k->name);
        const char *names[1] = {k->name};
        pp_compile_request req = {k->source, source_name, names, 1};
        pp_compile_result res = {0, 0};
        st = ctx->ops->compile(ctx, &req, &layer->modules[i], &res);
        if (st == PP_OK)
            st = ctx->ops->get_function(ctx, layer->modules[i], k->name, k->dynamic_shared, &layer->functions[i]);
        info->compile_ms = res.compile_ms;
        info->cache_hit = res.cache_hit;
        /* The static check waits for pp_layer_kernel_check (poolprop.h says why). */
    }
    if (st != PP_OK) {
        pp_layer_destroy(layer);
        return st;
    }
    *out = layer;
    return PP_OK;
}

pp_status pp_layer_shape_get(const pp_layer *layer, pp_layer_shape *out)
{
    if (!layer || !out) return PP_ERR_INVALID_ARGUMENT;
    const pp_layer_desc *d = &layer->desc;
    out->p = layer->gen.p;
    out->q = layer->gen.q;
    out->hp = layer->gen.hp;
    out->wp = layer->gen.wp;
    out->x_elems = (size_t)d->n * d->c * d->h * d->w;
    out->w_elems = (size_t)d->k * d->c * d->r * d->s;
    out->y_elems = (size_t)d->n * d->k * out->p * out->q;
    out->xp_elems = (size_t)d->n * d->c * out->hp * out->wp;
    return PP_OK;
}

pp_status pp_layer_kernel_count(const pp_layer *layer, int *out)
{
    if (!layer || !out) return PP_ERR_INVALID_ARGUMENT;
    *out = layer->gen.kernel_count;
    return PP_OK;
}

pp_status pp_layer_kernel_info_get(const pp_layer *layer, int index, pp_kernel_info *out)
{
    if (!layer || !out) return PP_ERR_INVALID_ARGUMENT;
    if (index < 0 || index >= layer->gen.kernel_count)
        return ctx_fail(layer->ctx, PP_ERR_INVALID_ARGUMENT, "kernel index %d out of range 0..%d", index,
                        layer->gen.kernel_count - 1);
    *out = layer->info[index];
    return PP_OK;
}

pp_status pp_layer_kernel_check(pp_layer *layer, int index, pp_kernel_info *out)
{
    PP_TRY(pp_layer_kernel_info_get(layer, index, out));
    if (!layer->checked[index]) {
        PP_TRY(static_check(layer->ctx, &layer->gen.kernels[index], &layer->info[index]));
        layer->checked[index] = 1;
    }
    *out = layer->info[index];
    return PP_OK;
}

static int buffer_index(const gen_layer *g, const char *name)
{
    for (int i = 0; i < g->buffer_count; i++)
        if (strcmp(g->buffers[i].name, name) == 0) return i;
    return -1;
}

/* Whether kernel k belongs to op (conv_bwd_weight includes its split-K reduction). */
static int kernel_of_op(const gen_layer *g, int k, const char *op)
{
    if (!op || strcmp(g->kernels[k].op, op) == 0) return 1;
    return strcmp(op, "conv_bwd_weight") == 0 && strcmp(g->kernels[k].op, "splitk_reduce") == 0;
}

/* Points kernel k's parameters at dev (the device address of each of the layer's
 * buffers, by index; 0 for "null"): args[a] = &values[a]. */
static pp_status bind_args(pp_layer *layer, int k, const pp_devptr *dev, pp_devptr values[GEN_MAX_ARGS],
                           void *args[GEN_MAX_ARGS])
{
    const gen_kernel *kern = &layer->gen.kernels[k];
    for (int a = 0; a < kern->arg_count; a++) {
        int b = buffer_index(&layer->gen, kern->args[a]);
        if (b < 0 && strcmp(kern->args[a], "null") != 0)
            return ctx_fail(layer->ctx, PP_ERR_INTERNAL, "kernel %s: unknown buffer '%s'", kern->name, kern->args[a]);
        values[a] = b < 0 ? 0 : dev[b];
        args[a] = &values[a];
    }
    return PP_OK;
}

/* Launches the kernels of op (NULL: all) in launch order on stream. */
static pp_status launch_kernels(pp_layer *layer, const char *op, const pp_devptr *dev, void *stream)
{
    pp_context *ctx = layer->ctx;
    for (int i = 0; i < layer->gen.kernel_count; i++) {
        if (!kernel_of_op(&layer->gen, i, op)) continue;
        const gen_kernel *k = &layer->gen.kernels[i];
        pp_devptr values[GEN_MAX_ARGS] = {0};
        void *args[GEN_MAX_ARGS];
        pp_status st = bind_args(layer, i, dev, values, args);
        if (st == PP_OK) st = ctx->ops->launch(ctx, layer->functions[i], k->grid, k->block, args, stream);
        if (st != PP_OK) return ctx_wrap(ctx, st, "kernel %s", k->name);
    }
    return PP_OK;
}

/* Runs the kernels of op (NULL: all, in launch order) on host arrays: uploads the named
 * inputs that are non-NULL and exist in the layer, downloads the named outputs that are
 * non-NULL. Host arrays are NCHW / KCRS; the device buffers channels last (layout.h). */
typedef struct named_array {
    const char *name;
    float *data;
} named_array;

/* The user-facing 4-D shape of a layer buffer (x, dx: N,C,H,W; y, dy: N,K,P,Q; xp:
 * N,C,HP,WP; w, dw: K,C,R,S); 0 for internal buffers. */
static int buffer_dims(const pp_layer *layer, const char *name, size_t dims[4])
{
    const pp_layer_desc *d = &layer->desc;
    const gen_layer *g = &layer->gen;
    size_t n = (size_t)d->n;
    if (strcmp(name, "x") == 0 || strcmp(name, "dx") == 0) {
        dims[0] = n, dims[1] = (size_t)d->c, dims[2] = (size_t)d->h, dims[3] = (size_t)d->w;
    } else if (strcmp(name, "y") == 0 || strcmp(name, "dy") == 0) {
        dims[0] = n, dims[1] = (size_t)d->k, dims[2] = (size_t)g->p, dims[3] = (size_t)g->q;
    } else if (strcmp(name, "xp") == 0) {
        dims[0] = n, dims[1] = (size_t)d->c, dims[2] = (size_t)g->hp, dims[3] = (size_t)g->wp;
    } else if (strcmp(name, "w") == 0 || strcmp(name, "dw") == 0) {
        dims[0] = (size_t)d->k, dims[1] = (size_t)d->c, dims[2] = (size_t)d->r, dims[3] = (size_t)d->s;
    } else {
        return 0;
    }
    return 1;
}

/* Bytes of a layer buffer on the device. */
static size_t buffer_bytes(const gen_buffer *b) { return b->elems * (size_t)b->elem_bytes; }

static pp_status run_kernels(pp_layer *layer, const char *op, const named_array *inputs, int n_inputs,
                             const named_array *outputs, int n_outputs)
{
    pp_context *ctx = layer->ctx;
    const gen_layer *g = &layer->gen;
    pp_devptr *dev = calloc((size_t)g->buffer_count, sizeof *dev);
    if (!dev) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    pp_status st = PP_OK;
    for (int i = 0; i < g->buffer_count && st == PP_OK; i++)
        st = device_alloc(ctx, buffer_bytes(&g->buffers[i]), &dev[i]);
    size_t largest = 0;
    for (int i = 0; i < g->buffer_count; i++)
        if (g->buffers[i].elems > largest) largest = g->buffers[i].elems;
    /* A buffer's device image on the host: channels last, and (bf16 storage) its bits. */
    float *device_copy = st == PP_OK ? malloc((largest + 1) * sizeof *device_copy) : NULL;
    uint16_t *bits = st == PP_OK ? malloc((largest + 1) * sizeof *bits) : NULL;
    if (st == PP_OK && (!device_copy || !bits)) st = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < n_inputs && st == PP_OK; i++) {
        int b = buffer_index(g, inputs[i].name);
        size_t dims[4];
        if (b < 0 || !inputs[i].data) continue;
        const gen_buffer *buf = &g->buffers[b];
        if (buffer_dims(layer, inputs[i].name, dims))
            layout_to_channels_last(inputs[i].data, device_copy, dims[0], dims[1], dims[2], dims[3]);
        else
            memcpy(device_copy, inputs[i].data, buf->elems * sizeof(float));
        if (buf->elem_bytes == 2) layout_to_bf16(device_copy, bits, buf->elems);
        st = ctx->ops->upload(ctx, dev[b], buf->elem_bytes == 2 ? (const void *)bits : (const void *)device_copy,
                              buffer_bytes(buf));
    }
    if (st == PP_OK) st = launch_kernels(layer, op, dev, NULL);
    if (st == PP_OK) st = ctx->ops->synchronize(ctx);
    for (int i = 0; i < n_outputs && st == PP_OK; i++) {
        int b = buffer_index(g, outputs[i].name);
        size_t dims[4];
        if (b < 0 || !outputs[i].data) continue;
        const gen_buffer *buf = &g->buffers[b];
        st = ctx->ops->download(ctx, buf->elem_bytes == 2 ? (void *)bits : (void *)device_copy, dev[b],
                                buffer_bytes(buf));
        if (st != PP_OK) break;
        if (buf->elem_bytes == 2) layout_from_bf16(bits, device_copy, buf->elems);
        if (buffer_dims(layer, outputs[i].name, dims))
            layout_from_channels_last(device_copy, outputs[i].data, dims[0], dims[1], dims[2], dims[3]);
        else
            memcpy(outputs[i].data, device_copy, buf->elems * sizeof(float));
    }
    free(device_copy);
    free(bits);
    for (int i = 0; i < g->buffer_count; i++) device_free(ctx, dev[i], buffer_bytes(&g->buffers[i]));
    free(dev);
    return st;
}

pp_status pp_layer_run(pp_layer *layer, const float *x, const float *w, const float *dy, float *y, float *xp, float *dx,
                       float *dw)
{
    if (!layer) return PP_ERR_INVALID_ARGUMENT;
    pp_context *ctx = layer->ctx;
    PP_TRY(usable(ctx));
    if (!x || !w || !dy || !y || !xp || !dx || !dw)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "pp_layer_run: NULL array");
    const named_array inputs[] = {{"x", (float *)x}, {"w", (float *)w}, {"dy", (float *)dy}};
    const named_array outputs[] = {{"y", y}, {"dx", dx}, {"dw", dw}, {layer->desc.pool > 1 ? "xp" : "x", xp}};
    return run_kernels(layer, NULL, inputs, 3, outputs, 4);
}

pp_status layer_run_op(pp_layer *layer, const char *op, const float *x, const float *w, const float *dy,
                       const float *saved, float *y, float *xp, float *dx, float *dw)
{
    if (!layer || !op) return PP_ERR_INVALID_ARGUMENT;
    pp_context *ctx = layer->ctx;
    PP_TRY(usable(ctx));
    const int pooled = layer->desc.pool > 1;
    const named_array inputs[] = {
        {"x", (float *)x}, {"w", (float *)w}, {"dy", (float *)dy}, {"xp", pooled ? (float *)saved : NULL}};
    if (strcmp(op, "conv_fwd") == 0) {
        const named_array outputs[] = {{"y", y}, {pooled ? "xp" : "x", xp}};
        return run_kernels(layer, op, inputs, 2, outputs, 2);
    }
    if (strcmp(op, "conv_bwd_data") == 0) {
        const named_array outputs[] = {{"dx", dx}};
        return run_kernels(layer, op, inputs, 3, outputs, 1);
    }
    if (strcmp(op, "conv_bwd_weight") == 0) {
        const named_array outputs[] = {{"dw", dw}};
        return run_kernels(layer, op, inputs, 4, outputs, 1);
    }
    return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "layer_run_op: unknown op '%s'", op);
}

/* Whether a layer buffer is scratch (in the caller's workspace) rather than a tensor the
 * caller passes. */
static int is_workspace_buffer(const char *name)
{
    static const char *const tensors[] = {"x", "w", "y", "xp", "dy", "dx", "dw"};
    for (size_t i = 0; i < sizeof tensors / sizeof *tensors; i++)
        if (strcmp(name, tensors[i]) == 0) return 0;
    return 1;
}

enum {
    workspace_alignment = 256
};

pp_status pp_layer_workspace_size(const pp_layer *layer, size_t *bytes)
{
    if (!layer || !bytes) return PP_ERR_INVALID_ARGUMENT;
    size_t total = 0;
    for (int i = 0; i < layer->gen.buffer_count; i++) {
        const gen_buffer *b = &layer->gen.buffers[i];
        if (is_workspace_buffer(b->name))
            total += (buffer_bytes(b) + workspace_alignment - 1) / workspace_alignment * workspace_alignment;
    }
    *bytes = total;
    return PP_OK;
}

/* The caller's tensors by name, for launch_on_caller_memory. */
typedef struct caller_tensor {
    const char *name;
    const void *data;
} caller_tensor;

/* Launches op's kernels on the caller's tensors and workspace: every buffer a kernel of
 * op reads or writes must be given (or lie in the workspace). */
static pp_status launch_on_caller_memory(pp_layer *layer, const char *call, const char *op,
                                         const caller_tensor *tensors, int count, void *workspace, void *stream)
{
    pp_context *ctx = layer->ctx;
    const gen_layer *g = &layer->gen;
    pp_devptr dev[64] = {0};
    if (g->buffer_count > 64) return ctx_fail(ctx, PP_ERR_INTERNAL, "%s: %d layer buffers", call, g->buffer_count);
    size_t offset = 0, workspace_bytes = 0;
    pp_layer_workspace_size(layer, &workspace_bytes);
    for (int i = 0; i < g->buffer_count; i++) {
        const gen_buffer *b = &g->buffers[i];
        if (is_workspace_buffer(b->name)) {
            if (workspace) dev[i] = (pp_devptr)(uintptr_t)workspace + offset;
            offset += (buffer_bytes(b) + workspace_alignment - 1) / workspace_alignment * workspace_alignment;
            continue;
        }
        for (int t = 0; t < count; t++)
            if (strcmp(tensors[t].name, b->name) == 0) dev[i] = (pp_devptr)(uintptr_t)tensors[t].data;
    }
    for (int k = 0; k < g->kernel_count; k++) {
        if (!kernel_of_op(g, k, op)) continue;
        for (int a = 0; a < g->kernels[k].arg_count; a++) {
            int b = buffer_index(g, g->kernels[k].args[a]);
            if (b < 0 || dev[b]) continue;
            if (is_workspace_buffer(g->buffers[b].name))
                return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                                "%s: layer %s needs a workspace of %zu bytes (pp_layer_workspace_size); it is NULL",
                                call, g->signature, workspace_bytes);
            return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "%s: layer %s: tensor %s is NULL", call, g->signature,
                            g->buffers[b].name);
        }
    }
    return launch_kernels(layer, op, dev, stream);
}

pp_status pp_layer_forward(pp_layer *layer, const void *x, const void *w, void *y, void *xp, void *workspace,
                           void *stream)
{
    if (!layer) return PP_ERR_INVALID_ARGUMENT;
    PP_TRY(usable(layer->ctx));
    if (layer->desc.pool == 1 && xp)
        return ctx_fail(layer->ctx, PP_ERR_INVALID_ARGUMENT,
                        "pp_layer_forward: layer %s does not pool (pool 1): x itself is saved; pass xp NULL",
                        layer->gen.signature);
    const caller_tensor tensors[] = {{"x", x}, {"w", w}, {"y", y}, {"xp", xp}};
    return launch_on_caller_memory(layer, "pp_layer_forward", "conv_fwd", tensors, 4, workspace, stream);
}

pp_status pp_layer_backward_data(pp_layer *layer, const void *dy, const void *w, void *dx, void *workspace,
                                 void *stream)
{
    if (!layer) return PP_ERR_INVALID_ARGUMENT;
    PP_TRY(usable(layer->ctx));
    const caller_tensor tensors[] = {{"dy", dy}, {"w", w}, {"dx", dx}};
    return launch_on_caller_memory(layer, "pp_layer_backward_data", "conv_bwd_data", tensors, 3, workspace, stream);
}

pp_status pp_layer_backward_weight(pp_layer *layer, const void *saved, const void *dy, void *dw, void *workspace,
                                   void *stream)
{
    if (!layer) return PP_ERR_INVALID_ARGUMENT;
    PP_TRY(usable(layer->ctx));
    const caller_tensor tensors[] = {{layer->desc.pool > 1 ? "xp" : "x", saved}, {"dy", dy}, {"dw", dw}};
    return launch_on_caller_memory(layer, "pp_layer_backward_weight", "conv_bwd_weight", tensors, 3, workspace, stream);
}

void pp_layer_destroy(pp_layer *layer)
{
    if (!layer) return;
    pp_context *ctx = layer->ctx;
    for (int i = 0; layer->modules && i < layer->gen.kernel_count; i++)
        if (layer->modules[i]) ctx->ops->module_destroy(ctx, layer->modules[i]);
    free(layer->modules);
    free(layer->functions);
    free(layer->info);
    free(layer->checked);
    gen_layer_free(&layer->gen);
    free(layer);
}

pp_status pp_layer_file_load(pp_context *ctx, const char *path, pp_layer_desc **descs, int *count)
{
    if (!ctx || !descs || !count) return PP_ERR_INVALID_ARGUMENT;
    ctx_clear_error(ctx);
    return gen_layer_load_descs(ctx, path, descs, count);
}

void pp_layer_descs_free(pp_layer_desc *descs, int count)
{
    if (!descs) return;
    for (int i = 0; i < count; i++) free((char *)descs[i].name);
    free(descs);
}

pp_status pp_bundle_write(pp_context *ctx, const char *path, const char *out_dir)
{
    if (!ctx || !out_dir) return PP_ERR_INVALID_ARGUMENT;
    ctx_clear_error(ctx);
    /* Generated and written into a staging folder that replaces out_dir only when complete. */
    char staging[4400];
    PP_TRY(bundle_dir_stage(ctx, out_dir, staging, sizeof staging));
    int files = 0;
    pp_status st = gen_layer_write_bundle(ctx, path, staging, &files);
    if (st != PP_OK) {
        bundle_dir_discard(staging);
        return st == PP_ERR_IO ? ctx_wrap(ctx, st, "cannot write the bundle %s (nothing was changed there)", out_dir)
                               : st;
    }
    return bundle_dir_commit(ctx, out_dir, staging);
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

pp_status layer_benchmark_kernels(pp_layer *layer, const char *op, int warmup, int repeats, double *ms)
{
    if (!layer || !ms || warmup < 0 || repeats < 1) return PP_ERR_INVALID_ARGUMENT;
    pp_context *ctx = layer->ctx;
    PP_TRY(usable(ctx));
    const gen_layer *g = &layer->gen;
    if (g->kernel_count > 8) return ctx_fail(ctx, PP_ERR_INTERNAL, "layer has %d kernels", g->kernel_count);
    pp_devptr *dev = calloc((size_t)g->buffer_count, sizeof *dev);
    double *times = calloc((size_t)repeats, sizeof *times);
    if (!dev || !times) {
        free(dev), free(times);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    }
    pp_status st = PP_OK;
    for (int i = 0; i < g->buffer_count && st == PP_OK; i++) {
        size_t bytes = buffer_bytes(&g->buffers[i]);
        st = device_alloc(ctx, bytes, &dev[i]);
        /* Inputs: any finite values time the same; zero is the cheapest to produce. */
        if (st == PP_OK) st = ctx->ops->memset_zero(ctx, dev[i], bytes);
    }
    for (int k = 0; k < g->kernel_count && st == PP_OK; k++) {
        ms[k] = 0;
        if (!kernel_of_op(g, k, op)) continue;
        const gen_kernel *kern = &g->kernels[k];
        pp_devptr values[GEN_MAX_ARGS] = {0};
        void *args[GEN_MAX_ARGS];
        st = bind_args(layer, k, dev, values, args);
        for (int r = 0; r < warmup + repeats && st == PP_OK; r++) {
            double t = 0;
            st = ctx->ops->time_launch(ctx, layer->functions[k], kern->grid, kern->block, args, &t);
            if (r >= warmup) times[r - warmup] = t;
        }
        qsort(times, (size_t)repeats, sizeof *times, by_value);
        ms[k] = times[repeats / 2];
    }
    for (int i = 0; i < g->buffer_count; i++) device_free(ctx, dev[i], buffer_bytes(&g->buffers[i]));
    free(dev), free(times);
    return st;
}

pp_status pp_layer_benchmark(pp_layer *layer, int warmup, int repeats, double *ms)
{
    return layer_benchmark_kernels(layer, NULL, warmup, repeats, ms);
}
