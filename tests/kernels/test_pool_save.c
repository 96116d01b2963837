/* test_pool_save.c - the pool-save written by the producer of a convolution's input
 * (bn_apply_pool, maxpool_fwd_pool; templates/pool_save.cuh), on the host emulation
 * backend under three thread schedules (forward, reverse, shuffled), plus the static check
 * that every kernel compiles with NVRTC for sm_80 and sm_90 without spills.
 *
 * What must hold, all bit for bit (no tolerance: the producer and the convolution do the
 * same float operations in the same order):
 *   - xp (and xp2, the second factor) equals pooling the producer's output on the host in
 *     conv_fwd.cu's order (rows, then columns within a row: avg s = 0, s += x, s / count;
 *     max v = first, v = fmaxf(v, x) over all), and equals the xp conv_fwd's own pool-save
 *     writes from that output (a 1x1 convolution layer built for the same input and f);
 *   - out, mask and y_bf16 of bn_apply_pool equal bn_apply's (the one-element-per-thread
 *     kernel the plan used before), y and argmax of maxpool_fwd_pool equal maxpool_fwd's;
 *     every mask word is written, the bits past the last element are 0 (the outputs start
 *     as random garbage);
 *   - the three schedules give identical outputs; no kernel writes past its buffers.
 * Shapes: H, W not multiples of f (windows cut at the border), f = 2, 4 and 8 with second
 * factors 2 and 4, avg and max, with and without ReLU, residual add and the bf16 copy,
 * channel counts whose mask runs (CG) are 1, 8, 16 and 32 lanes, N = 1..3, a NaN input.
 * bf16 storage (ACT_BF16 = 1): out/y bitwise the ACT_BF16 elementwise kernel's, xp and xp2
 * bitwise the host's pooling of the stored (widened) output rounded to bf16 once.
 * Layouts: channels-last throughout (element (n,h,w,c) at ((n*H + h)*W + w)*C + c).
 * Usage: test_pool_save [cuda] - cuda runs the same checks on the GPU (the three contexts are
 * three runs that must agree); it exits 77 (skip) where there is no GPU. */
#define _GNU_SOURCE
#include "context.h"
#include "gen_layer.h"
#include "nvrtc_compile.h"
#include "ops_ref.h"
#include "test_util.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#define SCHEDULES 3
static pp_context *ctxs[SCHEDULES]; /* host backend per schedule (argument "cuda": GPU contexts) */
static pp_context *static_ctx;      /* no backend: the generator and NVRTC */
static const char *schedule_names[SCHEDULES] = {"forward", "reverse", "shuffled"};
static int compared_values, compared_words;

/* ---- random data: this file's stream of test_util.h's xorshift64 ---- */
static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint32_t rand_u32(void) { return test_rand_u32(&rng_state); }
static void *xmalloc(size_t bytes) { return test_xmalloc(bytes); }
static float *rand_floats(size_t n, float lo, float hi) { return test_rand_floats(&rng_state, n, lo, hi); }
static void *garbage(size_t bytes)
{
    unsigned char *p = xmalloc(bytes);
    for (size_t i = 0; i < bytes; i++) p[i] = (unsigned char)rand_u32();
    return p;
}

/* ---- kernel sets: compiled as one translation unit ---- */
#define MAX_SET 12
typedef struct kernel_set {
    char label[96];
    gen_kernel k[MAX_SET];
    int count;
    pp_module *mod[SCHEDULES];
} kernel_set;

static void set_init(kernel_set *s, const char *fmt, ...)
{
    memset(s, 0, sizeof *s);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->label, sizeof s->label, fmt, ap);
    va_end(ap);
}

static int set_put(kernel_set *s, gen_kernel *k)
{
    for (int i = 0; i < s->count; i++)
        if (strcmp(s->k[i].name, k->name) == 0) {
            gen_layer_kernel_free(k);
            return i;
        }
    CHECK(s->count < MAX_SET, "kernel set %s is full", s->label);
    s->k[s->count] = *k;
    return s->count++;
}

