/* op.c - the element-wise and pooling ops on the caller's memory and stream (poolprop.h,
 * "Element-wise and pooling ops"): pp_op_* and the calls pp_relu_*, pp_maxpool_* and
 * pp_batchnorm_*, which live here too. Each op generates its kernels from
 * generator/poolprop/ops.lua with the op's shape baked in, as a training plan does, then
 * binds the caller's pointers to the kernels' arguments by name and launches on the
 * caller's stream:
 *   ReLU:       relu_mask_fwd | relu_mask_bwd
 *   max pool:   maxpool_fwd | maxpool_bwd (a gather: no atomics, no workspace)
 *   batch norm: bn_stats, bn_apply (SAVE_BF16 for save_bf16) | bn_backward (BF16), or, where
 *               the plan slices (ops.lua bn_slices), bn_stats_part + bn_stats_merge (SHIFT 1),
 *               bn_apply | bn_backward_sums + bn_backward_dx, the partials in the workspace.
 * Invariant: kernels[0 .. forward_count) are the forward call's, in launch order, the rest
 * the backward call's; each holds its loaded function. Nothing is allocated on the device:
 * scratch is the caller's workspace. */
#include "compile.h"
#include "context.h"
#include "gen_layer.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    max_kernels = 5
};

typedef struct op_kernel {
    gen_kernel gen;
    pp_module *module;
    pp_function *function;
} op_kernel;

struct pp_op {
    pp_context *ctx;
    pp_op_desc desc;
    char name[96]; /* for errors: "batchnorm n2c3h4w5" */
    int p, q;      /* output height and width */
    size_t workspace_bytes;
    op_kernel kernels[max_kernels];
    int kernel_count, forward_count;
};

/* A caller's pointer bound to the kernel parameter of that name. */
typedef struct named_ptr {
    const char *name;
    const void *data;
} named_ptr;

static const char *const kind_names[] = {"relu", "maxpool", "batchnorm"};

void pp_op_desc_init(pp_op_desc *desc, pp_op_kind kind)
{
    if (!desc) return;
    memset(desc, 0, sizeof *desc);
    desc->kind = kind;
    desc->eps = 1e-5;
    desc->momentum = 0.1;
}

/* Checks the description; fills op->name, p, q. */
static pp_status check_desc(pp_context *ctx, const pp_op_desc *d, pp_op *op)
{
    if (d->kind != PP_OP_RELU && d->kind != PP_OP_MAXPOOL && d->kind != PP_OP_BATCHNORM)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                        "pp_op_create: kind %d is none of PP_OP_RELU, PP_OP_MAXPOOL, PP_OP_BATCHNORM", (int)d->kind);
    const char *kind = kind_names[d->kind];
    if (d->n < 1 || d->c < 1 || d->h < 1 || d->w < 1)
        return ctx_fail(ctx, PP_ERR_SHAPE, "pp_op_create: %s: shape n %d, c %d, h %d, w %d: each must be positive",
                        kind, d->n, d->c, d->h, d->w);
    long long count = (long long)d->n * d->c;
    count = count > INT_MAX ? count : count * d->h;
    count = count > INT_MAX ? count : count * d->w;
    if (count > INT_MAX)
        return ctx_fail(ctx, PP_ERR_SHAPE,
                        "pp_op_create: %s: n*c*h*w = %d*%d*%d*%d elements, beyond the %d an int indexes", kind, d->n,
                        d->c, d->h, d->w, INT_MAX);
    if (d->save_bf16 && d->kind != PP_OP_BATCHNORM)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "pp_op_create: %s: save_bf16 is a batch-norm option", kind);
    snprintf(op->name, sizeof op->name, "%s n%dc%dh%dw%d", kind, d->n, d->c, d->h, d->w);
    op->p = d->h, op->q = d->w;
    if (d->kind == PP_OP_MAXPOOL) {
        if (d->window < 1 || d->stride < 1 || d->padding < 0)
            return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                            "pp_op_create: %s: window %d, stride %d, padding %d: window and stride must be positive, "
                            "padding non-negative",
                            op->name, d->window, d->stride, d->padding);
        if (d->padding > d->window / 2)
            return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                            "pp_op_create: %s: padding %d exceeds window/2 = %d (as PyTorch requires: every window "
                            "must hold an element of x)",
                            op->name, d->padding, d->window / 2);
        if (d->window * d->window > 256)
            return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                            "pp_op_create: %s: window %d: the 1-byte argmax holds window positions up to 255", op->name,
                            d->window);
        if (d->h + 2 * d->padding < d->window || d->w + 2 * d->padding < d->window)
            return ctx_fail(ctx, PP_ERR_SHAPE, "pp_op_create: %s: the %dx%d window does not fit the padded %dx%d input",
                            op->name, d->window, d->window, d->h + 2 * d->padding, d->w + 2 * d->padding);
        op->p = (d->h + 2 * d->padding - d->window) / d->stride + 1;
        op->q = (d->w + 2 * d->padding - d->window) / d->stride + 1;
        size_t len = strlen(op->name);
        snprintf(op->name + len, sizeof op->name - len, " %dx%d s%d p%d", d->window, d->window, d->stride, d->padding);
    }
    if (d->kind == PP_OP_BATCHNORM && count / d->c < 2)
        return ctx_fail(ctx, PP_ERR_SHAPE,
                        "pp_op_create: %s: batch norm in training needs more than one value per channel (n*h*w = %lld)",
                        op->name, count / d->c);
    return PP_OK;
}