static int set_add(kernel_set *s, const char *op, const char *fmt, ...)
{
    char params[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(params, sizeof params, fmt, ap);
    va_end(ap);
    gen_kernel k;
    CHECK_OK(static_ctx, gen_layer_op_kernel(static_ctx, op, params, &k));
    CHECK(strcmp(k.op, op) == 0, "%s: op '%s', asked for '%s'", k.name, k.op, op);
    return set_put(s, &k);
}

/* The conv_fwd kernel (with its pool-save) of a 1x1 convolution with 4 outputs reading an
 * (n, h, w, c) input pooled by f: the path a producer's pool-save replaces. */
static int set_add_conv(kernel_set *s, int n, int c, int h, int w, int f, int pool_max)
{
    pp_layer_desc d;
    pp_layer_desc_init(&d);
    d.name = "pool_save_check";
    d.n = n, d.c = c, d.h = h, d.w = w, d.k = 4, d.r = d.s = 1, d.stride = 1, d.pad = 0;
    d.pool = f;
    d.pool_mode = pool_max ? PP_POOL_MAX : PP_POOL_AVG;
    gen_layer layer;
    CHECK_OK(static_ctx, gen_layer_from_desc(static_ctx, &d, &layer));
    int index = -1;
    for (int i = 0; i < layer.kernel_count; i++)
        if (strcmp(layer.kernels[i].op, "conv_fwd") == 0) {
            gen_kernel k = layer.kernels[i];
            memset(&layer.kernels[i], 0, sizeof layer.kernels[i]); /* moved into the set */
            CHECK(k.arg_count >= 4 && strcmp(k.args[3], "xp") == 0, "%s: no xp argument", k.name);
            index = set_put(s, &k);
        }
    gen_layer_free(&layer);
    CHECK(index >= 0, "no conv_fwd kernel for the %dx%d f%d layer", h, w, f);
    return index;
}

static char *set_source(const kernel_set *s)
{
    size_t len = 1;
    for (int i = 0; i < s->count; i++) len += strlen(s->k[i].source);
    char *src = xmalloc(len);
    for (int i = 0; i < s->count; i++) strcat(src, s->k[i].source);
    return src;
}

/* NVRTC for sm_80 and sm_90 (zero spills, registers within the file), then the backend. */
static void set_compile(kernel_set *s, int run)
{
    char *src = set_source(s);
    char name[160];
    snprintf(name, sizeof name, "%s.cu", s->label);
    const int archs[2] = {80, 90};
    for (int a = 0; a < 2; a++) {
        pp_nvrtc_output out;
        CHECK_OK(static_ctx, nvrtc_compile(static_ctx, src, name, archs[a], &out));
        for (int i = 0; i < s->count; i++) {
            const pp_ptxas_info *info = NULL;
            for (int j = 0; j < out.kernel_count; j++)
                if (strcmp(out.kernels[j].name, s->k[i].name) == 0) info = &out.kernels[j].info;
            CHECK(info != NULL, "ptxas report has no entry for %s", s->k[i].name);
            CHECK(info->registers > 0 && info->registers <= 255, "%s: %d registers", s->k[i].name, info->registers);
            CHECK(info->spill_store_bytes == 0 && info->spill_load_bytes == 0 && info->stack_bytes == 0,
                  "%s for sm_%d spills %d/%d bytes, stack %d", s->k[i].name, archs[a], info->spill_store_bytes,
                  info->spill_load_bytes, info->stack_bytes);
            if (a == 1 && strstr(s->k[i].name, "_pool_"))
                printf("  %s: %d registers (sm_90), 0 spills\n", s->k[i].name, info->registers);
        }
        nvrtc_output_free(&out);
    }
    if (run) {
        const char *names[MAX_SET];
        for (int i = 0; i < s->count; i++) names[i] = s->k[i].name;
        for (int si = 0; si < SCHEDULES; si++) {
            pp_compile_request req = {src, name, names, s->count};
            pp_compile_result r;
            CHECK_OK(ctxs[si], ctxs[si]->ops->compile(ctxs[si], &req, &s->mod[si], &r));
        }
    }
    free(src);
}

static void set_free(kernel_set *s)
{
    for (int si = 0; si < SCHEDULES; si++)
        if (s->mod[si]) ctxs[si]->ops->module_destroy(ctxs[si], s->mod[si]);
    for (int i = 0; i < s->count; i++) gen_layer_kernel_free(&s->k[i]);
    memset(s, 0, sizeof *s);
}

/* ---- launching with arguments bound by name ---- */
typedef struct bind {
    const char *name;
    const void *in; /* uploaded before the launch (outputs: garbage); NULL with bytes 0: a null pointer */
    void *out;      /* downloaded after the launch; NULL: an input, checked unmodified */
    size_t bytes;
} bind;

#define GUARD 256
static const unsigned char guard_byte = 0xA5;

/* Runs kernel ki of s on schedule si; returns a hash of every output's bytes. */
static uint64_t launch(int si, kernel_set *s, int ki, const bind *b, int nb)
{
    pp_context *ctx = ctxs[si];
    const gen_kernel *k = &s->k[ki];
    pp_function *fn;
    CHECK_OK(ctx, ctx->ops->get_function(ctx, s->mod[si], k->name, k->dynamic_shared, &fn));
    pp_devptr ptr[GEN_MAX_ARGS];
    void *args[GEN_MAX_ARGS];
    const bind *which[GEN_MAX_ARGS];
    unsigned char guard[GUARD];
    memset(guard, guard_byte, sizeof guard);
    for (int a = 0; a < k->arg_count; a++) {
        which[a] = NULL;
        for (int j = 0; j < nb; j++)
            if (strcmp(b[j].name, k->args[a]) == 0) which[a] = &b[j];
        CHECK(which[a] != NULL, "%s: argument '%s' is not bound by the test", k->name, k->args[a]);
        ptr[a] = 0;
        args[a] = &ptr[a];
        if (which[a]->bytes) {
            CHECK_OK(ctx, ctx->ops->alloc(ctx, which[a]->bytes + GUARD, &ptr[a]));
            CHECK_OK(ctx, ctx->ops->upload(ctx, ptr[a], which[a]->in, which[a]->bytes));
            CHECK_OK(ctx, ctx->ops->upload(ctx, ptr[a] + which[a]->bytes, guard, GUARD));
        }
    }
    CHECK_OK(ctx, ctx->ops->launch(ctx, fn, k->grid, k->block, args, NULL));
    CHECK_OK(ctx, ctx->ops->synchronize(ctx));
    uint64_t hash = 1469598103934665603ull;
    for (int a = 0; a < k->arg_count; a++) {
        const bind *w = which[a];
        if (!w->bytes) continue;
        unsigned char after[GUARD];
        CHECK_OK(ctx, ctx->ops->download(ctx, after, ptr[a] + w->bytes, GUARD));
        CHECK(memcmp(after, guard, GUARD) == 0, "%s wrote past the end of '%s' (%zu bytes)", k->name, w->name,
              w->bytes);
        unsigned char *got = w->out ? w->out : xmalloc(w->bytes);
        CHECK_OK(ctx, ctx->ops->download(ctx, got, ptr[a], w->bytes));
        if (w->out) {
            for (size_t i = 0; i < w->bytes; i++) hash = (hash ^ got[i]) * 1099511628211ull;
        } else {
            CHECK(memcmp(got, w->in, w->bytes) == 0, "%s modified its input '%s'", k->name, w->name);
            free(got);
        }
        ctx->ops->free(ctx, ptr[a]);
    }
    return hash;
}

#define IN(n, p, b)   \
    {                 \
        n, p, NULL, b \
    }
#define OUT(n, g, p, b) \
    {                   \
        n, g, p, b      \
    }
#define NUL(n)           \
    {                    \
        n, NULL, NULL, 0 \
    }

/* ---- the host reference: conv_fwd.cu's pool-save, same float operations in the same order ---- */
static void pool_host(int n, int c, int h, int w, int f, int pool_max, const float *x, float *xp)
{
    const int hp = (h + f - 1) / f, wp = (w + f - 1) / f;
    for (int b = 0; b < n; b++)
        for (int i = 0; i < hp; i++)
            for (int j = 0; j < wp; j++)
                for (int ch = 0; ch < c; ch++) {
                    const int h0 = i * f, w0 = j * f, h1 = h0 + f < h ? h0 + f : h, w1 = w0 + f < w ? w0 + f : w;
                    const float *image = x + (size_t)b * h * w * c + ch;
                    float v = image[((size_t)h0 * w + w0) * c];
                    if (pool_max) {
                        for (int y = h0; y < h1; y++)
                            for (int z = w0; z < w1; z++) v = fmaxf(v, image[((size_t)y * w + z) * c]);
                    } else {
                        v = 0.0f;
                        for (int y = h0; y < h1; y++)
                            for (int z = w0; z < w1; z++) v += image[((size_t)y * w + z) * c];
                        v = v / (float)((h1 - h0) * (w1 - w0));
                    }
                    xp[(((size_t)b * hp + i) * wp + j) * c + ch] = v;
                }
}

/* a and b hold the same bits (nan_equal: or are both NaN: a host reference's NaN payload
 * need not be the GPU's). */
static void same_floats(const char *what, const char *where, const float *a, const float *b, size_t count,
                        int nan_equal)
{
    for (size_t i = 0; i < count; i++) {
        if (memcmp(&a[i], &b[i], 4) == 0 || (nan_equal && isnan(a[i]) && isnan(b[i]))) continue;
        CHECK(0, "%s %s: element %zu is %a, want %a", where, what, i, a[i], b[i]);
    }
    compared_values += (int)count;
}

static void same_bytes(const char *what, const char *where, const void *a, const void *b, size_t bytes)
{
    const unsigned char *p = a, *q = b;
    for (size_t i = 0; i < bytes; i++)
        CHECK(p[i] == q[i], "%s %s: byte %zu is 0x%02x, want 0x%02x", where, what, i, p[i], q[i]);
}

/* ================= bn_apply_pool ================= */

/* opts: bit 0 RELU, 1 ADD, 2 SAVE_BF16. f2: the second factor (1: none). nan: one NaN input. */
static void test_bn_apply_pool(int n, int c, int h, int w, int f, int f2, int pool_max, int opts, int nan)
{
    const int relu = opts & 1, add = (opts >> 1) & 1, bf16 = (opts >> 2) & 1;
    kernel_set s;
    set_init(&s, "pool_save_bn_n%dc%dh%dw%d_f%d_%d", n, c, h, w, f, f2);
    const int kp = set_add(&s, "bn_apply_pool",
                           "{ N = %d, C = %d, H = %d, W = %d, RELU = %d, ADD = %d, SAVE_BF16 = %d, POOL_F = %d, "
                           "POOL_F2 = %d, POOL_MAX = %d }",
                           n, c, h, w, relu, add, bf16, f, f2, pool_max);
    const int ka = set_add(&s, "bn_apply", "{ N = %d, C = %d, HW = %d, RELU = %d, ADD = %d, SAVE_BF16 = %d }", n, c,
                           h * w, relu, add, bf16);
    const int kc = set_add_conv(&s, n, c, h, w, f, pool_max);
    const int kc2 = f2 > 1 ? set_add_conv(&s, n, c, h, w, f2, pool_max) : -1;
    set_compile(&s, 1);
    char where[200];
    snprintf(where, sizeof where, "%s (N%d C%d %dx%d)", s.k[kp].name, n, c, h, w);

    const size_t count = (size_t)n * c * h * w, words = (count + 31) / 32;
    const int fs[2] = {f, f2};
    size_t pcount[2];
    for (int t = 0; t < 2; t++) pcount[t] = (size_t)n * c * ((h + fs[t] - 1) / fs[t]) * ((w + fs[t] - 1) / fs[t]);
    float *y = rand_floats(count, -2, 2), *residual = rand_floats(count, -1, 1);
    if (nan) y[count / 3] = NAN;
    float *mean = rand_floats(c, -0.5f, 0.5f), *invstd = rand_floats(c, 0.5f, 2), *gamma = rand_floats(c, -1.5f, 1.5f),
          *beta = rand_floats(c, -0.5f, 0.5f), *wt = rand_floats((size_t)4 * c, -1, 1);
    /* Outputs start as garbage, the same for both kernels. */
    const size_t pmax = pcount[0] > pcount[1] ? pcount[0] : pcount[1];
    void *g_out = garbage(count * 4), *g_mask = garbage(words * 4), *g_bf = garbage(count * 2),
         *g_xp = garbage(pmax * 4), *g_xp2 = garbage(pmax * 4), *g_y = garbage((size_t)n * h * w * 4 * 4);
    float *out = xmalloc(count * 4), *out_a = xmalloc(count * 4), *xp = xmalloc(pcount[0] * 4),
          *xp2 = xmalloc(pcount[1] * 4), *ref = xmalloc(pcount[0] * 4), *ref2 = xmalloc(pcount[1] * 4),
          *conv_xp = xmalloc(pcount[0] * 4), *conv_xp2 = xmalloc(pcount[1] * 4),
          *conv_y = xmalloc((size_t)n * h * w * 16);
    uint32_t *mask = xmalloc(words * 4), *mask_a = xmalloc(words * 4);
    uint16_t *ybf = xmalloc(count * 2), *ybf_a = xmalloc(count * 2);
    uint64_t hash[SCHEDULES];
    for (int si = 0; si < SCHEDULES; si++) {
        char w2[260];
        snprintf(w2, sizeof w2, "%s %s", where, schedule_names[si]);
        bind bp[] = {IN("y", y, count * 4),
                     IN("mean", mean, c * 4),
                     IN("invstd", invstd, c * 4),
                     IN("gamma", gamma, c * 4),
                     IN("beta", beta, c * 4),
                     add ? (bind)IN("residual", residual, count * 4) : (bind)NUL("residual"),
                     OUT("out", g_out, out, count * 4),
                     relu ? (bind)OUT("mask", g_mask, mask, words * 4) : (bind)NUL("mask"),
                     bf16 ? (bind)OUT("y_bf16", g_bf, ybf, count * 2) : (bind)NUL("y_bf16"),
                     OUT("xp", g_xp, xp, pcount[0] * 4),
                     f2 > 1 ? (bind)OUT("xp2", g_xp2, xp2, pcount[1] * 4) : (bind)NUL("xp2")};
        hash[si] = launch(si, &s, kp, bp, 11);
        /* The elementwise kernel on the same inputs: out, mask, y_bf16 bit for bit. */
        bind ba[] = {IN("y", y, count * 4),
                     IN("mean", mean, c * 4),
                     IN("invstd", invstd, c * 4),
                     IN("gamma", gamma, c * 4),
                     IN("beta", beta, c * 4),
                     add ? (bind)IN("residual", residual, count * 4) : (bind)NUL("residual"),
                     OUT("out", g_out, out_a, count * 4),
                     relu ? (bind)OUT("mask", g_mask, mask_a, words * 4) : (bind)NUL("mask"),
                     bf16 ? (bind)OUT("y_bf16", g_bf, ybf_a, count * 2) : (bind)NUL("y_bf16"),
                     NUL("running_mean"),
                     NUL("running_var")};
        launch(si, &s, ka, ba, 11);
        same_floats("out vs bn_apply", w2, out, out_a, count, 0);
        if (relu) {
            same_bytes("mask vs bn_apply", w2, mask, mask_a, words * 4);
            if (count % 32) CHECK((mask[words - 1] >> (count % 32)) == 0, "%s: mask bits past the last element", w2);
            compared_words += (int)words;
        }
        if (bf16) same_bytes("y_bf16 vs bn_apply", w2, ybf, ybf_a, count * 2);
        /* xp: the host's pooling of out, and conv_fwd's own pool-save of out. */
        float *xps[2] = {xp, xp2}, *refs[2] = {ref, ref2}, *convs[2] = {conv_xp, conv_xp2};
        const int kcs[2] = {kc, kc2};
        for (int t = 0; t < (f2 > 1 ? 2 : 1); t++) {
            char what[64];
            pool_host(n, c, h, w, fs[t], pool_max, out, refs[t]);
            snprintf(what, sizeof what, "xp (f %d) vs the host", fs[t]);
            same_floats(what, w2, xps[t], refs[t], pcount[t], 1);
            bind bc[] = {IN("x", out, count * 4), IN("w", wt, (size_t)4 * c * 4),
                         OUT("y", g_y, conv_y, (size_t)n * h * w * 16), OUT("xp", g_xp, convs[t], pcount[t] * 4),
                         NUL("null")};
            launch(si, &s, kcs[t], bc, 5);
            snprintf(what, sizeof what, "xp (f %d) vs conv_fwd's", fs[t]);
            same_floats(what, w2, xps[t], convs[t], pcount[t], 0);
        }
    }
    for (int si = 1; si < SCHEDULES; si++)
        CHECK(hash[si] == hash[0], "%s: the %s and %s schedules differ", where, schedule_names[0], schedule_names[si]);
    printf("%s%s%s: xp%s bitwise the host's and conv_fwd's, out/mask/bf16 bitwise bn_apply's\n", where,
           pool_max ? " max" : " avg", nan ? " (a NaN)" : "", f2 > 1 ? " and xp2" : "");
    free(y), free(residual), free(mean), free(invstd), free(gamma), free(beta), free(wt);
    free(g_out), free(g_mask), free(g_bf), free(g_xp), free(g_xp2), free(g_y);
    free(out), free(out_a), free(xp), free(xp2), free(ref), free(ref2), free(conv_xp), free(conv_xp2), free(conv_y);
    free(mask), free(mask_a), free(ybf), free(ybf_a);
    set_free(&s);
}

/* ================= maxpool_fwd_pool ================= */

static void test_maxpool_pool(int n, int c, int h, int w, int f, int f2, int pool_max)
{
    kernel_set s;
    set_init(&s, "pool_save_maxpool_n%dc%dh%dw%d_f%d_%d", n, c, h, w, f, f2);
    const int kp =
        set_add(&s, "maxpool_fwd_pool", "{ N = %d, C = %d, H = %d, W = %d, POOL_F = %d, POOL_F2 = %d, POOL_MAX = %d }",
                n, c, h, w, f, f2, pool_max);
    const int km = set_add(&s, "maxpool_fwd", "{ N = %d, C = %d, H = %d, W = %d }", n, c, h, w);
    const int p = (h + 2 - 3) / 2 + 1, q = (w + 2 - 3) / 2 + 1;
    const int kc = set_add_conv(&s, n, c, p, q, f, pool_max);
    const int kc2 = f2 > 1 ? set_add_conv(&s, n, c, p, q, f2, pool_max) : -1;
    set_compile(&s, 1);
    char where[200];
    snprintf(where, sizeof where, "%s (N%d C%d %dx%d -> %dx%d)", s.k[kp].name, n, c, h, w, p, q);
    const size_t in_count = (size_t)n * c * h * w, count = (size_t)n * c * p * q;
    const int fs[2] = {f, f2};
    size_t pcount[2];
    for (int t = 0; t < 2; t++) pcount[t] = (size_t)n * c * ((p + fs[t] - 1) / fs[t]) * ((q + fs[t] - 1) / fs[t]);
    float *x = rand_floats(in_count, -3, 3), *wt = rand_floats((size_t)4 * c, -1, 1);
    const size_t pmax = pcount[0] > pcount[1] ? pcount[0] : pcount[1];
    void *g_y = garbage(count * 4), *g_arg = garbage(count), *g_xp = garbage(pmax * 4), *g_xp2 = garbage(pmax * 4),
         *g_cy = garbage((size_t)n * p * q * 16);
    float *y = xmalloc(count * 4), *y_m = xmalloc(count * 4), *xp = xmalloc(pcount[0] * 4),
          *xp2 = xmalloc(pcount[1] * 4), *ref = xmalloc(pmax * 4), *conv_xp = xmalloc(pmax * 4),
          *conv_y = xmalloc((size_t)n * p * q * 16);
    unsigned char *arg = xmalloc(count), *arg_m = xmalloc(count);
    uint64_t hash[SCHEDULES];
    for (int si = 0; si < SCHEDULES; si++) {
        char w2[260];
        snprintf(w2, sizeof w2, "%s %s", where, schedule_names[si]);
        bind bp[] = {IN("x", x, in_count * 4), OUT("y", g_y, y, count * 4), OUT("argmax", g_arg, arg, count),
                     OUT("xp", g_xp, xp, pcount[0] * 4),
                     f2 > 1 ? (bind)OUT("xp2", g_xp2, xp2, pcount[1] * 4) : (bind)NUL("xp2")};
        hash[si] = launch(si, &s, kp, bp, 5);
        bind bm[] = {IN("x", x, in_count * 4), OUT("y", g_y, y_m, count * 4), OUT("argmax", g_arg, arg_m, count)};
        launch(si, &s, km, bm, 3);
        same_floats("y vs maxpool_fwd", w2, y, y_m, count, 0);
        same_bytes("argmax vs maxpool_fwd", w2, arg, arg_m, count);
        float *xps[2] = {xp, xp2};
        const int kcs[2] = {kc, kc2};
        for (int t = 0; t < (f2 > 1 ? 2 : 1); t++) {
            char what[64];
            pool_host(n, c, p, q, fs[t], pool_max, y, ref);
            snprintf(what, sizeof what, "xp (f %d) vs the host", fs[t]);
            same_floats(what, w2, xps[t], ref, pcount[t], 1);
            bind bc[] = {IN("x", y, count * 4), IN("w", wt, (size_t)4 * c * 4),
                         OUT("y", g_cy, conv_y, (size_t)n * p * q * 16), OUT("xp", g_xp, conv_xp, pcount[t] * 4),
                         NUL("null")};
            launch(si, &s, kcs[t], bc, 5);
            snprintf(what, sizeof what, "xp (f %d) vs conv_fwd's", fs[t]);
            same_floats(what, w2, xps[t], conv_xp, pcount[t], 0);
        }
    }
    for (int si = 1; si < SCHEDULES; si++)
        CHECK(hash[si] == hash[0], "%s: the %s and %s schedules differ", where, schedule_names[0], schedule_names[si]);
    printf("%s%s: xp%s bitwise the host's and conv_fwd's, y/argmax bitwise maxpool_fwd's\n", where,
           pool_max ? " max" : " avg", f2 > 1 ? " and xp2" : "");
    free(x), free(wt), free(g_y), free(g_arg), free(g_xp), free(g_xp2), free(g_cy);
    free(y), free(y_m), free(xp), free(xp2), free(ref), free(conv_xp), free(conv_y), free(arg), free(arg_m);
    set_free(&s);
}

/* ================= bf16 activation storage (ACT_BF16 = 1) =================
 * The producer stores its output in bf16 and its pool-save from the stored values: xp =
 * bf16(the fp32 mean (or max) of the window's stored elements, widened), in pool_host's
 * order, rounded once. What must hold, bit for bit: out/y (and mask, argmax) equal the
 * ACT_BF16 elementwise kernel's (bn_apply / maxpool_fwd); xp, xp2 equal pool_host run on the
 * widened stored output, rounded to bf16 (a max is a stored value: exact); every mask bit is
 * the stored value's sign. */

/* bf16 rounding and widening: reference/ops_ref.c's, independent of the kernels' bit trick. */
static uint16_t bf16_host(float x) { return bf16_round_ref(x); }
static float widen_host(uint16_t b) { return bf16_to_float_ref(b); }
static uint16_t *bf16_copy(const float *x, size_t n)
{
    uint16_t *b = xmalloc(n * 2);
    for (size_t i = 0; i < n; i++) b[i] = bf16_host(x[i]);
    return b;
}
/* xp (bf16 bits) == pool_host of the widened bf16 tensor x16, rounded to bf16 (NaN: any NaN). */
static void pool_bf16_matches(const char *what, const char *where, int n, int c, int h, int w, int f, int pool_max,
                              const uint16_t *x16, const uint16_t *xp)
{
    const size_t count = (size_t)n * c * h * w, pcount = (size_t)n * c * ((h + f - 1) / f) * ((w + f - 1) / f);
    float *x = xmalloc(count * 4), *ref = xmalloc(pcount * 4);
    for (size_t i = 0; i < count; i++) x[i] = widen_host(x16[i]);
    pool_host(n, c, h, w, f, pool_max, x, ref);
    for (size_t i = 0; i < pcount; i++) {
        const uint16_t want = bf16_host(ref[i]);
        CHECK(xp[i] == want || (isnan(ref[i]) && isnan(widen_host(xp[i]))), "%s %s: element %zu is 0x%04x, want 0x%04x",
              where, what, i, xp[i], want);
    }
    compared_values += (int)pcount;
    free(x), free(ref);
}

/* opts: bit 0 RELU, 1 ADD. */
static void test_bn_apply_pool_bf16(int n, int c, int h, int w, int f, int f2, int pool_max, int opts, int nan)
{
    const int relu = opts & 1, add = (opts >> 1) & 1;
    kernel_set s;
    set_init(&s, "pool_save_bn_actbf16_n%dc%dh%dw%d_f%d_%d", n, c, h, w, f, f2);
    const int kp = set_add(&s, "bn_apply_pool",
                           "{ N = %d, C = %d, H = %d, W = %d, RELU = %d, ADD = %d, POOL_F = %d, POOL_F2 = %d, "
                           "POOL_MAX = %d, ACT_BF16 = 1 }",
                           n, c, h, w, relu, add, f, f2, pool_max);
    const int ka = set_add(&s, "bn_apply", "{ N = %d, C = %d, HW = %d, RELU = %d, ADD = %d, ACT_BF16 = 1 }", n, c,
                           h * w, relu, add);
    set_compile(&s, 1);
    char where[200];
    snprintf(where, sizeof where, "%s (N%d C%d %dx%d)", s.k[kp].name, n, c, h, w);
    const size_t count = (size_t)n * c * h * w, words = (count + 31) / 32;
    const int fs[2] = {f, f2};
    size_t pcount[2];
    for (int t = 0; t < 2; t++) pcount[t] = (size_t)n * c * ((h + fs[t] - 1) / fs[t]) * ((w + fs[t] - 1) / fs[t]);
    float *y0 = rand_floats(count, -2, 2), *res0 = rand_floats(count, -1, 1);
    if (nan) y0[count / 3] = NAN;
    uint16_t *y16 = bf16_copy(y0, count), *res16 = bf16_copy(res0, count);
    float *mean = rand_floats(c, -0.5f, 0.5f), *invstd = rand_floats(c, 0.5f, 2), *gamma = rand_floats(c, -1.5f, 1.5f),
          *beta = rand_floats(c, -0.5f, 0.5f);
    const size_t pmax = pcount[0] > pcount[1] ? pcount[0] : pcount[1];
    void *g_out = garbage(count * 2), *g_mask = garbage(words * 4), *g_xp = garbage(pmax * 2),
         *g_xp2 = garbage(pmax * 2);
    uint16_t *out = xmalloc(count * 2), *out_a = xmalloc(count * 2), *xp = xmalloc(pcount[0] * 2),
             *xp2 = xmalloc(pcount[1] * 2);
    uint32_t *mask = xmalloc(words * 4), *mask_a = xmalloc(words * 4);
    uint64_t hash[SCHEDULES];
    for (int si = 0; si < SCHEDULES; si++) {
        char w2[260];
        snprintf(w2, sizeof w2, "%s %s", where, schedule_names[si]);
        bind bp[] = {IN("y", y16, count * 2),
                     IN("mean", mean, c * 4),
                     IN("invstd", invstd, c * 4),
                     IN("gamma", gamma, c * 4),
                     IN("beta", beta, c * 4),
                     add ? (bind)IN("residual", res16, count * 2) : (bind)NUL("residual"),
                     OUT("out", g_out, out, count * 2),
                     relu ? (bind)OUT("mask", g_mask, mask, words * 4) : (bind)NUL("mask"),
                     NUL("y_bf16"),
                     OUT("xp", g_xp, xp, pcount[0] * 2),
                     f2 > 1 ? (bind)OUT("xp2", g_xp2, xp2, pcount[1] * 2) : (bind)NUL("xp2")};
        hash[si] = launch(si, &s, kp, bp, 11);
        bind ba[] = {IN("y", y16, count * 2),
                     IN("mean", mean, c * 4),
                     IN("invstd", invstd, c * 4),
                     IN("gamma", gamma, c * 4),
                     IN("beta", beta, c * 4),
                     add ? (bind)IN("residual", res16, count * 2) : (bind)NUL("residual"),
                     OUT("out", g_out, out_a, count * 2),
                     relu ? (bind)OUT("mask", g_mask, mask_a, words * 4) : (bind)NUL("mask"),
                     NUL("y_bf16"),
                     NUL("running_mean"),
                     NUL("running_var")};
        launch(si, &s, ka, ba, 11);
        same_bytes("out vs bn_apply ACT_BF16", w2, out, out_a, count * 2);
        compared_values += (int)count;
        if (relu) {
            same_bytes("mask vs bn_apply ACT_BF16", w2, mask, mask_a, words * 4);
            for (size_t i = 0; i < count; i++)
                CHECK((int)((mask[i / 32] >> (i % 32)) & 1u) == (widen_host(out[i]) > 0), "%s: mask bit %zu, out %g",
                      w2, i, widen_host(out[i]));
            if (count % 32) CHECK((mask[words - 1] >> (count % 32)) == 0, "%s: mask bits past the last element", w2);
            compared_words += (int)words;
        }
        pool_bf16_matches("xp vs the host's pooling of the stored out", w2, n, c, h, w, f, pool_max, out, xp);
        if (f2 > 1)
            pool_bf16_matches("xp2 vs the host's pooling of the stored out", w2, n, c, h, w, f2, pool_max, out, xp2);
    }
    for (int si = 1; si < SCHEDULES; si++)
        CHECK(hash[si] == hash[0], "%s: the %s and %s schedules differ", where, schedule_names[0], schedule_names[si]);
    printf("%s%s%s: bf16 xp%s bitwise the host's pooling of the stored out, out/mask bitwise bn_apply's\n", where,
           pool_max ? " max" : " avg", nan ? " (a NaN)" : "", f2 > 1 ? " and xp2" : "");
    free(y0), free(res0), free(y16), free(res16), free(mean), free(invstd), free(gamma), free(beta);
    free(g_out), free(g_mask), free(g_xp), free(g_xp2), free(out), free(out_a), free(xp), free(xp2), free(mask),
        free(mask_a);
    set_free(&s);
}

static void test_maxpool_pool_bf16(int n, int c, int h, int w, int f, int f2, int pool_max)
{
    kernel_set s;
    set_init(&s, "pool_save_maxpool_actbf16_n%dc%dh%dw%d_f%d_%d", n, c, h, w, f, f2);
    const int kp = set_add(&s, "maxpool_fwd_pool",
                           "{ N = %d, C = %d, H = %d, W = %d, POOL_F = %d, POOL_F2 = %d, POOL_MAX = %d, ACT_BF16 = 1 }",
                           n, c, h, w, f, f2, pool_max);
    const int km = set_add(&s, "maxpool_fwd", "{ N = %d, C = %d, H = %d, W = %d, ACT_BF16 = 1 }", n, c, h, w);
    set_compile(&s, 1);
    const int p = (h + 2 - 3) / 2 + 1, q = (w + 2 - 3) / 2 + 1;
    char where[200];
    snprintf(where, sizeof where, "%s (N%d C%d %dx%d -> %dx%d)", s.k[kp].name, n, c, h, w, p, q);
    const size_t in_count = (size_t)n * c * h * w, count = (size_t)n * c * p * q;
    const int fs[2] = {f, f2};
    size_t pcount[2];
    for (int t = 0; t < 2; t++) pcount[t] = (size_t)n * c * ((p + fs[t] - 1) / fs[t]) * ((q + fs[t] - 1) / fs[t]);
    float *x0 = rand_floats(in_count, -3, 3);
    uint16_t *x16 = bf16_copy(x0, in_count);
    const size_t pmax = pcount[0] > pcount[1] ? pcount[0] : pcount[1];
    void *g_y = garbage(count * 2), *g_arg = garbage(count), *g_xp = garbage(pmax * 2), *g_xp2 = garbage(pmax * 2);
    uint16_t *y = xmalloc(count * 2), *y_m = xmalloc(count * 2), *xp = xmalloc(pcount[0] * 2),
             *xp2 = xmalloc(pcount[1] * 2);
    unsigned char *arg = xmalloc(count), *arg_m = xmalloc(count);
    uint64_t hash[SCHEDULES];
    for (int si = 0; si < SCHEDULES; si++) {
        char w2[260];
        snprintf(w2, sizeof w2, "%s %s", where, schedule_names[si]);
        bind bp[] = {IN("x", x16, in_count * 2), OUT("y", g_y, y, count * 2), OUT("argmax", g_arg, arg, count),
                     OUT("xp", g_xp, xp, pcount[0] * 2),
                     f2 > 1 ? (bind)OUT("xp2", g_xp2, xp2, pcount[1] * 2) : (bind)NUL("xp2")};
        hash[si] = launch(si, &s, kp, bp, 5);
        bind bm[] = {IN("x", x16, in_count * 2), OUT("y", g_y, y_m, count * 2), OUT("argmax", g_arg, arg_m, count)};
        launch(si, &s, km, bm, 3);
        same_bytes("y vs maxpool_fwd ACT_BF16", w2, y, y_m, count * 2);
        same_bytes("argmax vs maxpool_fwd ACT_BF16", w2, arg, arg_m, count);
        compared_values += (int)count;
        pool_bf16_matches("xp vs the host's pooling of the stored y", w2, n, c, p, q, f, pool_max, y, xp);
        if (f2 > 1)
            pool_bf16_matches("xp2 vs the host's pooling of the stored y", w2, n, c, p, q, f2, pool_max, y, xp2);
    }
    for (int si = 1; si < SCHEDULES; si++)
        CHECK(hash[si] == hash[0], "%s: the %s and %s schedules differ", where, schedule_names[0], schedule_names[si]);
    printf("%s%s: bf16 xp%s bitwise the host's pooling of the stored y, y/argmax bitwise maxpool_fwd's\n", where,
           pool_max ? " max" : " avg", f2 > 1 ? " and xp2" : "");
    free(x0), free(x16), free(g_y), free(g_arg), free(g_xp), free(g_xp2), free(y), free(y_m), free(xp), free(xp2);
    free(arg), free(arg_m);
    set_free(&s);
}

/* ResNet-50 shapes at batch 256: NVRTC only (registers, no spills). */
static void large_compile(void)
{
    kernel_set s;
    set_init(&s, "pool_save_resnet50_b256");
    set_add(&s, "maxpool_fwd_pool", "{ N = 256, C = 64, H = 112, W = 112, POOL_F = 4, POOL_F2 = 2 }");
    set_add(&s, "bn_apply_pool", "{ N = 256, C = 64, H = 56, W = 56, RELU = 1, SAVE_BF16 = 1, POOL_F = 2 }");
    set_add(&s, "bn_apply_pool",
            "{ N = 256, C = 256, H = 56, W = 56, RELU = 1, ADD = 1, POOL_F = 8, POOL_F2 = 4, POOL_MAX = 1 }");
    set_add(&s, "bn_apply_pool", "{ N = 256, C = 2048, H = 7, W = 7, RELU = 1, ADD = 1, POOL_F = 8, POOL_F2 = 2 }");
    set_add(&s, "bn_apply_pool", "{ N = 128, C = 16, H = 32, W = 32, RELU = 1, POOL_F = 4 }");
    set_add(&s, "maxpool_fwd_pool", "{ N = 256, C = 64, H = 112, W = 112, POOL_F = 4, POOL_F2 = 2, ACT_BF16 = 1 }");
    set_add(
        &s, "bn_apply_pool",
        "{ N = 256, C = 256, H = 56, W = 56, RELU = 1, ADD = 1, POOL_F = 8, POOL_F2 = 4, POOL_MAX = 1, ACT_BF16 = 1 }");
    set_add(&s, "bn_apply_pool",
            "{ N = 256, C = 2048, H = 7, W = 7, RELU = 1, ADD = 1, POOL_F = 8, POOL_F2 = 2, ACT_BF16 = 1 }");
    set_compile(&s, 0);
    set_free(&s);
}

/* Odd sizes (every window row and column cut at the border somewhere), C 5 and 3 (mask runs
 * of 1 lane), 16 (CIFAR stage 1: 16), 40 (8), 48 (16, two warps per window), 64 (32: whole
 * words); RELU / ADD / bf16 combinations; f 2, 4, 8 and the second factors 2 and 4; a NaN
 * (avg: spreads to its window; max: fmaxf drops it). */
static void bn_apply_pool(void)
{
    test_bn_apply_pool(2, 5, 7, 9, 2, 1, 0, 1, 0);
    test_bn_apply_pool(2, 5, 7, 9, 2, 1, 1, 3, 0);
    test_bn_apply_pool(1, 3, 5, 11, 4, 1, 0, 0, 0);
    test_bn_apply_pool(1, 3, 5, 11, 4, 2, 1, 7, 1);
    test_bn_apply_pool(3, 16, 9, 7, 4, 2, 0, 3, 0);
    test_bn_apply_pool(2, 16, 9, 7, 2, 1, 1, 1, 0);
    test_bn_apply_pool(1, 40, 13, 3, 4, 1, 1, 5, 0);
    test_bn_apply_pool(2, 48, 6, 11, 2, 1, 0, 2, 1);
    test_bn_apply_pool(1, 64, 7, 5, 4, 2, 0, 7, 0);
    test_bn_apply_pool(2, 64, 5, 6, 2, 1, 1, 1, 0);
    test_bn_apply_pool(1, 32, 11, 9, 8, 4, 0, 1, 0);
    test_bn_apply_pool(1, 8, 9, 10, 8, 2, 1, 3, 0);
}

/* The stem's 3x3/2 pooling on odd inputs (outputs 6x5, 4x7, 3x3), f 2 and 4, a second
 * factor, avg and max. */
static void maxpool_fwd_pool(void)
{
    test_maxpool_pool(2, 3, 11, 9, 2, 1, 0);
    test_maxpool_pool(1, 5, 7, 13, 4, 2, 1);
    test_maxpool_pool(2, 64, 5, 6, 2, 1, 1);
    test_maxpool_pool(1, 16, 5, 5, 4, 2, 0);
}

/* bf16 storage: odd sizes, mask runs of 1, 16 and 32 lanes, avg and max, f 2/4/8 with
 * second factors, a NaN. */
static void bn_apply_pool_bf16(void)
{
    test_bn_apply_pool_bf16(2, 5, 7, 9, 2, 1, 0, 3, 0);
    test_bn_apply_pool_bf16(1, 3, 5, 11, 4, 2, 1, 1, 1);
    test_bn_apply_pool_bf16(3, 16, 9, 7, 4, 2, 0, 3, 0);
    test_bn_apply_pool_bf16(1, 64, 7, 5, 8, 4, 0, 1, 0);
}

static void maxpool_fwd_pool_bf16(void)
{
    test_maxpool_pool_bf16(2, 3, 11, 9, 2, 1, 0);
    test_maxpool_pool_bf16(1, 5, 7, 13, 4, 2, 1);
}

/* The random stream runs through the cases in this order. */
static const test_case tests[] = {
    TEST_CASE(bn_apply_pool, "bn_apply_pool's pool-save, output and mask on 12 shapes: bitwise conv_fwd's, the host's"),
    TEST_CASE(maxpool_fwd_pool, "maxpool_fwd_pool's pool-save on 4 stem shapes: bitwise conv_fwd's and the host's"),
    TEST_CASE(bn_apply_pool_bf16, "bn_apply_pool with bf16 storage on 4 shapes: bitwise the host's on the bf16 values"),
    TEST_CASE(maxpool_fwd_pool_bf16, "maxpool_fwd_pool with bf16 storage on 2 shapes: bitwise the host's"),
    TEST_CASE(large_compile, "ResNet-50 shapes at batch 256 compile with NVRTC without spills"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    const int cuda = argc > 1 && strcmp(argv[1], "cuda") == 0;
    const pp_schedule schedules[SCHEDULES] = {PP_SCHEDULE_FORWARD, PP_SCHEDULE_REVERSE, PP_SCHEDULE_SHUFFLED};
    for (int i = 0; i < SCHEDULES; i++) {
        pp_context_options o;
        pp_context_options_init(&o);
        o.backend = cuda ? PP_BACKEND_CUDA : PP_BACKEND_HOST;
        o.host_schedule = schedules[i];
        o.host_threads = 2;
        pp_status st = pp_context_create(&o, &ctxs[i]);
        if (cuda && st == PP_ERR_NO_DEVICE) {
            printf("no GPU: %s: skipped\n", ctxs[i] ? pp_last_error(ctxs[i]) : "");
            return PP_TEST_SKIP;
        }
        CHECK_OK(ctxs[i], st);
    }
    if (cuda) {
        schedule_names[0] = "gpu run 1", schedule_names[1] = "gpu run 2", schedule_names[2] = "gpu run 3";
        printf("device: %s\n", pp_context_device_name(ctxs[0]));
    }
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_NONE;
    CHECK_OK(static_ctx, pp_context_create(&o, &static_ctx));

    int status = TEST_RUN(tests, only);
    printf("pool-save: %d pooled, output and mask values compared (%d mask words), all bitwise equal\n",
           compared_values, compared_words);
    for (int i = 0; i < SCHEDULES; i++) pp_context_destroy(ctxs[i]);
    pp_context_destroy(static_ctx);
    return status;
}