/* Generates one kernel of ops.lua into the next slot. */
static pp_status add_kernel(pp_op *op, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static pp_status add_kernel(pp_op *op, const char *name, const char *fmt, ...)
{
    char params[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(params, sizeof params, fmt, ap);
    va_end(ap);
    if (op->kernel_count >= max_kernels) return ctx_fail(op->ctx, PP_ERR_INTERNAL, "%s: too many kernels", op->name);
    PP_TRY(gen_layer_op_kernel(op->ctx, name, params, &op->kernels[op->kernel_count].gen));
    op->kernel_count++;
    return PP_OK;
}

/* The kernels of the op's two calls (see the file's opening comment). */
static pp_status generate(pp_op *op)
{
    const pp_op_desc *d = &op->desc;
    const int count = d->n * d->c * d->h * d->w, hw = d->h * d->w;
    if (d->kind == PP_OP_RELU) {
        PP_TRY(add_kernel(op, "relu_mask_fwd", "{ COUNT = %d }", count));
        op->forward_count = op->kernel_count;
        return add_kernel(op, "relu_mask_bwd", "{ COUNT = %d }", count);
    }
    if (d->kind == PP_OP_MAXPOOL) {
        const char *fmt = "{ N = %d, C = %d, H = %d, W = %d, R = %d, STRIDE = %d, PAD = %d }";
        PP_TRY(add_kernel(op, "maxpool_fwd", fmt, d->n, d->c, d->h, d->w, d->window, d->stride, d->padding));
        op->forward_count = op->kernel_count;
        return add_kernel(op, "maxpool_bwd", fmt, d->n, d->c, d->h, d->w, d->window, d->stride, d->padding);
    }
    /* Batch norm: momentum and eps are constants of the kernels (%.17g reads back exactly;
     * the generator checks their ranges and rounds them to float as the kernels see them). */
    const int m = d->n * hw, bf16 = d->save_bf16 ? 1 : 0;
    int slices = 1;
    PP_TRY(gen_layer_bn_slices(op->ctx, m, d->c, &slices));
    if (slices == 1) {
        PP_TRY(add_kernel(op, "bn_stats", "{ N = %d, C = %d, HW = %d, MOMENTUM = %.17g, EPS = %.17g }", d->n, d->c, hw,
                          d->momentum, d->eps));
    } else {
        PP_TRY(add_kernel(op, "bn_stats_part", "{ N = %d, C = %d, HW = %d, SLICES = %d }", d->n, d->c, hw, slices));
        PP_TRY(add_kernel(op, "bn_stats_merge",
                          "{ C = %d, PARTS = %d, M = %d, SHIFT = 1, MOMENTUM = %.17g, EPS = %.17g }", d->c, slices, m,
                          d->momentum, d->eps));
        /* The statistics' partials (SLICES*C*3 floats and C shifts) are larger than the
         * backward's (SLICES*C*2): one workspace serves both calls. */
        op->workspace_bytes = ((size_t)slices * (size_t)d->c * 3 + (size_t)d->c) * sizeof(float);
    }
    PP_TRY(add_kernel(op, "bn_apply", "{ N = %d, C = %d, HW = %d, SAVE_BF16 = %d, EPS = %.17g }", d->n, d->c, hw, bf16,
                      d->eps));
    op->forward_count = op->kernel_count;
    if (slices == 1)
        return add_kernel(op, "bn_backward", "{ N = %d, C = %d, HW = %d, BF16 = %d }", d->n, d->c, hw, bf16);
    PP_TRY(add_kernel(op, "bn_backward_sums", "{ N = %d, C = %d, HW = %d, SLICES = %d, BF16 = %d }", d->n, d->c, hw,
                      slices, bf16));
    return add_kernel(op, "bn_backward_dx", "{ N = %d, C = %d, HW = %d, SLICES = %d, BF16 = %d }", d->n, d->c, hw,
                      slices, bf16);
}

/* Compiles the kernels (in parallel into the cache first, as pp_model_create does) and
 * loads their functions. */
static pp_status load(pp_op *op)
{
    pp_context *ctx = op->ctx;
    pp_compile_request reqs[max_kernels];
    char source_names[max_kernels][300];
    for (int i = 0; i < op->kernel_count; i++) {
        snprintf(source_names[i], sizeof source_names[i], "%s.cu", op->kernels[i].gen.name);
        reqs[i] = (pp_compile_request){op->kernels[i].gen.source, source_names[i], NULL, 0};
    }
    compile_prefetch(ctx, reqs, op->kernel_count, 0);
    for (int i = 0; i < op->kernel_count; i++) {
        op_kernel *k = &op->kernels[i];
        const char *names[1] = {k->gen.name};
        pp_compile_request req = {k->gen.source, source_names[i], names, 1};
        pp_compile_result res;
        pp_status st = ctx->ops->compile(ctx, &req, &k->module, &res);
        if (st == PP_OK) st = ctx->ops->get_function(ctx, k->module, k->gen.name, k->gen.dynamic_shared, &k->function);
        if (st != PP_OK) return ctx_wrap(ctx, st, "%s, kernel %s", op->name, k->gen.name);
    }
    return PP_OK;
}

pp_status pp_op_create(pp_context *ctx, const pp_op_desc *desc, pp_op **out)
{
    if (!ctx) return PP_ERR_INVALID_ARGUMENT;
    if (!ctx->ops)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                        "pp_op_create: the context has no backend (PP_BACKEND_NONE, or its creation failed)");
    ctx_clear_error(ctx);
    if (!desc || !out) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "pp_op_create: NULL %s", desc ? "out" : "desc");
    *out = NULL;
    pp_op *op = calloc(1, sizeof *op);
    if (!op) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    op->ctx = ctx;
    op->desc = *desc;
    pp_status st = check_desc(ctx, desc, op);
    if (st == PP_OK) st = generate(op);
    if (st == PP_OK) st = load(op);
    if (st != PP_OK) {
        pp_op_destroy(op);
        return st;
    }
    *out = op;
    return PP_OK;
}

pp_status pp_op_output_size(const pp_op *op, int *height, int *width)
{
    if (!op) return PP_ERR_INVALID_ARGUMENT;
    if (!height || !width)
        return ctx_fail(op->ctx, PP_ERR_INVALID_ARGUMENT, "pp_op_output_size: NULL %s", height ? "width" : "height");
    *height = op->p;
    *width = op->q;
    return PP_OK;
}

pp_status pp_op_workspace_size(const pp_op *op, size_t *bytes)
{
    if (!op) return PP_ERR_INVALID_ARGUMENT;
    if (!bytes) return ctx_fail(op->ctx, PP_ERR_INVALID_ARGUMENT, "pp_op_workspace_size: NULL bytes");
    *bytes = op->workspace_bytes;
    return PP_OK;
}

void pp_op_destroy(pp_op *op)
{
    if (!op) return;
    for (int i = 0; i < op->kernel_count; i++) {
        if (op->kernels[i].module) op->ctx->ops->module_destroy(op->ctx, op->kernels[i].module);
        gen_layer_kernel_free(&op->kernels[i].gen);
    }
    free(op);
}

/* The checks every call starts with: an op of the call's kind on a usable context. */
static pp_status call_begin(pp_op *op, const char *call, pp_op_kind kind)
{
    if (!op) return PP_ERR_INVALID_ARGUMENT;
    pp_context *ctx = op->ctx;
    ctx_clear_error(ctx);
    if (op->desc.kind != kind)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "%s: the op is a %s, not a %s (pp_op_desc.kind)", call, op->name,
                        kind_names[kind]);
    return PP_OK;
}

/* Refuses the first NULL among the named tensors. */
static pp_status require(pp_op *op, const char *call, const named_ptr *tensors, int count)
{
    for (int i = 0; i < count; i++)
        if (!tensors[i].data)
            return ctx_fail(op->ctx, PP_ERR_INVALID_ARGUMENT, "%s: %s: tensor %s is NULL", call, op->name,
                            tensors[i].name);
    return PP_OK;
}

static pp_status require_workspace(pp_op *op, const char *call, const void *workspace)
{
    if (op->workspace_bytes > 0 && !workspace)
        return ctx_fail(op->ctx, PP_ERR_INVALID_ARGUMENT,
                        "%s: %s needs a workspace of %zu bytes (pp_op_workspace_size); it is NULL", call, op->name,
                        op->workspace_bytes);
    return PP_OK;
}

/* Launches kernels [first, last) on stream, each argument the pointer bound to its name
 * (binds; a name not bound is passed as null: an option the kernel does not use). */
static pp_status launch(pp_op *op, int first, int last, const named_ptr *binds, int count, void *stream)
{
    pp_context *ctx = op->ctx;
    for (int i = first; i < last; i++) {
        const op_kernel *k = &op->kernels[i];
        pp_devptr values[GEN_MAX_ARGS] = {0};
        void *args[GEN_MAX_ARGS];
        for (int a = 0; a < k->gen.arg_count; a++) {
            for (int b = 0; b < count; b++)
                if (strcmp(binds[b].name, k->gen.args[a]) == 0) values[a] = (pp_devptr)(uintptr_t)binds[b].data;
            args[a] = &values[a];
        }
        pp_status st = ctx->ops->launch(ctx, k->function, k->gen.grid, k->gen.block, args, stream);
        if (st != PP_OK) return ctx_wrap(ctx, st, "%s, kernel %s", op->name, k->gen.name);
    }
    return PP_OK;
}

#define COUNT_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

pp_status pp_relu_forward(pp_op *op, const void *x, void *y, uint32_t *mask, void *stream)
{
    const char *call = "pp_relu_forward";
    PP_TRY(call_begin(op, call, PP_OP_RELU));
    const named_ptr t[] = {{"x", x}, {"y", y}, {"mask", mask}};
    PP_TRY(require(op, call, t, COUNT_OF(t)));
    return launch(op, 0, op->forward_count, t, COUNT_OF(t), stream);
}

pp_status pp_relu_backward(pp_op *op, const void *dy, const uint32_t *mask, void *dx, void *stream)
{
    const char *call = "pp_relu_backward";
    PP_TRY(call_begin(op, call, PP_OP_RELU));
    const named_ptr t[] = {{"dy", dy}, {"mask", mask}, {"dx", dx}};
    PP_TRY(require(op, call, t, COUNT_OF(t)));
    return launch(op, op->forward_count, op->kernel_count, t, COUNT_OF(t), stream);
}

pp_status pp_maxpool_forward(pp_op *op, const void *x, void *y, uint8_t *argmax, void *stream)
{
    const char *call = "pp_maxpool_forward";
    PP_TRY(call_begin(op, call, PP_OP_MAXPOOL));
    const named_ptr t[] = {{"x", x}, {"y", y}, {"argmax", argmax}};
    PP_TRY(require(op, call, t, COUNT_OF(t)));
    return launch(op, 0, op->forward_count, t, COUNT_OF(t), stream);
}

pp_status pp_maxpool_backward(pp_op *op, const void *dy, const uint8_t *argmax, void *dx, void *workspace, void *stream)
{
    const char *call = "pp_maxpool_backward";
    PP_TRY(call_begin(op, call, PP_OP_MAXPOOL));
    const named_ptr t[] = {{"dy", dy}, {"argmax", argmax}, {"dx", dx}};
    PP_TRY(require(op, call, t, COUNT_OF(t)));
    PP_TRY(require_workspace(op, call, workspace));
    return launch(op, op->forward_count, op->kernel_count, t, COUNT_OF(t), stream);
}

pp_status pp_batchnorm_forward(pp_op *op, const void *x, const float *gamma, const float *beta, float *running_mean,
                               float *running_var, void *y, float *mean, float *invstd, uint16_t *x_bf16,
                               void *workspace, void *stream)
{
    const char *call = "pp_batchnorm_forward";
    PP_TRY(call_begin(op, call, PP_OP_BATCHNORM));
    const named_ptr t[] = {
        {"x", x}, {"gamma", gamma}, {"beta", beta},    {"running_mean", running_mean}, {"running_var", running_var},
        {"y", y}, {"mean", mean},   {"invstd", invstd}};
    PP_TRY(require(op, call, t, COUNT_OF(t)));
    if (op->desc.save_bf16 && !x_bf16)
        return ctx_fail(op->ctx, PP_ERR_INVALID_ARGUMENT, "%s: %s saves its input as bf16 (save_bf16): x_bf16 is NULL",
                        call, op->name);
    if (!op->desc.save_bf16 && x_bf16)
        return ctx_fail(op->ctx, PP_ERR_INVALID_ARGUMENT,
                        "%s: %s does not save bf16 (save_bf16 0): x itself is the save; pass x_bf16 NULL", call,
                        op->name);
    PP_TRY(require_workspace(op, call, workspace));
    /* The kernels' names: y is BN's input, out its output, y_bf16 the input's bf16 copy. */
    const named_ptr binds[] = {{"y", x},
                               {"out", y},
                               {"y_bf16", x_bf16},
                               {"gamma", gamma},
                               {"beta", beta},
                               {"mean", mean},
                               {"invstd", invstd},
                               {"partials", workspace},
                               {"running_mean", running_mean},
                               {"running_var", running_var}};
    return launch(op, 0, op->forward_count, binds, COUNT_OF(binds), stream);
}

pp_status pp_batchnorm_backward(pp_op *op, const void *dy, const void *saved, const float *gamma, const float *mean,
                                const float *invstd, void *dx, float *dgamma, float *dbeta, void *workspace,
                                void *stream)
{
    const char *call = "pp_batchnorm_backward";
    PP_TRY(call_begin(op, call, PP_OP_BATCHNORM));
    const named_ptr t[] = {{"dy", dy},         {"saved", saved}, {"gamma", gamma},   {"mean", mean},
                           {"invstd", invstd}, {"dx", dx},       {"dgamma", dgamma}, {"dbeta", dbeta}};
    PP_TRY(require(op, call, t, COUNT_OF(t)));
    PP_TRY(require_workspace(op, call, workspace));
    /* The kernels' names: dout is the gradient of BN's output, y its saved input, dy the
     * gradient of its input. */
    const named_ptr binds[] = {{"dout", dy},       {"y", saved},       {"gamma", gamma},
                               {"mean", mean},     {"invstd", invstd}, {"dy", dx},
                               {"dgamma", dgamma}, {"dbeta", dbeta},   {"partials", workspace}};
    return launch(op, op->forward_count, op->kernel_count, binds, COUNT_OF(binds), stream);
}
