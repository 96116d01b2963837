/* test_train_ops.c - the training step's non-convolution kernels (generator/poolprop/ops.lua)
 * against the plain C reference (reference/ops_ref.c), on the host emulation backend
 * under two thread schedules (forward, reverse; the sliced BN and multi-block softmax
 * forms also under a third, shuffled one), plus the static check that every kernel
 * compiles with NVRTC for sm_80 and sm_90 without spills, and the builders' parameter
 * errors.
 *
 * Layouts: the kernels take channels-last activations (NHWC: element (n,hw,c) of an
 * (N,HW,C) tensor at (n*HW + hw)*C + c), the reference is written in NCHW (the arithmetic
 * contract). The test makes its data in NCHW, hands the kernels NHWC copies and maps every
 * kernel output back to NCHW before comparing, element for element; a mask bit of element
 * e sits at e's NCHW flat index for the reference and at its NHWC flat index for the kernels.
 *
 * Shapes: N 1..3, channel counts not multiples of 32, HW not multiples of 32 (mask words
 * straddle pixels, the last word is partial), channels with fewer values than threads
 * and with more than 8192, maxpool on odd sizes with overlapping and disjoint windows,
 * softmax with 10 and 1000 classes, fc with odd sizes and each GEMM tile height, the
 * standalone ReLU (relu_mask_fwd/bwd) on counts with a partial last mask word. Every
 * option combination of bn_apply (16) and bn_backward (12) runs on three BN shapes.
 * The sliced forms (bn_stats_part + bn_stats_merge SHIFT 1, bn_backward_sums +
 * bn_backward_dx) run with row counts that are not multiples of the slice count, one row
 * per slice, more slices than pixel groups and than merge threads; the multi-block softmax
 * (softmax_ce_rows + softmax_ce_reduce) with row counts that fill no block evenly and more
 * rows than the reduction has threads, and must give the one-block kernel's bits.
 * bf16 activation storage (ACT_BF16 = 1): every op that takes it (BN statistics, apply,
 * backward and their sliced forms, max and average pooling) on odd channel counts and sizes
 * that are not multiples of 8 or 32, against the reference on the bf16-rounded inputs and
 * bitwise against the fp32 kernel on the widened inputs; sgd's bf16 weight shadow (SHADOW).
 * (The pool-save forms' bf16 storage: tests/kernels/test_pool_save.c.)
 *
 * Errors: u = 2^-24 (fp32 unit roundoff). Each comparison is |kernel - reference| over the
 * largest magnitude named next to it (the reference's own, or that of the terms that
 * make it up where a result can cancel), against a tolerance derived from the number of
 * fp32 roundings on the kernel's path: a sequential sum of k terms errs by at most
 * ~k*u*sum|terms|, a tree of depth d adds d*u. Copies and selections (maxpool values and
 * argmax, masks, bf16 bits, ReLU zeros) must match exactly. bf16 outputs: the fp32 tolerance,
 * then the one final rounding accounted exactly (bf16_outputs). NaN where the reference has a
 * number (or the reverse) is an infinite error. Besides, the two schedules must give
 * bit-identical outputs (the reductions are deterministic), kernels must not write past
 * their buffers (guard bytes) nor into their inputs.
 * Prints the largest error of each op and registers/spills per kernel for sm_90.
 * Usage: test_train_ops [cuda] - cuda runs the same checks on the GPU (the two contexts are
 * two runs that must agree bit for bit); it exits 77 (skip) where there is no GPU. */
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
#include <time.h>

#define U (1.0 / 16777216.0) /* fp32 unit roundoff */

#define SCHEDULES 3                 /* forward, reverse, shuffled; the one-pass kernels' tests use the first two */
static pp_context *host[SCHEDULES]; /* host backend, one per schedule (argument "cuda": GPU contexts) */
static pp_context *static_ctx;      /* no backend: NVRTC only */
static const char *schedule_names[SCHEDULES] = {"forward", "reverse", "shuffled"};

/* ---- random data: this file's stream of test_util.h's xorshift64 ---- */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rand_u32(void) { return test_rand_u32(&rng_state); }
static float uniform(float lo, float hi) { return test_uniform(&rng_state, lo, hi); }
static void *xmalloc(size_t bytes) { return test_xmalloc(bytes); }
static float *rand_floats(size_t n, float lo, float hi) { return test_rand_floats(&rng_state, n, lo, hi); }

/* ---- per-op summary ---- */
typedef struct op_summary {
    char op[32];
    double worst;       /* largest error (relative, as each check defines it) */
    double worst_ratio; /* largest error / tolerance */
    int checks;
} op_summary;
static op_summary summaries[48];
static int summary_count;

/* Records one comparison and fails the test if err > tol. */
static void expect(const char *op, const char *what, const char *where, double err, double tol)
{
    op_summary *s = NULL;
    for (int i = 0; i < summary_count; i++)
        if (strcmp(summaries[i].op, op) == 0) s = &summaries[i];
    if (!s) {
        s = &summaries[summary_count++];
        snprintf(s->op, sizeof s->op, "%s", op);
    }
    s->checks++;
    if (err > s->worst) s->worst = err;
    if (tol > 0 && err / tol > s->worst_ratio) s->worst_ratio = err / tol;
    CHECK(err <= tol, "%s: %s %s: error %.3e > tolerance %.3e", op, what, where, err, tol);
}

/* |k - r| with NaN on one side only as infinity (and both NaN as 0). */
static double diff(double k, double r)
{
    if (isnan(k) || isnan(r)) return isnan(k) && isnan(r) ? 0.0 : INFINITY;
    if (k == r) return 0.0; /* equal infinities */
    return fabs(k - r);
}
static double max_diff(const float *k, const double *r, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = diff(k[i], r[i]);
        if (d > m) m = d;
    }
    return m;
}
static double max_abs(const double *r, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(r[i]) > m) m = fabs(r[i]);
    return m;
}
static double max_absf(const float *r, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(r[i]) > m) m = fabs(r[i]);
    return m;
}
static double scale_of(double m) { return m > 0 ? m : 1.0; }
static double log2i(int t)
{
    double d = 0;
    while ((1 << (int)d) < t) d++;
    return d;
}

/* ---- layouts: NCHW (the reference) <-> NHWC (the kernels) ----
 * Element (b, ch, i) of an (n, c, hw) tensor (hw = h*w, i = y*w + x for a 4-d one) is at
 * (b*c + ch)*hw + i in NCHW and at (b*hw + i)*c + ch in NHWC. */
static size_t at_nchw(int c, int hw, int b, int ch, int i) { return ((size_t)b * c + ch) * hw + i; }
static size_t at_nhwc(int c, int hw, int b, int ch, int i) { return ((size_t)b * hw + i) * c + ch; }

/* dst = src with its elements (elem bytes each) moved from one layout to the other. */
static void relayout(void *dst, const void *src, size_t elem, int n, int c, int hw, int to_nhwc)
{
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++)
            for (int i = 0; i < hw; i++) {
                const size_t a = at_nchw(c, hw, b, ch, i), h = at_nhwc(c, hw, b, ch, i);
                memcpy((char *)dst + (to_nhwc ? h : a) * elem, (const char *)src + (to_nhwc ? a : h) * elem, elem);
            }
}
/* A new NHWC copy of an NCHW tensor. */
static void *nhwc_copy(const void *nchw, size_t elem, int n, int c, int hw)
{
    void *p = xmalloc((size_t)n * c * hw * elem);
    relayout(p, nchw, elem, n, c, hw, 1);
    return p;
}
/* Bit masks: dst gets bit e (element e in one layout) from the same element's bit in src
 * (the other layout); the bits past the last element stay 0. */
static void mask_relayout(uint32_t *dst, const uint32_t *src, int n, int c, int hw, int to_nhwc)
{
    const size_t count = (size_t)n * c * hw;
    memset(dst, 0, (count + 31) / 32 * 4);
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++)
            for (int i = 0; i < hw; i++) {
                const size_t a = at_nchw(c, hw, b, ch, i), h = at_nhwc(c, hw, b, ch, i);
                const size_t from = to_nhwc ? a : h, to = to_nhwc ? h : a;
                if ((src[from / 32] >> (from % 32)) & 1u) dst[to / 32] |= 1u << (to % 32);
            }
}

/* ---- kernel sets: generated together, compiled as one translation unit ---- */
#define MAX_SET 48
typedef struct kernel_set {
    char label[96];
    gen_kernel k[MAX_SET];
    int count;
    pp_module *mod[SCHEDULES];
} kernel_set;

/* Registers and spills per distinct kernel, from the NVRTC report. */
typedef struct reg_row {
    char name[128];
    int regs[2], spill[2], smem90;
} reg_row;
static reg_row reg_rows[512];
static int reg_row_count, static_compiles;

static void set_init(kernel_set *s, const char *fmt, ...)
{
    memset(s, 0, sizeof *s);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->label, sizeof s->label, fmt, ap);
    va_end(ap);
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
    for (int i = 0; i < s->count; i++)
        if (strcmp(s->k[i].name, k.name) == 0) {
            CHECK(strcmp(s->k[i].source, k.source) == 0, "%s: same name, different source", k.name);
            gen_layer_kernel_free(&k);
            return i;
        }
    CHECK(s->count < MAX_SET, "kernel set %s is full", s->label);
    CHECK(strcmp(k.op, op) == 0, "%s: op '%s', asked for '%s'", k.name, k.op, op);
    CHECK(k.block[0] % 32 == 0 && k.block[1] == 1 && k.block[2] == 1, "%s: block (%u,%u,%u)", k.name, k.block[0],
          k.block[1], k.block[2]);
    s->k[s->count] = k;
    return s->count++;
}

static char *set_source(const kernel_set *s)
{
    size_t len = 1;
    for (int i = 0; i < s->count; i++) len += strlen(s->k[i].source);
    char *src = xmalloc(len);
    src[0] = '\0';
    for (int i = 0; i < s->count; i++) strcat(src, s->k[i].source);
    return src;
}

/* A constexpr int the generator baked into a kernel's source (a tile size the tolerances
 * depend on). */
static int source_constant(const gen_kernel *k, const char *name)
{
    char key[80];
    snprintf(key, sizeof key, "constexpr int %s = ", name);
    const char *p = strstr(k->source, key);
    CHECK(p != NULL, "%s: no constant %s in the source", k->name, name);
    return atoi(p + strlen(key));
}

/* NVRTC for sm_80 and sm_90 (zero spills), then the host backend for both schedules. */
static void set_compile(kernel_set *s, int run_on_host)
{
    char *src = set_source(s);
    char name[160];
    snprintf(name, sizeof name, "%s.cu", s->label);
    const int archs[2] = {80, 90};
    for (int a = 0; a < 2; a++) {
        pp_nvrtc_output out;
        CHECK_OK(static_ctx, nvrtc_compile(static_ctx, src, name, archs[a], &out));
        CHECK(out.arch == archs[a], "compiled for sm_%d, asked for sm_%d", out.arch, archs[a]);
        for (int i = 0; i < s->count; i++) {
            const pp_ptxas_info *info = NULL;
            for (int j = 0; j < out.kernel_count; j++)
                if (strcmp(out.kernels[j].name, s->k[i].name) == 0) info = &out.kernels[j].info;
            CHECK(info != NULL, "ptxas report has no entry for %s", s->k[i].name);
            CHECK(info->registers > 0 && info->registers <= 255, "%s: %d registers", s->k[i].name, info->registers);
            CHECK(info->spill_store_bytes == 0 && info->spill_load_bytes == 0, "%s for sm_%d spills %d/%d bytes",
                  s->k[i].name, archs[a], info->spill_store_bytes, info->spill_load_bytes);
            CHECK(info->stack_bytes == 0, "%s for sm_%d uses %d stack bytes", s->k[i].name, archs[a],
                  info->stack_bytes);
            reg_row *row = NULL;
            for (int r = 0; r < reg_row_count; r++)
                if (strcmp(reg_rows[r].name, s->k[i].name) == 0) row = &reg_rows[r];
            if (!row && reg_row_count < 512) {
                row = &reg_rows[reg_row_count++];
                snprintf(row->name, sizeof row->name, "%s", s->k[i].name);
            }
            if (row) {
                row->regs[a] = info->registers;
                row->spill[a] = info->spill_store_bytes + info->spill_load_bytes;
                if (a == 1) row->smem90 = info->shared_bytes;
            }
            static_compiles++;
        }
        nvrtc_output_free(&out);
    }
    if (run_on_host) {
        const char *names[MAX_SET];
        for (int i = 0; i < s->count; i++) names[i] = s->k[i].name;
        for (int si = 0; si < SCHEDULES; si++) {
            pp_compile_request req = {src, name, names, s->count};
            pp_compile_result r;
            CHECK_OK(host[si], host[si]->ops->compile(host[si], &req, &s->mod[si], &r));
        }
    }
    free(src);
}

static void set_free(kernel_set *s)
{
    for (int si = 0; si < SCHEDULES; si++)
        if (s->mod[si]) host[si]->ops->module_destroy(host[si], s->mod[si]);
    for (int i = 0; i < s->count; i++) gen_layer_kernel_free(&s->k[i]);
    memset(s, 0, sizeof *s);
}

/* ---- launching with arguments bound by name ---- */
typedef struct bind {
    const char *name;
    const void *in;      /* uploaded before the launch; NULL: left as allocated (0xFF bytes) */
    void *out;           /* downloaded after the launch; NULL: not */
    size_t bytes;        /* 0 (with in == out == NULL): a null pointer */
    const float *scalar; /* a float parameter passed by value */
} bind;

#define GUARD 256
static const unsigned char guard_byte = 0xA5;

/* Runs kernel ki of s on schedule si; returns a hash of every output's bytes. */
static uint64_t launch(int si, kernel_set *s, int ki, const bind *b, int nb)
{
    pp_context *ctx = host[si];
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
        if (which[a]->scalar) {
            args[a] = (void *)which[a]->scalar;
        } else if (which[a]->bytes) {
            CHECK_OK(ctx, ctx->ops->alloc(ctx, which[a]->bytes + GUARD, &ptr[a]));
            if (which[a]->in) CHECK_OK(ctx, ctx->ops->upload(ctx, ptr[a], which[a]->in, which[a]->bytes));
            CHECK_OK(ctx, ctx->ops->upload(ctx, ptr[a] + which[a]->bytes, guard, GUARD));
        }
    }
    pp_status st = ctx->ops->launch(ctx, fn, k->grid, k->block, args, NULL);
    CHECK_OK(ctx, st);
    CHECK_OK(ctx, ctx->ops->synchronize(ctx));
    uint64_t hash = 1469598103934665603ull;
    for (int a = 0; a < k->arg_count; a++) {
        const bind *w = which[a];
        if (w->scalar || !w->bytes) continue;
        unsigned char after[GUARD];
        CHECK_OK(ctx, ctx->ops->download(ctx, after, ptr[a] + w->bytes, GUARD));
        CHECK(memcmp(after, guard, GUARD) == 0, "%s wrote past the end of '%s' (%zu bytes)", k->name, w->name,
              w->bytes);
        if (w->out) {
            CHECK_OK(ctx, ctx->ops->download(ctx, w->out, ptr[a], w->bytes));
            for (size_t i = 0; i < w->bytes; i++) hash = (hash ^ ((const unsigned char *)w->out)[i]) * 1099511628211ull;
        } else if (w->in) {
            unsigned char *copy = xmalloc(w->bytes);
            CHECK_OK(ctx, ctx->ops->download(ctx, copy, ptr[a], w->bytes));
            CHECK(memcmp(copy, w->in, w->bytes) == 0, "%s modified its input '%s'", k->name, w->name);
            free(copy);
        }
        ctx->ops->free(ctx, ptr[a]);
    }
    return hash;
}

/* Checks the two schedules gave bit-identical outputs. */
static void same_outputs(const char *kernel, const uint64_t hash[2])
{
    CHECK(hash[0] == hash[1], "%s: the forward and reverse schedules give different outputs", kernel);
}
/* The same over all SCHEDULES. */
static void same_outputs_all(const char *kernel, const uint64_t hash[SCHEDULES])
{
    for (int si = 1; si < SCHEDULES; si++)
        CHECK(hash[si] == hash[0], "%s: the %s and %s schedules give different outputs", kernel, schedule_names[0],
              schedule_names[si]);
}

#define IN(n, p, b)         \
    {                       \
        n, p, NULL, b, NULL \
    }
#define OUT(n, p, b)        \
    {                       \
        n, NULL, p, b, NULL \
    }
#define INOUT(n, i, o, b) \
    {                     \
        n, i, o, b, NULL  \
    }
#define NUL(n)                 \
    {                          \
        n, NULL, NULL, 0, NULL \
    }

/* ================= batch norm ================= */

static uint32_t *random_mask(size_t count)
{
    size_t words = (count + 31) / 32;
    uint32_t *m = xmalloc(words * 4);
    for (size_t i = 0; i < words; i++) m[i] = rand_u32();
    if (count % 32) m[words - 1] &= (1u << (count % 32)) - 1u;
    return m;
}

/* bn_apply option combination index: bit 0 RELU, 1 ADD, 2 SAVE_BF16, 3 EVAL. */
static void test_bn(int n, int c, int hw, float offset, int all_combos)
{
    kernel_set s;
    set_init(&s, "train_ops_bn_n%dc%dhw%d", n, c, hw);
    const int ks = set_add(&s, "bn_stats", "{ N = %d, C = %d, HW = %d }", n, c, hw);
    /* The partials a conv epilogue leaves: the M = N*HW values of a channel cut into PARTS
     * runs of the (n, hw) order, the last ones possibly empty. */
    const int parts = 7;
    const int km = set_add(&s, "bn_stats_merge", "{ C = %d, PARTS = %d, M = %d }", c, parts, n * hw);
    int ka[16], kb[12];
    for (int combo = 0; combo < 16; combo++) {
        /* Without all_combos: the combinations a training plan uses (RELU/ADD with the mask,
         * bf16 or not) and plain inference. */
        int relu = combo & 1, add = (combo >> 1) & 1, bf16 = (combo >> 2) & 1, eval = (combo >> 3) & 1;
        ka[combo] = -1;
        if (all_combos || (!eval && relu) || (eval && !bf16 && !add))
            ka[combo] =
                set_add(&s, "bn_apply", "{ N = %d, C = %d, HW = %d, RELU = %d, ADD = %d, SAVE_BF16 = %d, EVAL = %d }",
                        n, c, hw, relu, add, bf16, eval);
    }
    for (int combo = 0; combo < 12; combo++) {
        int mask = combo % 3, bf16 = (combo / 3) % 2, res = combo / 6;
        kb[combo] = -1;
        if (all_combos || mask == 1 || combo == 0)
            kb[combo] = set_add(&s, "bn_backward", "{ N = %d, C = %d, HW = %d, MASK = %d, BF16 = %d, RES = %d }", n, c,
                                hw, mask, bf16, res);
    }
    set_compile(&s, 1);

    const size_t count = (size_t)n * c * hw, words = (count + 31) / 32, m = (size_t)n * hw;
    /* bn_stats' block: CT channels x PG pixel groups; each group's thread reduces ceil(M/PG)
     * values of its channel, then a log2(PG)-level tree over the groups. */
    const int threads = (int)s.k[ks].block[0], ct = source_constant(&s.k[ks], "CT"),
              pg = source_constant(&s.k[ks], "PG");
    CHECK(ct * pg == threads && s.k[ks].grid[0] == (unsigned)((c + ct - 1) / ct),
          "%s: %d channels x %d groups, %u blocks", s.k[ks].name, ct, pg, s.k[ks].grid[0]);
    char where[200];
    snprintf(where, sizeof where, "N%d C%d HW%d (M %zu, %d threads = %d channels x %d pixel groups, offset %g)", n, c,
             hw, m, threads, ct, pg, offset);

    /* Channel ch: values offset*(1 + ch%3) + spread*(ch%4 + 1)*uniform(-1, 1). */
    float *y = xmalloc(count * 4);
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++)
            for (int i = 0; i < hw; i++)
                y[((size_t)b * c + ch) * hw + i] = offset * (1 + ch % 3) + (float)(ch % 4 + 1) * uniform(-1, 1);
    float *rm_in = rand_floats(c, -1, 1), *rv_in = rand_floats(c, 0.5f, 2);
    float *gamma = rand_floats(c, 0.5f, 1.5f), *beta = rand_floats(c, -0.5f, 0.5f);
    float *residual = rand_floats(count, -2, 2), *dout = rand_floats(count, -1, 1);
    /* The kernels' NHWC copies. */
    float *y_h = nhwc_copy(y, 4, n, c, hw), *residual_h = nhwc_copy(residual, 4, n, c, hw);
    float *dout_h = nhwc_copy(dout, 4, n, c, hw);

    /* ---- bn_stats ---- */
    double *mean_r = xmalloc(c * 8), *invstd_r = xmalloc(c * 8), *rm_r = xmalloc(c * 8), *rv_r = xmalloc(c * 8);
    bn_stats_ref(n, c, hw, 0.1, 1e-5, y, rm_in, rv_in, mean_r, invstd_r, rm_r, rv_r);
    /* Scales: the data's magnitude for the mean; for the variance kappa = 1 + |mean - K|/std,
     * the condition of the data the kernel's Welford pass sees (shifted by the channel's
     * first value K; Welford's error grows with kappa, the sum-of-squares formula's with
     * kappa^2). The offset cases have |mean| up to 5000 std: unshifted, kappa would be that. */
    double kappa = 1, ymax = max_absf(y, count);
    for (int ch = 0; ch < c; ch++) {
        double sd = sqrt(1.0 / (invstd_r[ch] * invstd_r[ch]) - 1e-5);
        double k = 1 + fabs(mean_r[ch] - y[(size_t)ch * hw]) / sd;
        if (k > kappa) kappa = k;
    }
    /* Each thread's Welford pass: ceil(M/PG) updates (PG = the pixel groups sharing a
     * channel, THREADS/CT), each erring by a few u of the data's magnitude; the Chan merge
     * tree over the groups adds log2(PG) levels. (NCHW kernels had all THREADS on one
     * channel: ceil(M/THREADS) + log2(THREADS); the channels-last block shares its threads
     * among CT channels, so the chains are CT times longer.) */
    const double steps = ceil((double)m / pg) + log2i(pg);
    const double tol_mean = (steps + 4) * U;           /* relative to max|y| */
    const double tol_invstd = (steps + 8) * U * kappa; /* relative, per channel */
    float *mean = xmalloc(c * 4), *invstd = xmalloc(c * 4), *rm = xmalloc(c * 4), *rv = xmalloc(c * 4);
    uint64_t hash[2];
    for (int si = 0; si < 2; si++) {
        bind b[] = {IN("y", y_h, count * 4), OUT("mean", mean, c * 4), OUT("invstd", invstd, c * 4),
                    INOUT("running_mean", rm_in, rm, c * 4), INOUT("running_var", rv_in, rv, c * 4)};
        hash[si] = launch(si, &s, ks, b, 5);
        double e_invstd = 0, e_rv = 0;
        for (int ch = 0; ch < c; ch++) {
            double e = diff(invstd[ch], invstd_r[ch]) / invstd_r[ch];
            if (e > e_invstd) e_invstd = e;
            e = diff(rv[ch], rv_r[ch]) / rv_r[ch];
            if (e > e_rv) e_rv = e;
        }
        char w2[280];
        snprintf(w2, sizeof w2, "%s %s", where, schedule_names[si]);
        expect("bn_stats", "mean (rel. to max|y|)", w2, max_diff(mean, mean_r, c) / scale_of(ymax), tol_mean);
        expect("bn_stats", "invstd (relative)", w2, e_invstd, tol_invstd);
        /* running_mean: 0.9*rm + 0.1*mean, three more roundings. */
        expect("bn_stats", "running_mean (rel. to max|y|)", w2, max_diff(rm, rm_r, c) / scale_of(ymax + 1),
               tol_mean + 4 * U);
        /* running_var: twice invstd's relative error (var vs 1/sqrt(var)) plus the update's roundings. */
        expect("bn_stats", "running_var (relative)", w2, e_rv, 2 * tol_invstd + 8 * U);
    }
    same_outputs(s.k[ks].name, hash);

    /* ---- bn_stats_merge: the same statistics from (count, mean, M2) partials ---- */
    {
        float *partials = xmalloc((size_t)parts * c * 3 * 4);
        const size_t per = (m + parts - 2) / (parts - 1); /* the last part is short or empty */
        double spread = 1;                                /* max |part mean - mean| / std */
        double offset_ratio = 0;                          /* max |mean| / std */
        for (int ch = 0; ch < c; ch++) {
            double sd = sqrt(1.0 / (invstd_r[ch] * invstd_r[ch]) - 1e-5);
            for (int p = 0; p < parts; p++) {
                size_t first = p * per, last = first + per < m ? first + per : m;
                double sum = 0, m2 = 0;
                for (size_t j = first; j < last; j++) sum += y[((j / hw) * c + ch) * hw + j % hw];
                double cnt = last > first ? (double)(last - first) : 0, mu = cnt > 0 ? sum / cnt : 0;
                for (size_t j = first; j < last; j++) {
                    double d = y[((j / hw) * c + ch) * hw + j % hw] - mu;
                    m2 += d * d;
                }
                float *q = partials + ((size_t)p * c + ch) * 3;
                q[0] = (float)cnt, q[1] = (float)mu, q[2] = (float)m2;
                if (cnt > 0 && 1 + fabs(mu - mean_r[ch]) / sd > spread) spread = 1 + fabs(mu - mean_r[ch]) / sd;
            }
            if (fabs(mean_r[ch]) / sd > offset_ratio) offset_ratio = fabs(mean_r[ch]) / sd;
        }
        /* Each thread merges ceil(PARTS/T) partials, then log2(T) merge levels. Each partial
         * mean is a float: off by u*|mean|, which moves the merged variance by about
         * 2u*(|mean|/std)*spread relative: unlike bn_stats' shifted pass, the partials' error
         * grows with the data's offset against its spread (|mean|/std reaches 5000 in the
         * offset cases; after a bias-free convolution it is of order 1). */
        const int mthreads = (int)s.k[km].block[0];
        const double msteps = ceil((double)parts / mthreads) + log2i(mthreads) + 2;
        const double mtol_mean = (msteps + 4) * U;
        const double mtol_invstd = (msteps + 8) * U * spread + 4 * U * offset_ratio * spread;
        for (int si = 0; si < 2; si++) {
            bind b[] = {IN("partials", partials, (size_t)parts * c * 3 * 4), OUT("mean", mean, c * 4),
                        OUT("invstd", invstd, c * 4), INOUT("running_mean", rm_in, rm, c * 4),
                        INOUT("running_var", rv_in, rv, c * 4)};
            hash[si] = launch(si, &s, km, b, 5);
            double e_invstd = 0, e_rv = 0;
            for (int ch = 0; ch < c; ch++) {
                double e = diff(invstd[ch], invstd_r[ch]) / invstd_r[ch];
                if (e > e_invstd) e_invstd = e;
                e = diff(rv[ch], rv_r[ch]) / rv_r[ch];
                if (e > e_rv) e_rv = e;
            }
            char w2[280];
            snprintf(w2, sizeof w2, "%s %s, %d partials", where, schedule_names[si], parts);
            expect("bn_stats_merge", "mean (rel. to max|y|)", w2, max_diff(mean, mean_r, c) / scale_of(ymax),
                   mtol_mean);
            expect("bn_stats_merge", "invstd (relative)", w2, e_invstd, mtol_invstd);
            expect("bn_stats_merge", "running_mean (rel. to max|y|)", w2, max_diff(rm, rm_r, c) / scale_of(ymax + 1),
                   mtol_mean + 4 * U);
            expect("bn_stats_merge", "running_var (relative)", w2, e_rv, 2 * mtol_invstd + 8 * U);
        }
        same_outputs(s.k[km].name, hash);
        free(partials);
    }

    /* ---- bn_apply, every selected combination; mean/invstd from the kernel above ---- */
    /* out, mask, ybf: the kernel's outputs mapped to NCHW; *_k: as the kernel wrote them (NHWC). */
    double *out_r = xmalloc(count * 8), *terms = xmalloc(count * 8);
    float *out = xmalloc(count * 4), *out_k = xmalloc(count * 4), *out2_k = xmalloc(count * 4);
    uint32_t *mask = xmalloc(words * 4), *mask_k = xmalloc(words * 4);
    uint16_t *ybf = xmalloc(count * 2), *ybf_k = xmalloc(count * 2);
    for (int combo = 0; combo < 16; combo++) {
        if (ka[combo] < 0) continue;
        int relu = combo & 1, add = (combo >> 1) & 1, bf16 = (combo >> 2) & 1, eval = (combo >> 3) & 1;
        const gen_kernel *k = &s.k[ka[combo]];
        bn_apply_ref(n, c, hw, relu, eval, 1e-5, y, mean, invstd, gamma, beta, add ? residual : NULL, rm_in, rv_in,
                     out_r);
        /* Scale: the largest |gamma*(y-m)*s| + |beta| + |residual| (the terms the kernel adds,
         * which may cancel); 5 roundings (y-m, *s, *gamma, +beta, +residual) and under
         * EVAL 2 more (sqrt, 1/x) -> 8u. */
        double scale = 0;
        for (size_t i = 0; i < count; i++) {
            int ch = (int)((i / hw) % c);
            double s_ = eval ? 1.0 / sqrt(rv_in[ch] + 1e-5) : invstd[ch], m_ = eval ? rm_in[ch] : mean[ch];
            terms[i] = fabs(gamma[ch] * (y[i] - m_) * s_) + fabs(beta[ch]) + (add ? fabs(residual[i]) : 0);
            if (terms[i] > scale) scale = terms[i];
        }
        const double tol = 8 * U;
        const int want_mask = relu && !eval;
        for (int si = 0; si < 2; si++) {
            bind b[] = {IN("y", y_h, count * 4),
                        eval ? (bind)NUL("mean") : (bind)IN("mean", mean, c * 4),
                        eval ? (bind)NUL("invstd") : (bind)IN("invstd", invstd, c * 4),
                        IN("gamma", gamma, c * 4),
                        IN("beta", beta, c * 4),
                        add ? (bind)IN("residual", residual_h, count * 4) : (bind)NUL("residual"),
                        OUT("out", out_k, count * 4),
                        want_mask ? (bind)OUT("mask", mask_k, words * 4) : (bind)NUL("mask"),
                        bf16 ? (bind)OUT("y_bf16", ybf_k, count * 2) : (bind)NUL("y_bf16"),
                        eval ? (bind)IN("running_mean", rm_in, c * 4) : (bind)NUL("running_mean"),
                        eval ? (bind)IN("running_var", rv_in, c * 4) : (bind)NUL("running_var")};
            hash[si] = launch(si, &s, ka[combo], b, 11);
            relayout(out, out_k, 4, n, c, hw, 0);
            if (want_mask) mask_relayout(mask, mask_k, n, c, hw, 0);
            if (bf16) relayout(ybf, ybf_k, 2, n, c, hw, 0);
            char w2[360];
            snprintf(w2, sizeof w2, "%s %s %s", k->name, where, schedule_names[si]);
            expect("bn_apply", "out (rel. to the largest term)", w2, max_diff(out, out_r, count) / scale_of(scale),
                   tol);
            for (size_t i = 0; i < count; i++) {
                /* The ReLU is a select: where the reference is clearly negative the output
                 * is exactly 0, and never negative. */
                if (relu) CHECK(!(out[i] < 0), "%s: out[%zu] = %g < 0 after the ReLU", w2, i, out[i]);
                if (relu && out_r[i] < -tol * terms[i] - 1e-30)
                    CHECK(out[i] == 0, "%s: out[%zu] = %g, reference %g: ReLU must give 0", w2, i, out[i], out_r[i]);
                if (want_mask) {
                    int bit = (mask[i / 32] >> (i % 32)) & 1u;
                    CHECK(bit == (out[i] > 0), "%s: mask bit %zu is %d, out is %g", w2, i, bit, out[i]);
                }
                if (bf16) {
                    uint16_t want = bf16_round_ref(y[i]);
                    CHECK(ybf[i] == want, "%s: y_bf16[%zu] = 0x%04x, y %a rounds to 0x%04x", w2, i, ybf[i], y[i], want);
                }
            }
            if (want_mask && count % 32)
                CHECK((mask_k[words - 1] >> (count % 32)) == 0, "%s: mask bits past the last element are set", w2);
            if (want_mask) expect("bn_apply", "mask bits (exact)", w2, 0, 0);
            if (bf16) expect("bn_apply", "y_bf16 (exact)", w2, 0, 0);
        }
        same_outputs(k->name, hash);
        if (want_mask) {
            /* The baseline policy keeps the ReLU output and passes a null mask. */
            bind b[] = {IN("y", y_h, count * 4),
                        IN("mean", mean, c * 4),
                        IN("invstd", invstd, c * 4),
                        IN("gamma", gamma, c * 4),
                        IN("beta", beta, c * 4),
                        add ? (bind)IN("residual", residual_h, count * 4) : (bind)NUL("residual"),
                        OUT("out", out2_k, count * 4),
                        NUL("mask"),
                        bf16 ? (bind)OUT("y_bf16", ybf_k, count * 2) : (bind)NUL("y_bf16"),
                        NUL("running_mean"),
                        NUL("running_var")};
            launch(0, &s, ka[combo], b, 11);
            CHECK(memcmp(out_k, out2_k, count * 4) == 0, "%s: out differs with a null mask", k->name);
        }
    }

    /* ---- bn_backward, every selected combination ---- */
    uint32_t *mask_in = random_mask(count), *mask_in_h = xmalloc(words * 4);
    mask_relayout(mask_in_h, mask_in, n, c, hw, 1);
    float *relu_out = rand_floats(count, -1, 1);
    for (size_t i = 0; i < count; i += 7) relu_out[i] = 0.0f; /* exactly 0: inactive */
    float *relu_out_h = nhwc_copy(relu_out, 4, n, c, hw);
    uint16_t *y16 = xmalloc(count * 2);
    float *y16f = xmalloc(count * 4);
    for (size_t i = 0; i < count; i++) {
        y16[i] = bf16_round_ref(y[i]);
        y16f[i] = bf16_to_float_ref(y16[i]);
    }
    uint16_t *y16_h = nhwc_copy(y16, 2, n, c, hw);
    double *dg_r = xmalloc(c * 8), *db_r = xmalloc(c * 8), *dy_r = xmalloc(count * 8), *dres_r = xmalloc(count * 8);
    double *abs_db = xmalloc(c * 8), *abs_dg = xmalloc(c * 8), *dummy = xmalloc(count * 8);
    float *dg = xmalloc(c * 4), *db = xmalloc(c * 4), *dy = xmalloc(count * 4), *dres = xmalloc(count * 4);
    float *dy_k = xmalloc(count * 4), *dres_k = xmalloc(count * 4);
    float *absdout = xmalloc(count * 4);
    for (size_t i = 0; i < count; i++) absdout[i] = fabsf(dout[i]);
    for (int combo = 0; combo < 12; combo++) {
        if (kb[combo] < 0) continue;
        int maskm = combo % 3, bf16 = (combo / 3) % 2, res = combo / 6;
        const gen_kernel *k = &s.k[kb[combo]];
        const float *yk = bf16 ? y16f : y;
        bn_backward_ref(n, c, hw, maskm, dout, mask_in, relu_out, yk, mean, invstd, gamma, dg_r, db_r, dy_r,
                        res ? dres_r : NULL);
        /* Magnitudes of the sums' terms: the reference run on |dout| and |xhat| (dgamma of
         * |dout| with y mirrored to |y - mean| + mean gives sum |dz*xhat|). */
        float *ymirror = xmalloc(count * 4);
        for (size_t i = 0; i < count; i++) {
            int ch = (int)((i / hw) % c);
            ymirror[i] = mean[ch] + fabsf(yk[i] - mean[ch]);
        }
        bn_backward_ref(n, c, hw, maskm, absdout, mask_in, relu_out, ymirror, mean, invstd, gamma, abs_dg, abs_db,
                        dummy, NULL);
        free(ymirror);
        /* dbeta/dgamma: sequential per-thread sums of ceil(M/PG) terms plus a log2(PG)-deep
         * tree over the pixel groups (as bn_stats: PG = THREADS/CT), relative to max_c
         * sum|terms|; dgamma's terms carry 3 more roundings (xhat). */
        const int bct = source_constant(k, "CT"), bpg = source_constant(k, "PG");
        CHECK(bct * bpg == (int)k->block[0] && k->grid[0] == (unsigned)((c + bct - 1) / bct),
              "%s: %d channels x %d groups, %u blocks", k->name, bct, bpg, k->grid[0]);
        const double bsteps = ceil((double)m / bpg) + log2i(bpg);
        const double tol_db = (bsteps + 2) * U, tol_dg = (bsteps + 6) * U;
        /* dy = g*s*(dz - sum_dz/M - xhat*sum_dzxhat/M): the sums' errors (above) enter through
         * sum|terms|/M, and ~8 roundings of the elementwise part; relative to the largest
         * g*s*(|dz| + sum|dz|/M + |xhat|*sum|dz*xhat|/M). */
        double scale_dy = 0;
        for (size_t i = 0; i < count; i++) {
            int ch = (int)((i / hw) % c);
            double xh = fabs((yk[i] - mean[ch]) * (double)invstd[ch]);
            double t = fabs(gamma[ch] * (double)invstd[ch]) * (fabs(dout[i]) + abs_db[ch] / m + xh * abs_dg[ch] / m);
            if (t > scale_dy) scale_dy = t;
        }
        const double tol_dy = tol_dg + 8 * U;
        for (int si = 0; si < 2; si++) {
            bind b[] = {IN("dout", dout_h, count * 4),
                        maskm == 1   ? (bind)IN("mask", mask_in_h, words * 4)
                        : maskm == 2 ? (bind)IN("mask", relu_out_h, count * 4)
                                     : (bind)NUL("mask"),
                        bf16 ? (bind)IN("y", y16_h, count * 2) : (bind)IN("y", y_h, count * 4),
                        IN("mean", mean, c * 4),
                        IN("invstd", invstd, c * 4),
                        IN("gamma", gamma, c * 4),
                        OUT("dgamma", dg, c * 4),
                        OUT("dbeta", db, c * 4),
                        OUT("dy", dy_k, count * 4),
                        res ? (bind)OUT("dres", dres_k, count * 4) : (bind)NUL("dres")};
            hash[si] = launch(si, &s, kb[combo], b, 10);
            relayout(dy, dy_k, 4, n, c, hw, 0);
            if (res) relayout(dres, dres_k, 4, n, c, hw, 0);
            char w2[360];
            snprintf(w2, sizeof w2, "%s %s %s", k->name, where, schedule_names[si]);
            expect("bn_backward", "dbeta (rel. to sum|dz|)", w2, max_diff(db, db_r, c) / scale_of(max_abs(abs_db, c)),
                   tol_db);
            expect("bn_backward", "dgamma (rel. to sum|dz*xhat|)", w2,
                   max_diff(dg, dg_r, c) / scale_of(max_abs(abs_dg, c)), tol_dg);
            expect("bn_backward", "dy (rel. to its terms)", w2, max_diff(dy, dy_r, count) / scale_of(scale_dy), tol_dy);
            if (res) expect("bn_backward", "dres (exact: dout or 0)", w2, max_diff(dres, dres_r, count), 0);
        }
        same_outputs(k->name, hash);
    }

    int na = 0, nb = 0;
    for (int i = 0; i < 16; i++) na += ka[i] >= 0;
    for (int i = 0; i < 12; i++) nb += kb[i] >= 0;
    printf("%s: bn_stats, %d bn_apply and %d bn_backward variants match\n", where, na, nb);
    free(y), free(rm_in), free(rv_in), free(gamma), free(beta), free(residual), free(dout);
    free(y_h), free(residual_h), free(dout_h);
    free(mean_r), free(invstd_r), free(rm_r), free(rv_r), free(mean), free(invstd), free(rm), free(rv);
    free(out_r), free(terms), free(out), free(out_k), free(out2_k), free(mask), free(mask_k), free(ybf), free(ybf_k);
    free(mask_in), free(mask_in_h), free(relu_out), free(relu_out_h), free(y16), free(y16_h), free(y16f);
    free(dg_r), free(db_r), free(dy_r), free(dres_r);
    free(abs_db), free(abs_dg), free(dummy), free(dg), free(db), free(dy), free(dres), free(dy_k), free(dres_k);
    free(absdout);
    set_free(&s);
}

/* The sliced forms of BN: bn_stats_part + bn_stats_merge (SHIFT 1) and bn_backward_sums +
 * bn_backward_dx, SLICES row slices per channel block, under all SCHEDULES (outputs
 * bit-identical). Slice s holds rows [floor(s*M/S), floor((s+1)*M/S)). The backward runs
 * three option combinations: MASK 1 with RES, MASK 2 with bf16 y, no ReLU. */
static void test_bn_sliced(int n, int c, int hw, float offset, int slices)
{
    kernel_set s;
    set_init(&s, "train_ops_bn_sliced_n%dc%dhw%ds%d", n, c, hw, slices);
    const int m = n * hw;
    const int kp = set_add(&s, "bn_stats_part", "{ N = %d, C = %d, HW = %d, SLICES = %d }", n, c, hw, slices);
    const int km = set_add(&s, "bn_stats_merge", "{ C = %d, PARTS = %d, M = %d, SHIFT = 1 }", c, slices, m);
    const int combos[3][3] = {{1, 0, 1}, {2, 1, 0}, {0, 0, 0}}; /* MASK, BF16, RES */
    int ksum[3], kdx[3];
    for (int i = 0; i < 3; i++) {
        ksum[i] = set_add(&s, "bn_backward_sums", "{ N = %d, C = %d, HW = %d, SLICES = %d, MASK = %d, BF16 = %d }", n,
                          c, hw, slices, combos[i][0], combos[i][1]);
        kdx[i] =
            set_add(&s, "bn_backward_dx", "{ N = %d, C = %d, HW = %d, SLICES = %d, MASK = %d, BF16 = %d, RES = %d }", n,
                    c, hw, slices, combos[i][0], combos[i][1], combos[i][2]);
    }
    set_compile(&s, 1);

    const size_t count = (size_t)n * c * hw, words = (count + 31) / 32;
    const int threads = (int)s.k[kp].block[0], ct = source_constant(&s.k[kp], "CT"),
              pg = source_constant(&s.k[kp], "PG");
    const int rows_max = (m + slices - 1) / slices; /* the longest slice */
    CHECK(ct * pg == threads && s.k[kp].grid[0] == (unsigned)((c + ct - 1) / ct) && s.k[kp].grid[1] == (unsigned)slices,
          "%s: %d channels x %d groups, grid %ux%u", s.k[kp].name, ct, pg, s.k[kp].grid[0], s.k[kp].grid[1]);
    char where[200];
    snprintf(where, sizeof where,
             "N%d C%d HW%d (M %d in %d slices of %d..%d rows, %d threads = %d channels x %d groups, "
             "offset %g)",
             n, c, hw, m, slices, m / slices, rows_max, threads, ct, pg, offset);

    float *y = xmalloc(count * 4);
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++)
            for (int i = 0; i < hw; i++)
                y[((size_t)b * c + ch) * hw + i] = offset * (1 + ch % 3) + (float)(ch % 4 + 1) * uniform(-1, 1);
    float *rm_in = rand_floats(c, -1, 1), *rv_in = rand_floats(c, 0.5f, 2), *gamma = rand_floats(c, 0.5f, 1.5f);
    float *dout = rand_floats(count, -1, 1);
    float *y_h = nhwc_copy(y, 4, n, c, hw), *dout_h = nhwc_copy(dout, 4, n, c, hw);

    /* ---- statistics: partials, then the merge ---- */
    double *mean_r = xmalloc(c * 8), *invstd_r = xmalloc(c * 8), *rm_r = xmalloc(c * 8), *rv_r = xmalloc(c * 8);
    bn_stats_ref(n, c, hw, 0.1, 1e-5, y, rm_in, rv_in, mean_r, invstd_r, rm_r, rv_r);
    double kappa = 1, ymax = max_absf(y, count);
    for (int ch = 0; ch < c; ch++) {
        double sd = sqrt(1.0 / (invstd_r[ch] * invstd_r[ch]) - 1e-5);
        double k = 1 + fabs(mean_r[ch] - y[(size_t)ch * hw]) / sd;
        if (k > kappa) kappa = k;
    }
    /* As bn_stats (test_bn), on the shifted values: each thread's Welford pass over at most
     * ceil(rows_max/PG) values and a log2(PG)-level tree per slice, then the merge: each of
     * its T threads merges ceil(S/T) partials in order, then a log2(T)-level tree. */
    const int mthreads = (int)s.k[km].block[0];
    const double steps = ceil((double)rows_max / pg) + log2i(pg) + ceil((double)slices / mthreads) + log2i(mthreads);
    const double tol_mean = (steps + 4) * U, tol_invstd = (steps + 8) * U * kappa;
    const size_t pbytes = ((size_t)slices * c * 3 + c) * 4;
    float *partials = xmalloc(pbytes), *partials0 = xmalloc(pbytes);
    float *mean = xmalloc(c * 4), *invstd = xmalloc(c * 4), *rm = xmalloc(c * 4), *rv = xmalloc(c * 4);
    uint64_t hp[SCHEDULES], hm[SCHEDULES];
    for (int si = 0; si < SCHEDULES; si++) {
        char w2[280];
        snprintf(w2, sizeof w2, "%s %s", where, schedule_names[si]);
        bind bp[] = {IN("y", y_h, count * 4), OUT("partials", partials, pbytes)};
        hp[si] = launch(si, &s, kp, bp, 2);
        /* The partials' layout: slice s of channel c counts the rows of its slice, the shifts
         * are each channel's first value, and the slices' shifted means times their counts
         * add up to the channel's (mean - shift) * M. */
        for (int ch = 0; ch < c; ch++) {
            CHECK(partials[(size_t)slices * c * 3 + ch] == y[(size_t)ch * hw],
                  "%s: shift of channel %d is %g, want y %g", w2, ch, partials[(size_t)slices * c * 3 + ch],
                  y[(size_t)ch * hw]);
            double total = 0;
            for (int sl = 0; sl < slices; sl++) {
                const long long first = (long long)sl * m / slices, end = (long long)(sl + 1) * m / slices;
                const float *q = partials + ((size_t)sl * c + ch) * 3;
                CHECK(q[0] == (float)(end - first), "%s: slice %d of channel %d counts %g rows, want %lld", w2, sl, ch,
                      q[0], end - first);
                total += (double)q[0] * q[1];
            }
            const double want = (mean_r[ch] - y[(size_t)ch * hw]) * m;
            CHECK(fabs(total - want) <= (steps + 4) * U * ymax * m, "%s: channel %d: slices' sum %g, want %g", w2, ch,
                  total, want);
        }
        if (si == 0) memcpy(partials0, partials, pbytes);
        bind bm[] = {IN("partials", partials0, pbytes), OUT("mean", mean, c * 4), OUT("invstd", invstd, c * 4),
                     INOUT("running_mean", rm_in, rm, c * 4), INOUT("running_var", rv_in, rv, c * 4)};
        hm[si] = launch(si, &s, km, bm, 5);
        double e_invstd = 0, e_rv = 0;
        for (int ch = 0; ch < c; ch++) {
            double e = diff(invstd[ch], invstd_r[ch]) / invstd_r[ch];
            if (e > e_invstd) e_invstd = e;
            e = diff(rv[ch], rv_r[ch]) / rv_r[ch];
            if (e > e_rv) e_rv = e;
        }
        expect("bn_stats_part+merge", "mean (rel. to max|y|)", w2, max_diff(mean, mean_r, c) / scale_of(ymax),
               tol_mean);
        expect("bn_stats_part+merge", "invstd (relative)", w2, e_invstd, tol_invstd);
        expect("bn_stats_part+merge", "running_mean (rel. to max|y|)", w2, max_diff(rm, rm_r, c) / scale_of(ymax + 1),
               tol_mean + 4 * U);
        expect("bn_stats_part+merge", "running_var (relative)", w2, e_rv, 2 * tol_invstd + 8 * U);
    }
    same_outputs_all(s.k[kp].name, hp);
    same_outputs_all(s.k[km].name, hm);

    /* ---- backward: sums per slice, then dy ---- */
    uint32_t *mask_in = random_mask(count), *mask_in_h = xmalloc(words * 4);
    mask_relayout(mask_in_h, mask_in, n, c, hw, 1);
    float *relu_out = rand_floats(count, -1, 1);
    for (size_t i = 0; i < count; i += 7) relu_out[i] = 0.0f;
    float *relu_out_h = nhwc_copy(relu_out, 4, n, c, hw);
    uint16_t *y16 = xmalloc(count * 2);
    float *y16f = xmalloc(count * 4), *absdout = xmalloc(count * 4), *ymirror = xmalloc(count * 4);
    for (size_t i = 0; i < count; i++) {
        y16[i] = bf16_round_ref(y[i]);
        y16f[i] = bf16_to_float_ref(y16[i]);
        absdout[i] = fabsf(dout[i]);
    }
    uint16_t *y16_h = nhwc_copy(y16, 2, n, c, hw);
    double *dg_r = xmalloc(c * 8), *db_r = xmalloc(c * 8), *dy_r = xmalloc(count * 8), *dres_r = xmalloc(count * 8);
    double *abs_db = xmalloc(c * 8), *abs_dg = xmalloc(c * 8), *dummy = xmalloc(count * 8);
    float *dg = xmalloc(c * 4), *db = xmalloc(c * 4), *dy = xmalloc(count * 4), *dres = xmalloc(count * 4);
    float *dy_k = xmalloc(count * 4), *dres_k = xmalloc(count * 4);
    const size_t sbytes = (size_t)slices * c * 2 * 4;
    float *sums = xmalloc(sbytes), *sums0 = xmalloc(sbytes);
    for (int ci = 0; ci < 3; ci++) {
        const int maskm = combos[ci][0], bf16 = combos[ci][1], res = combos[ci][2];
        const gen_kernel *kd = &s.k[kdx[ci]];
        const float *yk = bf16 ? y16f : y;
        bn_backward_ref(n, c, hw, maskm, dout, mask_in, relu_out, yk, mean, invstd, gamma, dg_r, db_r, dy_r,
                        res ? dres_r : NULL);
        for (size_t i = 0; i < count; i++) {
            int ch = (int)((i / hw) % c);
            ymirror[i] = mean[ch] + fabsf(yk[i] - mean[ch]);
        }
        bn_backward_ref(n, c, hw, maskm, absdout, mask_in, relu_out, ymirror, mean, invstd, gamma, abs_dg, abs_db,
                        dummy, NULL);
        /* The sums: per thread ceil(rows_max/PG) terms and a log2(PG) tree per slice (as
         * test_bn), then the dy pass's merge: ceil(S/PG) partials per group in order and
         * the same log2(PG) tree. */
        const int bpg = source_constant(kd, "PG");
        CHECK(bpg == source_constant(&s.k[ksum[ci]], "PG") && kd->grid[1] == (unsigned)slices &&
                  s.k[ksum[ci]].grid[1] == (unsigned)slices,
              "%s: geometry differs from its sums kernel", kd->name);
        const double bsteps = ceil((double)rows_max / bpg) + log2i(bpg) + ceil((double)slices / bpg) + log2i(bpg);
        const double tol_db = (bsteps + 2) * U, tol_dg = (bsteps + 6) * U, tol_dy = tol_dg + 8 * U;
        double scale_dy = 0;
        for (size_t i = 0; i < count; i++) {
            int ch = (int)((i / hw) % c);
            double xh = fabs((yk[i] - mean[ch]) * (double)invstd[ch]);
            double t = fabs(gamma[ch] * (double)invstd[ch]) * (fabs(dout[i]) + abs_db[ch] / m + xh * abs_dg[ch] / m);
            if (t > scale_dy) scale_dy = t;
        }
        uint64_t hs[SCHEDULES], hd[SCHEDULES];
        for (int si = 0; si < SCHEDULES; si++) {
            const bind mask_bind = maskm == 1   ? (bind)IN("mask", mask_in_h, words * 4)
                                   : maskm == 2 ? (bind)IN("mask", relu_out_h, count * 4)
                                                : (bind)NUL("mask");
            const bind y_bind = bf16 ? (bind)IN("y", y16_h, count * 2) : (bind)IN("y", y_h, count * 4);
            bind bs[] = {
                IN("dout", dout_h, count * 4), mask_bind, y_bind, IN("mean", mean, c * 4), IN("invstd", invstd, c * 4),
                OUT("partials", sums, sbytes)};
            hs[si] = launch(si, &s, ksum[ci], bs, 6);
            if (si == 0) memcpy(sums0, sums, sbytes);
            bind bd[] = {IN("dout", dout_h, count * 4),
                         mask_bind,
                         y_bind,
                         IN("mean", mean, c * 4),
                         IN("invstd", invstd, c * 4),
                         IN("gamma", gamma, c * 4),
                         IN("partials", sums0, sbytes),
                         OUT("dgamma", dg, c * 4),
                         OUT("dbeta", db, c * 4),
                         OUT("dy", dy_k, count * 4),
                         res ? (bind)OUT("dres", dres_k, count * 4) : (bind)NUL("dres")};
            hd[si] = launch(si, &s, kdx[ci], bd, 11);
            relayout(dy, dy_k, 4, n, c, hw, 0);
            if (res) relayout(dres, dres_k, 4, n, c, hw, 0);
            char w2[360];
            snprintf(w2, sizeof w2, "%s %s %s", kd->name, where, schedule_names[si]);
            expect("bn_backward_sums+dx", "dbeta (rel. to sum|dz|)", w2,
                   max_diff(db, db_r, c) / scale_of(max_abs(abs_db, c)), tol_db);
            expect("bn_backward_sums+dx", "dgamma (rel. to sum|dz*xhat|)", w2,
                   max_diff(dg, dg_r, c) / scale_of(max_abs(abs_dg, c)), tol_dg);
            expect("bn_backward_sums+dx", "dy (rel. to its terms)", w2, max_diff(dy, dy_r, count) / scale_of(scale_dy),
                   tol_dy);
            if (res) expect("bn_backward_sums+dx", "dres (exact: dout or 0)", w2, max_diff(dres, dres_r, count), 0);
        }
        same_outputs_all(s.k[ksum[ci]].name, hs);
        same_outputs_all(kd->name, hd);
    }
    printf("%s: sliced statistics and 3 sliced backward variants match, bit-identical under %d schedules\n", where,
           SCHEDULES);
    free(y), free(rm_in), free(rv_in), free(gamma), free(dout), free(y_h), free(dout_h);
    free(mean_r), free(invstd_r), free(rm_r), free(rv_r), free(partials), free(partials0);
    free(mean), free(invstd), free(rm), free(rv);
    free(mask_in), free(mask_in_h), free(relu_out), free(relu_out_h), free(y16), free(y16f), free(absdout),
        free(ymirror);
    free(y16_h), free(dg_r), free(db_r), free(dy_r), free(dres_r), free(abs_db), free(abs_dg), free(dummy);
    free(dg), free(db), free(dy), free(dres), free(dy_k), free(dres_k), free(sums), free(sums0);
    set_free(&s);
}

/* bf16 rounding of every kind of float: random bit patterns (NaN, infinities, subnormals,
 * all exponents) and the edge cases (exact ties of both parities, one ulp either side of
 * a tie, the largest float and the values that round up to infinity, signed zeros). The
 * copy is elementwise (y_bf16[i] from y[i]), so it is compared at the same flat index
 * whatever the layout. */
static void test_bf16_rounding(void)
{
    const int n = 1, c = 3, hw = 349;
    const size_t count = (size_t)n * c * hw;
    kernel_set s;
    set_init(&s, "train_ops_bf16");
    int k = set_add(&s, "bn_apply", "{ N = %d, C = %d, HW = %d, SAVE_BF16 = 1 }", n, c, hw);
    set_compile(&s, 1);
    const uint32_t edges[] = {0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x3f808001u, 0x3f818001u, 0x3f817fffu,
                              0xbf808000u, 0xbf818000u, 0x7f7fffffu, 0x7f7f8000u, 0x7f7f7fffu, 0x7f7effffu,
                              0x7f7e8000u, 0xff7f8000u, 0xff7fffffu, 0x00000000u, 0x80000000u, 0x00000001u,
                              0x00008000u, 0x00018000u, 0x007fffffu, 0x80018000u, 0x7f800000u, 0xff800000u,
                              0x7fc00000u, 0x7f800001u, 0xffbfffffu, 0x7fffffffu, 0x00800000u, 0x3f7fffffu};
    const size_t nedges = sizeof edges / sizeof edges[0];
    float *y = xmalloc(count * 4);
    for (size_t i = 0; i < count; i++) {
        uint32_t bits = i < nedges ? edges[i] : rand_u32();
        memcpy(&y[i], &bits, 4);
    }
    float *ones = xmalloc(c * 4), *zeros = xmalloc(c * 4), *out = xmalloc(count * 4);
    for (int i = 0; i < c; i++) ones[i] = 1, zeros[i] = 0;
    uint16_t *ybf = xmalloc(count * 2);
    uint64_t hash[2];
    for (int si = 0; si < 2; si++) {
        bind b[] = {IN("y", y, count * 4),
                    IN("mean", zeros, c * 4),
                    IN("invstd", ones, c * 4),
                    IN("gamma", ones, c * 4),
                    IN("beta", zeros, c * 4),
                    NUL("residual"),
                    OUT("out", out, count * 4),
                    NUL("mask"),
                    OUT("y_bf16", ybf, count * 2),
                    NUL("running_mean"),
                    NUL("running_var")};
        hash[si] = launch(si, &s, k, b, 11);
        for (size_t i = 0; i < count; i++) {
            uint32_t bits;
            memcpy(&bits, &y[i], 4);
            CHECK(ybf[i] == bf16_round_ref(y[i]), "bf16 of 0x%08x: kernel 0x%04x, reference 0x%04x", bits, ybf[i],
                  bf16_round_ref(y[i]));
        }
        expect("bn_apply", "y_bf16 of every kind of float (exact)", schedule_names[si], 0, 0);
    }
    same_outputs(s.k[k].name, hash);
    printf("bf16 rounding of %zu floats (random bit patterns and %zu edge cases) matches exactly\n", count, nedges);
    /* The reference rounding itself, on values whose rounding is known. */
    const struct {
        uint32_t in;
        uint16_t want;
    } known[] = {{0x3f808000u, 0x3f80}, {0x3f818000u, 0x3f82}, {0x3f808001u, 0x3f81}, {0x3f807fffu, 0x3f80},
                 {0x7f7f8000u, 0x7f80}, {0x7f7f7fffu, 0x7f7f}, {0xff7f8000u, 0xff80}, {0x80000000u, 0x8000},
                 {0x7f800000u, 0x7f80}, {0x00008000u, 0x0000}, {0x00018000u, 0x0002}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        float f;
        memcpy(&f, &known[i].in, 4);
        CHECK(bf16_round_ref(f) == known[i].want, "bf16_round_ref(0x%08x) = 0x%04x, want 0x%04x", known[i].in,
              bf16_round_ref(f), known[i].want);
    }
    free(y), free(ones), free(zeros), free(out), free(ybf);
    set_free(&s);
}

/* ================= pooling ================= */

static void test_maxpool(int n, int c, int h, int w, int r, int stride, int pad, int ties)
{
    kernel_set s;
    set_init(&s, "train_ops_maxpool_n%dc%dh%dw%d_r%ds%dp%d", n, c, h, w, r, stride, pad);
    const char *fmt = "{ N = %d, C = %d, H = %d, W = %d, R = %d, STRIDE = %d, PAD = %d }";
    int kf = set_add(&s, "maxpool_fwd", fmt, n, c, h, w, r, stride, pad);
    int kb = set_add(&s, "maxpool_bwd", fmt, n, c, h, w, r, stride, pad);
    set_compile(&s, 1);
    int p, q;
    maxpool_out_size(h, w, r, stride, pad, &p, &q);
    const size_t in_count = (size_t)n * c * h * w, out_count = (size_t)n * c * p * q;
    char where[160];
    snprintf(where, sizeof where, "N%d C%d %dx%d R%d stride %d pad %d -> %dx%d%s", n, c, h, w, r, stride, pad, p, q,
             ties ? " (ties, a NaN)" : "");
    /* ties: few distinct values, so windows hold equal maxima (the first must win); one NaN. */
    float *x = xmalloc(in_count * 4);
    for (size_t i = 0; i < in_count; i++) x[i] = ties ? (float)(int)uniform(-3, 3) : uniform(-4, 4);
    if (ties) x[in_count / 2] = NAN;
    float *y_r = xmalloc(out_count * 4), *y = xmalloc(out_count * 4), *dy = rand_floats(out_count, -1, 1);
    uint8_t *arg_r = xmalloc(out_count), *arg = xmalloc(out_count);
    double *dx_r = xmalloc(in_count * 8);
    float *dx = xmalloc(in_count * 4);
    maxpool_fwd_ref(n, c, h, w, r, stride, pad, x, y_r, arg_r);
    maxpool_bwd_ref(n, c, h, w, r, stride, pad, dy, arg_r, dx_r);
    /* The kernels' NHWC tensors: inputs copied from the NCHW ones, outputs (*_k) mapped back
     * to NCHW (y, arg, dx) for the comparisons. */
    float *x_h = nhwc_copy(x, 4, n, c, h * w), *dy_h = nhwc_copy(dy, 4, n, c, p * q);
    uint8_t *arg_r_h = nhwc_copy(arg_r, 1, n, c, p * q), *arg_k = xmalloc(out_count);
    float *y_k = xmalloc(out_count * 4), *dx_k = xmalloc(in_count * 4);
    /* dx: at most K = ceil(R/stride)^2 windows cover an element; their sum in fp32 errs by
     * at most (K-1)*u*sum|dy| <= K*(K-1)*u*max|dy| (0 when windows do not overlap: exact). */
    const int kw = (r + stride - 1) / stride, kk = kw * kw;
    const double tol_dx = kk * (kk - 1) * U;
    uint64_t hash[2];
    for (int si = 0; si < 2; si++) {
        char w2[200];
        snprintf(w2, sizeof w2, "%s %s", where, schedule_names[si]);
        bind bf[] = {IN("x", x_h, in_count * 4), OUT("y", y_k, out_count * 4), OUT("argmax", arg_k, out_count)};
        hash[si] = launch(si, &s, kf, bf, 3);
        relayout(y, y_k, 4, n, c, p * q, 0);
        relayout(arg, arg_k, 1, n, c, p * q, 0);
        for (size_t i = 0; i < out_count; i++) {
            CHECK(memcmp(&y[i], &y_r[i], 4) == 0 || (isnan(y[i]) && isnan(y_r[i])), "%s: y[%zu] = %g, reference %g", w2,
                  i, y[i], y_r[i]);
            CHECK(arg[i] == arg_r[i], "%s: argmax[%zu] = %d, reference %d", w2, i, arg[i], arg_r[i]);
        }
        expect("maxpool_fwd", "y and argmax (exact)", w2, 0, 0);
        bind bb[] = {IN("dy", dy_h, out_count * 4), IN("argmax", arg_r_h, out_count), OUT("dx", dx_k, in_count * 4)};
        uint64_t hb = launch(si, &s, kb, bb, 3);
        relayout(dx, dx_k, 4, n, c, h * w, 0);
        hash[si] ^= hb * 31;
        expect("maxpool_bwd", "dx (rel. to max|dy|)", w2,
               max_diff(dx, dx_r, in_count) / scale_of(max_absf(dy, out_count)), tol_dx);
    }
    same_outputs(s.k[kf].name, hash);
    printf("maxpool %s: fwd exact, bwd matches\n", where);
    free(x), free(y_r), free(y), free(dy), free(arg_r), free(arg), free(dx_r), free(dx);
    free(x_h), free(dy_h), free(arg_r_h), free(arg_k), free(y_k), free(dx_k);
    set_free(&s);
}

/* ================= ReLU (the standalone lean form) ================= */

/* relu_mask_fwd / relu_mask_bwd over count elements (flat: any layout), with NaN, -0,
 * infinities and exact zeros among the inputs: everything is a selection or a copy, so y,
 * the mask (bits past count 0) and dx must match the reference bit for bit. */
static void test_relu_mask(size_t count)
{
    kernel_set s;
    set_init(&s, "train_ops_relu_count%zu", count);
    int kf = set_add(&s, "relu_mask_fwd", "{ COUNT = %zu }", count);
    int kb = set_add(&s, "relu_mask_bwd", "{ COUNT = %zu }", count);
    set_compile(&s, 1);
    const size_t words = (count + 31) / 32;
    float *x = rand_floats(count, -1, 1), *dy = rand_floats(count, -1, 1);
    const float specials[] = {NAN, -0.0f, 0.0f, INFINITY, -INFINITY, 1e-40f, -1e-40f};
    for (size_t i = 0; i < sizeof specials / sizeof *specials && i * 7 < count; i++) x[i * 7] = specials[i];
    if (count > 3) dy[3] = NAN;
    float *y_r = xmalloc(count * 4), *dx_r = xmalloc(count * 4), *y = xmalloc(count * 4), *dx = xmalloc(count * 4);
    uint32_t *mask_r = xmalloc(words * 4), *mask = xmalloc(words * 4);
    relu_mask_fwd_ref(count, x, y_r, mask_r);
    relu_mask_bwd_ref(count, dy, mask_r, dx_r);
    char where[64];
    uint64_t hash[2];
    for (int si = 0; si < 2; si++) {
        snprintf(where, sizeof where, "count %zu %s", count, schedule_names[si]);
        bind bf[] = {IN("x", x, count * 4), OUT("y", y, count * 4), OUT("mask", mask, words * 4)};
        hash[si] = launch(si, &s, kf, bf, 3);
        CHECK(memcmp(mask, mask_r, words * 4) == 0, "%s: the mask differs from the reference", where);
        for (size_t i = 0; i < count; i++)
            CHECK(memcmp(&y[i], &y_r[i], 4) == 0 || (isnan(y[i]) && isnan(y_r[i])), "%s: y[%zu] = %g, reference %g",
                  where, i, y[i], y_r[i]);
        expect("relu_mask_fwd", "y and mask (exact)", where, 0, 0);
        bind bb[] = {IN("dy", dy, count * 4), IN("mask", mask_r, words * 4), OUT("dx", dx, count * 4)};
        hash[si] ^= launch(si, &s, kb, bb, 3) * 31;
        for (size_t i = 0; i < count; i++)
            CHECK(memcmp(&dx[i], &dx_r[i], 4) == 0 || (isnan(dx[i]) && isnan(dx_r[i])),
                  "%s: dx[%zu] = %g, reference %g", where, i, dx[i], dx_r[i]);
        expect("relu_mask_bwd", "dx (exact)", where, 0, 0);
    }
    same_outputs(s.k[kf].name, hash);
    printf("relu_mask count %zu: y, mask, dx exact\n", count);
    free(x), free(dy), free(y_r), free(dx_r), free(y), free(dx), free(mask_r), free(mask);
    set_free(&s);
}

static void test_avgpool(int n, int c, int hw)
{
    kernel_set s;
    set_init(&s, "train_ops_avgpool_n%dc%dhw%d", n, c, hw);
    int kf = set_add(&s, "avgpool_fwd", "{ N = %d, C = %d, HW = %d }", n, c, hw);
    int kb = set_add(&s, "avgpool_bwd", "{ N = %d, C = %d, HW = %d }", n, c, hw);
    set_compile(&s, 1);
    const size_t rows = (size_t)n * c, count = rows * hw;
    char where[120];
    snprintf(where, sizeof where, "N%d C%d HW%d", n, c, hw);
    float *x = rand_floats(count, -2, 2), *dy = rand_floats(rows, -1, 1), *y = xmalloc(rows * 4),
          *dx = xmalloc(count * 4);
    float *absx = xmalloc(count * 4);
    for (size_t i = 0; i < count; i++) absx[i] = fabsf(x[i]);
    double *y_r = xmalloc(rows * 8), *ya_r = xmalloc(rows * 8), *dx_r = xmalloc(count * 8);
    float *x_h = nhwc_copy(x, 4, n, c, hw), *dx_k = xmalloc(count * 4); /* the kernels' NHWC tensors */
    avgpool_fwd_ref(n, c, hw, x, y_r);
    avgpool_fwd_ref(n, c, hw, absx, ya_r);
    avgpool_bwd_ref(n, c, hw, dy, dx_r);
    /* y: each of 32 pixel groups sums ceil(HW/32) values of its channel in order, a 5-level
     * tree over the groups, one division: relative to max(sum|x|/HW). */
    CHECK(source_constant(&s.k[kf], "PG") == 32, "%s: the tolerance assumes 32 pixel groups", s.k[kf].name);
    const double tol_y = (ceil(hw / 32.0) + 5 + 1) * U;
    uint64_t hash[2];
    for (int si = 0; si < 2; si++) {
        char w2[160];
        snprintf(w2, sizeof w2, "%s %s", where, schedule_names[si]);
        bind bf[] = {IN("x", x_h, count * 4), OUT("y", y, rows * 4)};
        hash[si] = launch(si, &s, kf, bf, 2);
        expect("avgpool_fwd", "y (rel. to max mean|x|)", w2, max_diff(y, y_r, rows) / scale_of(max_abs(ya_r, rows)),
               tol_y);
        bind bb[] = {IN("dy", dy, rows * 4), OUT("dx", dx_k, count * 4)};
        hash[si] ^= launch(si, &s, kb, bb, 2) * 31;
        relayout(dx, dx_k, 4, n, c, hw, 0);
        /* dx = dy/HW: one correctly rounded division: within u of each element. */
        double e = 0;
        for (size_t i = 0; i < count; i++) {
            double d = diff(dx[i], dx_r[i]) / scale_of(fabs(dx_r[i]));
            if (d > e) e = d;
        }
        expect("avgpool_bwd", "dx (relative, per element)", w2, e, U);
    }
    same_outputs(s.k[kf].name, hash);
    printf("avgpool %s: fwd and bwd match\n", where);
    free(x), free(dy), free(y), free(dx), free(absx), free(y_r), free(ya_r), free(dx_r), free(x_h), free(dx_k);
    set_free(&s);
}

/* ================= fully connected ================= */

static void test_fc(int n, int in, int out)
{
    kernel_set s;
    set_init(&s, "train_ops_fc_n%din%dout%d", n, in, out);
    const char *fmt = "{ N = %d, IN = %d, OUT = %d }";
    int kf = set_add(&s, "fc_fwd", fmt, n, in, out);
    int kd = set_add(&s, "fc_bwd_data", fmt, n, in, out);
    int kw = set_add(&s, "fc_bwd_weight", fmt, n, in, out);
    set_compile(&s, 1);
    char where[120];
    snprintf(where, sizeof where, "N%d IN%d OUT%d", n, in, out);
    const size_t nx = (size_t)n * in, nw = (size_t)out * in, ny = (size_t)n * out;
    float *x = rand_floats(nx, -1, 1), *w = rand_floats(nw, -0.5f, 0.5f), *b = rand_floats(out, -1, 1);
    float *dy = rand_floats(ny, -1, 1);
    float *ax = xmalloc(nx * 4), *aw = xmalloc(nw * 4), *ab = xmalloc(out * 4), *ady = xmalloc(ny * 4);
    for (size_t i = 0; i < nx; i++) ax[i] = fabsf(x[i]);
    for (size_t i = 0; i < nw; i++) aw[i] = fabsf(w[i]);
    for (int i = 0; i < out; i++) ab[i] = fabsf(b[i]);
    for (size_t i = 0; i < ny; i++) ady[i] = fabsf(dy[i]);
    double *y_r = xmalloc(ny * 8), *dx_r = xmalloc(nx * 8), *dw_r = xmalloc(nw * 8), *db_r = xmalloc(out * 8);
    double *ya = xmalloc(ny * 8), *dxa = xmalloc(nx * 8), *dwa = xmalloc(nw * 8), *dba = xmalloc(out * 8);
    fc_fwd_ref(n, in, out, x, w, b, y_r);
    fc_bwd_data_ref(n, in, out, dy, w, dx_r);
    fc_bwd_weight_ref(n, in, out, dy, x, dw_r, db_r);
    /* The same on absolute values: sum|terms| of every output, the scale of its error. */
    fc_fwd_ref(n, in, out, ax, aw, ab, ya);
    fc_bwd_data_ref(n, in, out, ady, aw, dxa);
    fc_bwd_weight_ref(n, in, out, ady, ax, dwa, dba);
    float *y = xmalloc(ny * 4), *dx = xmalloc(nx * 4), *dw = xmalloc(nw * 4), *db = xmalloc(out * 4);
    uint64_t hash[2];
    for (int si = 0; si < 2; si++) {
        char w2[160];
        snprintf(w2, sizeof w2, "%s %s", where, schedule_names[si]);
        bind bf[] = {IN("x", x, nx * 4), IN("w", w, nw * 4), IN("b", b, out * 4), OUT("y", y, ny * 4)};
        hash[si] = launch(si, &s, kf, bf, 4);
        bind bd[] = {IN("dy", dy, ny * 4), IN("w", w, nw * 4), OUT("dx", dx, nx * 4)};
        hash[si] ^= launch(si, &s, kd, bd, 3) * 31;
        bind bw[] = {IN("dy", dy, ny * 4), IN("x", x, nx * 4), OUT("dw", dw, nw * 4), OUT("db", db, out * 4)};
        hash[si] ^= launch(si, &s, kw, bw, 4) * 961;
        /* Dot products accumulated in order with fmaf: a length-K sum errs by at most
         * (K+1)*u*sum|terms| (one more for the bias). */
        expect("fc_fwd", "y (rel. to sum|terms|)", w2, max_diff(y, y_r, ny) / scale_of(max_abs(ya, ny)), (in + 2) * U);
        expect("fc_bwd_data", "dx (rel. to sum|terms|)", w2, max_diff(dx, dx_r, nx) / scale_of(max_abs(dxa, nx)),
               (out + 1) * U);
        expect("fc_bwd_weight", "dw (rel. to sum|terms|)", w2, max_diff(dw, dw_r, nw) / scale_of(max_abs(dwa, nw)),
               (n + 1) * U);
        expect("fc_bwd_weight", "db (rel. to sum|dy|)", w2, max_diff(db, db_r, out) / scale_of(max_abs(dba, out)),
               (n + 1) * U);
    }
    same_outputs(s.k[kf].name, hash);
    printf("fc %s (fc_fwd grid %ux%u): fwd, bwd_data, bwd_weight match\n", where, s.k[kf].grid[0], s.k[kf].grid[1]);
    free(x), free(w), free(b), free(dy), free(ax), free(aw), free(ab), free(ady);
    free(y_r), free(dx_r), free(dw_r), free(db_r), free(ya), free(dxa), free(dwa), free(dba);
    free(y), free(dx), free(dw), free(db);
    set_free(&s);
}

/* ================= loss ================= */

/* bad_label 1: the last label is -1; 2: it is CLASSES. */
static void test_softmax(int n, int classes, int bad_label)
{
    kernel_set s;
    set_init(&s, "train_ops_softmax_n%dk%d", n, classes);
    int k = set_add(&s, "softmax_ce", "{ N = %d, CLASSES = %d }", n, classes);
    set_compile(&s, 1);
    char where[120];
    snprintf(where, sizeof where, "N%d CLASSES %d%s", n, classes, bad_label ? " (a label out of range)" : "");
    const size_t count = (size_t)n * classes;
    /* Logits in [-8, 8]; row 0 shifted by +100, where exp without the max would overflow. */
    float *z = rand_floats(count, -8, 8);
    for (int j = 0; j < classes; j++) z[j] += 100.0f;
    int32_t *labels = xmalloc(n * 4);
    for (int i = 0; i < n; i++) labels[i] = (int32_t)(rand_u32() % (uint32_t)classes);
    if (bad_label) labels[n - 1] = bad_label == 1 ? -1 : classes;
    double *d_r = xmalloc(count * 8);
    float *d = xmalloc(count * 4), loss[2] = {0, 0};
    int correct_r = 0;
    /* A few rows with the label at the maximum, so the count of correct rows is not 0. */
    for (int i = 0; i < n; i += 2) {
        float *row = z + (size_t)i * classes;
        int top = 0;
        for (int j = 1; j < classes; j++) top = row[j] > row[top] ? j : top;
        if (labels[i] >= 0 && labels[i] < classes) labels[i] = top;
    }
    const double loss_r = softmax_ce_ref(n, classes, z, labels, d_r, &correct_r);
    /* The loss of a row: log(sum) + max - z[label], the sum of CLASSES positive terms
     * (ceil(CLASSES/32) per lane, a 5-level tree); then a mean over the rows (a tree of
     * depth log2(512)). Relative to the largest |log sum| + |max| + |z[label]|. */
    double loss_scale = 0;
    for (int i = 0; i < n; i++) {
        const float *row = z + (size_t)i * classes;
        double top = row[0], sum = 0;
        for (int j = 1; j < classes; j++) top = row[j] > top ? row[j] : top;
        for (int j = 0; j < classes; j++) sum += exp(row[j] - top);
        int l = labels[i] < 0 ? 0 : labels[i] >= classes ? classes - 1 : labels[i];
        double t = fabs(log(sum)) + fabs(top) + fabs(row[l]);
        if (t > loss_scale) loss_scale = t;
    }
    const double tol_loss = (ceil(classes / 32.0) + 5 + 9 + 8) * U;
    /* dlogits = (p - onehot)/N with p = exp(z - max)/sum: the sum's error plus ~4 roundings
     * (expf is within 2 ulp), relative to 1/N, the largest |dlogits| can be. */
    const double tol_d = (ceil(classes / 32.0) + 5 + 8) * U;
    uint64_t hash[2];
    for (int si = 0; si < 2; si++) {
        char w2[200];
        snprintf(w2, sizeof w2, "%s %s", where, schedule_names[si]);
        bind b[] = {IN("logits", z, count * 4), IN("labels", labels, n * 4), OUT("loss", loss, 8),
                    OUT("dlogits", d, count * 4)};
        hash[si] = launch(si, &s, k, b, 4);
        if (bad_label) {
            CHECK(isnan(loss[0]), "%s: loss %g, want NaN for a label out of range", w2, loss[0]);
            CHECK(isnan(loss_r), "reference loss %g, want NaN", loss_r);
        } else {
            expect("softmax_ce", "loss (rel. to the row terms)", w2, diff(loss[0], loss_r) / scale_of(loss_scale),
                   tol_loss);
        }
        CHECK(loss[1] == (float)correct_r, "%s: %g rows predicted correctly, the reference counts %d", w2, loss[1],
              correct_r);
        expect("softmax_ce", "dlogits (rel. to 1/N)", w2, max_diff(d, d_r, count) * n, tol_d);
    }
    same_outputs(s.k[k].name, hash);
    printf("softmax_ce %s: loss %.7g (reference %.7g), %d correct, and dlogits match\n", where, loss[0], loss_r,
           correct_r);
    free(z), free(labels), free(d_r), free(d);
    set_free(&s);
}

/* The multi-block softmax: softmax_ce_rows (one warp per row) + softmax_ce_reduce, under
 * all SCHEDULES, against the reference with test_softmax's tolerances, and bit for bit
 * against the one-block softmax_ce (same row code, same final additions) where that
 * kernel takes the batch (N <= 4096). bad_label as test_softmax. */
static void test_softmax_multi(int n, int classes, int bad_label)
{
    kernel_set s;
    set_init(&s, "train_ops_softmax_multi_n%dk%d", n, classes);
    const int kr = set_add(&s, "softmax_ce_rows", "{ N = %d, CLASSES = %d }", n, classes);
    const int kd = set_add(&s, "softmax_ce_reduce", "{ N = %d }", n);
    const int k1 = n <= 4096 ? set_add(&s, "softmax_ce", "{ N = %d, CLASSES = %d }", n, classes) : -1;
    set_compile(&s, 1);
    const int row_warps = (int)s.k[kr].block[0] / 32;
    CHECK(s.k[kr].grid[0] == (unsigned)((n + row_warps - 1) / row_warps) && s.k[kr].grid[0] > 1,
          "%s: grid %u for %d rows of %d per block", s.k[kr].name, s.k[kr].grid[0], n, row_warps);
    char where[160];
    snprintf(where, sizeof where, "N%d CLASSES %d (%u blocks, reduction of %u threads)%s", n, classes, s.k[kr].grid[0],
             s.k[kd].block[0], bad_label ? " (a label out of range)" : "");
    const size_t count = (size_t)n * classes;
    float *z = rand_floats(count, -8, 8);
    for (int j = 0; j < classes; j++) z[j] += 100.0f;
    int32_t *labels = xmalloc(n * 4);
    for (int i = 0; i < n; i++) labels[i] = (int32_t)(rand_u32() % (uint32_t)classes);
    for (int i = 0; i < n; i += 2) {
        float *row = z + (size_t)i * classes;
        int top = 0;
        for (int j = 1; j < classes; j++) top = row[j] > row[top] ? j : top;
        labels[i] = top;
    }
    if (bad_label) labels[n / 2] = bad_label == 1 ? -1 : classes;
    double *d_r = xmalloc(count * 8);
    float *d = xmalloc(count * 4), *d1 = xmalloc(count * 4), *rows = xmalloc((size_t)n * 8),
          *rows0 = xmalloc((size_t)n * 8);
    float loss[2] = {0, 0}, loss1[2] = {0, 0};
    int correct_r = 0;
    const double loss_r = softmax_ce_ref(n, classes, z, labels, d_r, &correct_r);
    double loss_scale = 0;
    for (int i = 0; i < n; i++) {
        const float *row = z + (size_t)i * classes;
        double top = row[0], sum = 0;
        for (int j = 1; j < classes; j++) top = row[j] > top ? row[j] : top;
        for (int j = 0; j < classes; j++) sum += exp(row[j] - top);
        int l = labels[i] < 0 ? 0 : labels[i] >= classes ? classes - 1 : labels[i];
        double t = fabs(log(sum)) + fabs(top) + fabs(row[l]);
        if (t > loss_scale) loss_scale = t;
    }
    /* As test_softmax: a row's loss, then the mean: ceil(N/T) in order per thread and a
     * log2(T)-level tree over the reduction's T threads. */
    const double tol_loss =
        (ceil(classes / 32.0) + 5 + ceil((double)n / s.k[kd].block[0]) + log2i((int)s.k[kd].block[0]) + 8) * U;
    const double tol_d = (ceil(classes / 32.0) + 5 + 8) * U;
    uint64_t hr[SCHEDULES], hd[SCHEDULES];
    for (int si = 0; si < SCHEDULES; si++) {
        char w2[240];
        snprintf(w2, sizeof w2, "%s %s", where, schedule_names[si]);
        bind br[] = {IN("logits", z, count * 4), IN("labels", labels, n * 4), OUT("rows", rows, (size_t)n * 8),
                     OUT("dlogits", d, count * 4)};
        hr[si] = launch(si, &s, kr, br, 4);
        if (si == 0) memcpy(rows0, rows, (size_t)n * 8);
        bind bd[] = {IN("rows", rows0, (size_t)n * 8), OUT("loss", loss, 8)};
        hd[si] = launch(si, &s, kd, bd, 2);
        if (bad_label) {
            CHECK(isnan(loss[0]) && isnan(loss_r), "%s: loss %g (reference %g), want NaN", w2, loss[0], loss_r);
        } else {
            expect("softmax_ce_rows+reduce", "loss (rel. to the row terms)", w2,
                   diff(loss[0], loss_r) / scale_of(loss_scale), tol_loss);
        }
        CHECK(loss[1] == (float)correct_r, "%s: %g rows predicted correctly, the reference counts %d", w2, loss[1],
              correct_r);
        expect("softmax_ce_rows+reduce", "dlogits (rel. to 1/N)", w2, max_diff(d, d_r, count) * n, tol_d);
    }
    same_outputs_all(s.k[kr].name, hr);
    same_outputs_all(s.k[kd].name, hd);
    if (k1 >= 0) {
        bind b1[] = {IN("logits", z, count * 4), IN("labels", labels, n * 4), OUT("loss", loss1, 8),
                     OUT("dlogits", d1, count * 4)};
        launch(0, &s, k1, b1, 4);
        CHECK(memcmp(loss, loss1, 8) == 0 && memcmp(d, d1, count * 4) == 0,
              "%s: the multi-block form differs from softmax_ce's bits (loss %a vs %a)", where, loss[0], loss1[0]);
    }
    printf("softmax_ce_rows+reduce %s: loss %.7g (reference %.7g), %d correct, dlogits match%s\n", where, loss[0],
           loss_r, correct_r, k1 >= 0 ? ", bit-identical to softmax_ce" : "");
    free(z), free(labels), free(d_r), free(d), free(d1), free(rows), free(rows0);
    set_free(&s);
}

/* ================= optimizer ================= */

static void test_sgd(int count, int first_step)
{
    kernel_set s;
    set_init(&s, "train_ops_sgd_count%d", count);
    int k = set_add(&s, "sgd", "{ COUNT = %d }", count);
    set_compile(&s, 1);
    char where[120];
    snprintf(where, sizeof where, "COUNT %d%s", count, first_step ? " (first step: buf = 0)" : "");
    float *p = rand_floats(count, -1, 1), *g = rand_floats(count, -0.1f, 0.1f), *buf = rand_floats(count, -0.2f, 0.2f);
    if (first_step) memset(buf, 0, (size_t)count * 4);
    const float lr = 0.1f, momentum = 0.9f, wd = 5e-4f;
    double *p_r = xmalloc((size_t)count * 8), *buf_r = xmalloc((size_t)count * 8);
    sgd_ref((size_t)count, p, g, buf, lr, momentum, wd, p_r, buf_r);
    /* buf = m*buf + (g + wd*p): 4 roundings, relative to the largest |m*buf| + |g| + |wd*p|;
     * p - lr*buf: 2 more, relative to the largest |p| + |lr*buf|. */
    double sb = 0, sp = 0;
    for (int i = 0; i < count; i++) {
        double t = fabs(momentum * buf[i]) + fabs(g[i]) + fabs(wd * p[i]);
        if (t > sb) sb = t;
        if (fabs(p[i]) + lr * t > sp) sp = fabs(p[i]) + lr * t;
    }
    float *p_k = xmalloc((size_t)count * 4), *buf_k = xmalloc((size_t)count * 4);
    uint64_t hash[2];
    for (int si = 0; si < 2; si++) {
        char w2[160];
        snprintf(w2, sizeof w2, "%s %s", where, schedule_names[si]);
        bind b[] = {INOUT("params", p, p_k, (size_t)count * 4),
                    IN("grads", g, (size_t)count * 4),
                    INOUT("momentum_buf", buf, buf_k, (size_t)count * 4),
                    {"lr", NULL, NULL, 0, &lr},
                    {"momentum", NULL, NULL, 0, &momentum},
                    {"weight_decay", NULL, NULL, 0, &wd}};
        hash[si] = launch(si, &s, k, b, 6);
        expect("sgd", "momentum_buf", w2, max_diff(buf_k, buf_r, count) / scale_of(sb), 6 * U);
        expect("sgd", "params", w2, max_diff(p_k, p_r, count) / scale_of(sp), 8 * U);
    }
    same_outputs(s.k[k].name, hash);
    printf("sgd %s: params and momentum match\n", where);
    free(p), free(g), free(buf), free(p_r), free(buf_r), free(p_k), free(buf_k);
    set_free(&s);
}

/* ================= activation storage in bf16 (ACT_BF16 = 1) =================
 * The ACT_BF16 kernels read and write activations as bf16 bits and compute in fp32. Each is
 * checked against the same C reference, run on the bf16 values the kernel reads (inputs
 * rounded to bf16, then widened), so that the reference and the kernel start from the same
 * numbers: every fp32 tolerance above applies unchanged to the fp32 results (statistics,
 * dgamma/dbeta, avgpool_fwd's y). bf16 results are checked with bf16_outputs below: the fp32
 * tolerance, then the single final rounding, accounted exactly. Besides, each kernel must
 * give the bits its fp32 form gives on the widened inputs (rounded once where it stores
 * bf16): the storage option changes loads and stores only. */

#define U_BF16 (1.0 / 256.0) /* bf16 unit roundoff: 8 significant bits, |bf16(x) - x| <= 2^-8 |x| */

/* bf16 bits of each float, and the values they hold widened back to float. */
static uint16_t *bf16_bits(const float *x, size_t n)
{
    uint16_t *b = xmalloc(n * 2);
    for (size_t i = 0; i < n; i++) b[i] = bf16_round_ref(x[i]);
    return b;
}
static float *bf16_widened(const uint16_t *b, size_t n)
{
    float *x = xmalloc(n * 4);
    for (size_t i = 0; i < n; i++) x[i] = bf16_to_float_ref(b[i]);
    return x;
}

/* bf16 outputs k (bits, mapped to the reference's layout) against the double reference r of
 * the same bf16-valued inputs. The kernel computes v in fp32 with |v - r| <= e_i = e_abs +
 * e_rel*|r| (the fp32 check's tolerance, absolute) and stores bf16(v), rounded once to
 * nearest even. Rounding to float and then to bf16 is monotonic and leaves v (a float) in
 * place, so k must lie in [bf16(float(r - e_i)), bf16(float(r + e_i))]: the reference rounded to
 * bf16 with the fp32 tolerance as the only slack (a neighbour of bf16(r) only where r lies
 * within e_i of a rounding midpoint; e_i = 0: exactly bf16(r)). A NaN reference wants a NaN.
 * Returns the largest |k - r| / scale for the summary; by the above it is at most
 * (e + 2^-8 (|r| + e)) / scale, the tolerance the caller states with it. */
static double bf16_outputs(const char *what, const char *where, const uint16_t *k, const double *r, size_t n,
                           double e_abs, double e_rel, double scale)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        const float kv = bf16_to_float_ref(k[i]);
        if (isnan(r[i]) || isnan(kv)) {
            CHECK(isnan(r[i]) && isnan(kv), "%s: %s[%zu] = %g, reference %g", where, what, i, kv, r[i]);
            continue;
        }
        const double e = e_abs + e_rel * fabs(r[i]);
        const float lo = bf16_to_float_ref(bf16_round_ref((float)(r[i] - e)));
        const float hi = bf16_to_float_ref(bf16_round_ref((float)(r[i] + e)));
        CHECK(kv >= lo && kv <= hi,
              "%s: %s[%zu] = %a (0x%04x); the reference %.9g within the fp32 tolerance %.3e "
              "rounds to [%a, %a]",
              where, what, i, kv, k[i], r[i], e, lo, hi);
        const double d = diff(kv, r[i]) / scale;
        if (d > worst) worst = d;
    }
    return worst;
}

/* bits == the bf16 rounding of the floats f (NaN: any NaN), element for element. */
static void bf16_of_floats(const char *what, const char *where, const uint16_t *bits, const float *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const uint16_t want = bf16_round_ref(f[i]);
        CHECK(bits[i] == want || (isnan(f[i]) && isnan(bf16_to_float_ref(bits[i]))),
              "%s: %s[%zu] = 0x%04x, want 0x%04x (the fp32 form's %a rounded)", where, what, i, bits[i], want, f[i]);
    }
}

/* Batch norm with bf16 activations: bn_stats, bn_apply (training RELU/ADD combinations and
 * EVAL), bn_backward (MASK 0/1/2 x RES), and the sliced forms (bn_stats_part + merge,
 * bn_backward_sums + dx with SLICES slices), all ACT_BF16 = 1, plus the fp32 forms of
 * bn_stats, bn_apply and bn_backward on the widened inputs (the bitwise comparisons). */
static void test_bn_act_bf16(int n, int c, int hw, float offset, int slices)
{
    kernel_set s;
    set_init(&s, "train_ops_bn_actbf16_n%dc%dhw%ds%d", n, c, hw, slices);
    const char *shape = "N = %d, C = %d, HW = %d";
    char sh[96];
    snprintf(sh, sizeof sh, shape, n, c, hw);
    const int ks = set_add(&s, "bn_stats", "{ %s, ACT_BF16 = 1 }", sh);
    const int ks32 = set_add(&s, "bn_stats", "{ %s }", sh);
    const int kp = set_add(&s, "bn_stats_part", "{ %s, SLICES = %d, ACT_BF16 = 1 }", sh, slices);
    const int km = set_add(&s, "bn_stats_merge", "{ C = %d, PARTS = %d, M = %d, SHIFT = 1 }", c, slices, n * hw);
    /* bn_apply: RELU, ADD, EVAL */
    const int acombos[5][3] = {{0, 0, 0}, {1, 0, 0}, {0, 1, 0}, {1, 1, 0}, {1, 1, 1}};
    int ka[5], ka32[5];
    for (int i = 0; i < 5; i++) {
        ka[i] = set_add(&s, "bn_apply", "{ %s, RELU = %d, ADD = %d, EVAL = %d, ACT_BF16 = 1 }", sh, acombos[i][0],
                        acombos[i][1], acombos[i][2]);
        ka32[i] = set_add(&s, "bn_apply", "{ %s, RELU = %d, ADD = %d, EVAL = %d }", sh, acombos[i][0], acombos[i][1],
                          acombos[i][2]);
    }
    /* bn_backward: MASK x RES; the fp32 form reads y as bf16 (BF16 = 1) like the ACT_BF16 one.
     * BF16 = 1 spelled out with ACT_BF16 = 1 must be the same kernel. */
    int kb[6], kb32[6];
    for (int i = 0; i < 6; i++) {
        kb[i] = set_add(&s, "bn_backward", "{ %s, MASK = %d, RES = %d, ACT_BF16 = 1 }", sh, i % 3, i / 3);
        kb32[i] = set_add(&s, "bn_backward", "{ %s, MASK = %d, RES = %d, BF16 = 1 }", sh, i % 3, i / 3);
        CHECK(set_add(&s, "bn_backward", "{ %s, MASK = %d, RES = %d, BF16 = 1, ACT_BF16 = 1 }", sh, i % 3, i / 3) ==
                  kb[i],
              "bn_backward: BF16 = 1 with ACT_BF16 = 1 must be the ACT_BF16 kernel");
    }
    const int scombos[3][2] = {{1, 1}, {2, 0}, {0, 0}}; /* MASK, RES */
    int ksum[3], kdx[3];
    for (int i = 0; i < 3; i++) {
        ksum[i] =
            set_add(&s, "bn_backward_sums", "{ %s, SLICES = %d, MASK = %d, ACT_BF16 = 1 }", sh, slices, scombos[i][0]);
        kdx[i] = set_add(&s, "bn_backward_dx", "{ %s, SLICES = %d, MASK = %d, RES = %d, ACT_BF16 = 1 }", sh, slices,
                         scombos[i][0], scombos[i][1]);
    }
    set_compile(&s, 1);

    const size_t count = (size_t)n * c * hw, words = (count + 31) / 32, m = (size_t)n * hw;
    char where[200];
    snprintf(where, sizeof where, "N%d C%d HW%d bf16 activations (offset %g, %d slices)", n, c, hw, offset, slices);
    /* Inputs: NCHW floats rounded to bf16 (bits *16, widened *b), and the kernels' NHWC bits. */
    float *y0 = xmalloc(count * 4);
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++)
            for (int i = 0; i < hw; i++)
                y0[((size_t)b * c + ch) * hw + i] = offset * (1 + ch % 3) + (float)(ch % 4 + 1) * uniform(-1, 1);
    float *res0 = rand_floats(count, -2, 2), *dout0 = rand_floats(count, -1, 1), *relu0 = rand_floats(count, -1, 1);
    for (size_t i = 0; i < count; i += 7) relu0[i] = 0.0f; /* exactly 0: inactive */
    uint16_t *y16 = bf16_bits(y0, count), *res16 = bf16_bits(res0, count), *dout16 = bf16_bits(dout0, count),
             *relu16 = bf16_bits(relu0, count);
    float *yb = bf16_widened(y16, count), *resb = bf16_widened(res16, count), *doutb = bf16_widened(dout16, count),
          *relub = bf16_widened(relu16, count);
    uint16_t *y16_h = nhwc_copy(y16, 2, n, c, hw), *res16_h = nhwc_copy(res16, 2, n, c, hw),
             *dout16_h = nhwc_copy(dout16, 2, n, c, hw), *relu16_h = nhwc_copy(relu16, 2, n, c, hw);
    float *yb_h = nhwc_copy(yb, 4, n, c, hw), *resb_h = nhwc_copy(resb, 4, n, c, hw),
          *doutb_h = nhwc_copy(doutb, 4, n, c, hw), *relub_h = nhwc_copy(relub, 4, n, c, hw);
    float *rm_in = rand_floats(c, -1, 1), *rv_in = rand_floats(c, 0.5f, 2);
    float *gamma = rand_floats(c, 0.5f, 1.5f), *beta = rand_floats(c, -0.5f, 0.5f);
    uint32_t *mask_in = random_mask(count), *mask_in_h = xmalloc(words * 4);
    mask_relayout(mask_in_h, mask_in, n, c, hw, 1);

    /* ---- bn_stats (and bn_stats_part + merge) on bf16 y: test_bn's / test_bn_sliced's
     * tolerances, against the reference on the widened values ---- */
    double *mean_r = xmalloc(c * 8), *invstd_r = xmalloc(c * 8), *rm_r = xmalloc(c * 8), *rv_r = xmalloc(c * 8);
    bn_stats_ref(n, c, hw, 0.1, 1e-5, yb, rm_in, rv_in, mean_r, invstd_r, rm_r, rv_r);
    double kappa = 1, ymax = max_absf(yb, count);
    for (int ch = 0; ch < c; ch++) {
        double sd = sqrt(1.0 / (invstd_r[ch] * invstd_r[ch]) - 1e-5);
        double k = 1 + fabs(mean_r[ch] - yb[(size_t)ch * hw]) / sd;
        if (k > kappa) kappa = k;
    }
    const int pg = source_constant(&s.k[ks], "PG"), ppg = source_constant(&s.k[kp], "PG");
    const int mthreads = (int)s.k[km].block[0], rows_max = (int)((m + slices - 1) / slices);
    const double steps1 = ceil((double)m / pg) + log2i(pg);
    const double steps2 = ceil((double)rows_max / ppg) + log2i(ppg) + ceil((double)slices / mthreads) + log2i(mthreads);
    float *mean = xmalloc(c * 4), *invstd = xmalloc(c * 4), *rm = xmalloc(c * 4), *rv = xmalloc(c * 4);
    float *mean32 = xmalloc(c * 4), *invstd32 = xmalloc(c * 4), *rm32 = xmalloc(c * 4), *rv32 = xmalloc(c * 4);
    const size_t pbytes = ((size_t)slices * c * 3 + c) * 4;
    float *partials = xmalloc(pbytes), *partials0 = xmalloc(pbytes);
    uint64_t hash[SCHEDULES], hash2[SCHEDULES];
    for (int si = 0; si < SCHEDULES; si++) {
        char w2[280];
        snprintf(w2, sizeof w2, "%s %s", where, schedule_names[si]);
        for (int sliced = 0; sliced < 2; sliced++) {
            if (!sliced && si == 2) continue; /* one-pass kernels: two schedules, as test_bn */
            if (sliced) {
                bind bp[] = {IN("y", y16_h, count * 2), OUT("partials", partials, pbytes)};
                hash2[si] = launch(si, &s, kp, bp, 2);
                if (si == 0) memcpy(partials0, partials, pbytes);
                bind bm[] = {IN("partials", partials0, pbytes), OUT("mean", mean, c * 4), OUT("invstd", invstd, c * 4),
                             INOUT("running_mean", rm_in, rm, c * 4), INOUT("running_var", rv_in, rv, c * 4)};
                hash2[si] ^= launch(si, &s, km, bm, 5) * 31;
            } else {
                bind b[] = {IN("y", y16_h, count * 2), OUT("mean", mean, c * 4), OUT("invstd", invstd, c * 4),
                            INOUT("running_mean", rm_in, rm, c * 4), INOUT("running_var", rv_in, rv, c * 4)};
                hash[si] = launch(si, &s, ks, b, 5);
                /* The fp32 kernel on the widened values: the same bits. */
                bind b32[] = {IN("y", yb_h, count * 4), OUT("mean", mean32, c * 4), OUT("invstd", invstd32, c * 4),
                              INOUT("running_mean", rm_in, rm32, c * 4), INOUT("running_var", rv_in, rv32, c * 4)};
                launch(si, &s, ks32, b32, 5);
                CHECK(memcmp(mean, mean32, c * 4) == 0 && memcmp(invstd, invstd32, c * 4) == 0 &&
                          memcmp(rm, rm32, c * 4) == 0 && memcmp(rv, rv32, c * 4) == 0,
                      "%s: bn_stats ACT_BF16 differs from the fp32 kernel on the widened values", w2);
            }
            const double steps = sliced ? steps2 : steps1;
            const double tol_mean = (steps + 4) * U, tol_invstd = (steps + 8) * U * kappa;
            double e_invstd = 0, e_rv = 0;
            for (int ch = 0; ch < c; ch++) {
                double e = diff(invstd[ch], invstd_r[ch]) / invstd_r[ch];
                if (e > e_invstd) e_invstd = e;
                e = diff(rv[ch], rv_r[ch]) / rv_r[ch];
                if (e > e_rv) e_rv = e;
            }
            const char *op = sliced ? "bn_stats_part+merge bf16" : "bn_stats bf16";
            expect(op, "mean (rel. to max|y|)", w2, max_diff(mean, mean_r, c) / scale_of(ymax), tol_mean);
            expect(op, "invstd (relative)", w2, e_invstd, tol_invstd);
            expect(op, "running_mean (rel. to max|y|)", w2, max_diff(rm, rm_r, c) / scale_of(ymax + 1),
                   tol_mean + 4 * U);
            expect(op, "running_var (relative)", w2, e_rv, 2 * tol_invstd + 8 * U);
        }
    }
    same_outputs(s.k[ks].name, hash);
    same_outputs_all(s.k[kp].name, hash2);
    /* The one-pass statistics feed the rest. */
    {
        bind b[] = {IN("y", y16_h, count * 2), OUT("mean", mean, c * 4), OUT("invstd", invstd, c * 4),
                    INOUT("running_mean", rm_in, rm, c * 4), INOUT("running_var", rv_in, rv, c * 4)};
        launch(0, &s, ks, b, 5);
    }

    /* ---- bn_apply: y, residual, out in bf16 ---- */
    double *out_r = xmalloc(count * 8);
    uint16_t *out_k = xmalloc(count * 2), *out = xmalloc(count * 2);
    float *out32_k = xmalloc(count * 4);
    uint32_t *mask_k = xmalloc(words * 4), *mask = xmalloc(words * 4);
    for (int ci = 0; ci < 5; ci++) {
        const int relu = acombos[ci][0], add = acombos[ci][1], eval = acombos[ci][2], want_mask = relu && !eval;
        const gen_kernel *k = &s.k[ka[ci]];
        bn_apply_ref(n, c, hw, relu, eval, 1e-5, yb, mean, invstd, gamma, beta, add ? resb : NULL, rm_in, rv_in, out_r);
        /* test_bn's tolerance: 8u of the largest term |gamma*(y-m)*s| + |beta| + |residual|
         * (the kernel's fp32 value), then the one rounding to bf16 (bf16_outputs). */
        double scale = 0, rmax = max_abs(out_r, count);
        for (size_t i = 0; i < count; i++) {
            int ch = (int)((i / hw) % c);
            double s_ = eval ? 1.0 / sqrt(rv_in[ch] + 1e-5) : invstd[ch], m_ = eval ? rm_in[ch] : mean[ch];
            double t = fabs(gamma[ch] * (yb[i] - m_) * s_) + fabs(beta[ch]) + (add ? fabs(resb[i]) : 0);
            if (t > scale) scale = t;
        }
        const double tol = 8 * U, e = tol * scale;
        for (int si = 0; si < 2; si++) {
            char w2[360];
            snprintf(w2, sizeof w2, "%s %s %s", k->name, where, schedule_names[si]);
            bind b[] = {IN("y", y16_h, count * 2),
                        eval ? (bind)NUL("mean") : (bind)IN("mean", mean, c * 4),
                        eval ? (bind)NUL("invstd") : (bind)IN("invstd", invstd, c * 4),
                        IN("gamma", gamma, c * 4),
                        IN("beta", beta, c * 4),
                        add ? (bind)IN("residual", res16_h, count * 2) : (bind)NUL("residual"),
                        OUT("out", out_k, count * 2),
                        want_mask ? (bind)OUT("mask", mask_k, words * 4) : (bind)NUL("mask"),
                        NUL("y_bf16"),
                        eval ? (bind)IN("running_mean", rm_in, c * 4) : (bind)NUL("running_mean"),
                        eval ? (bind)IN("running_var", rv_in, c * 4) : (bind)NUL("running_var")};
            hash[si] = launch(si, &s, ka[ci], b, 11);
            relayout(out, out_k, 2, n, c, hw, 0);
            if (want_mask) mask_relayout(mask, mask_k, n, c, hw, 0);
            expect("bn_apply bf16", "out (rel. to the largest term; tol 8u + bf16 rounding)", w2,
                   bf16_outputs("out", w2, out, out_r, count, e, 0, scale_of(scale)),
                   (e + U_BF16 * (rmax + e)) / scale_of(scale));
            for (size_t i = 0; i < count; i++) {
                const float v = bf16_to_float_ref(out[i]);
                if (relu) CHECK(!(v < 0), "%s: out[%zu] = %g < 0 after the ReLU", w2, i, v);
                /* The mask bit is the stored value's sign (exact). */
                if (want_mask)
                    CHECK((int)((mask[i / 32] >> (i % 32)) & 1u) == (v > 0), "%s: mask bit %zu, out %g", w2, i, v);
            }
            if (want_mask && count % 32)
                CHECK((mask_k[words - 1] >> (count % 32)) == 0, "%s: mask bits past the last element are set", w2);
            /* The fp32 kernel on the widened inputs, rounded once: the same bits. */
            bind b32[] = {IN("y", yb_h, count * 4),
                          eval ? (bind)NUL("mean") : (bind)IN("mean", mean, c * 4),
                          eval ? (bind)NUL("invstd") : (bind)IN("invstd", invstd, c * 4),
                          IN("gamma", gamma, c * 4),
                          IN("beta", beta, c * 4),
                          add ? (bind)IN("residual", resb_h, count * 4) : (bind)NUL("residual"),
                          OUT("out", out32_k, count * 4),
                          NUL("mask"),
                          NUL("y_bf16"),
                          eval ? (bind)IN("running_mean", rm_in, c * 4) : (bind)NUL("running_mean"),
                          eval ? (bind)IN("running_var", rv_in, c * 4) : (bind)NUL("running_var")};
            launch(si, &s, ka32[ci], b32, 11);
            bf16_of_floats("out vs the fp32 kernel", w2, out_k, out32_k, count);
        }
        same_outputs(k->name, hash);
    }

    /* ---- bn_backward and the sliced pair: dout, y, dy, dres (and the MASK 2 ReLU output) in bf16 ---- */
    double *dg_r = xmalloc(c * 8), *db_r = xmalloc(c * 8), *dy_r = xmalloc(count * 8), *dres_r = xmalloc(count * 8);
    double *abs_dg = xmalloc(c * 8), *abs_db = xmalloc(c * 8), *dummy = xmalloc(count * 8);
    float *absdout = xmalloc(count * 4), *ymirror = xmalloc(count * 4);
    for (size_t i = 0; i < count; i++) {
        int ch = (int)((i / hw) % c);
        absdout[i] = fabsf(doutb[i]);
        ymirror[i] = mean[ch] + fabsf(yb[i] - mean[ch]);
    }
    float *dg = xmalloc(c * 4), *db = xmalloc(c * 4), *dg32 = xmalloc(c * 4), *db32 = xmalloc(c * 4);
    float *dy32_k = xmalloc(count * 4), *dres32_k = xmalloc(count * 4);
    uint16_t *dy_k = xmalloc(count * 2), *dres_k = xmalloc(count * 2), *dy = xmalloc(count * 2),
             *dres = xmalloc(count * 2);
    const size_t sbytes = (size_t)slices * c * 2 * 4;
    float *sums = xmalloc(sbytes), *sums0 = xmalloc(sbytes);
    for (int ci = 0; ci < 9; ci++) {
        /* 0..5: bn_backward MASK = ci % 3, RES = ci / 3; 6..8: the sliced pair, scombos. */
        const int sliced = ci >= 6;
        const int maskm = sliced ? scombos[ci - 6][0] : ci % 3, res = sliced ? scombos[ci - 6][1] : ci / 3;
        const gen_kernel *k = &s.k[sliced ? kdx[ci - 6] : kb[ci]];
        bn_backward_ref(n, c, hw, maskm, doutb, mask_in, relub, yb, mean, invstd, gamma, dg_r, db_r, dy_r,
                        res ? dres_r : NULL);
        bn_backward_ref(n, c, hw, maskm, absdout, mask_in, relub, ymirror, mean, invstd, gamma, abs_dg, abs_db, dummy,
                        NULL);
        /* test_bn's and test_bn_sliced's tolerances for the sums and dy (fp32), then dy's one
         * rounding to bf16; dres = dz is dout or 0, a bf16 value: exact (e = 0). */
        const int bpg = source_constant(k, "PG");
        const double bsteps = sliced ? ceil((double)rows_max / bpg) + 2 * log2i(bpg) + ceil((double)slices / bpg)
                                     : ceil((double)m / bpg) + log2i(bpg);
        const double tol_db = (bsteps + 2) * U, tol_dg = (bsteps + 6) * U, tol_dy = tol_dg + 8 * U;
        double scale_dy = 0;
        for (size_t i = 0; i < count; i++) {
            int ch = (int)((i / hw) % c);
            double xh = fabs((yb[i] - mean[ch]) * (double)invstd[ch]);
            double t = fabs(gamma[ch] * (double)invstd[ch]) * (fabs(doutb[i]) + abs_db[ch] / m + xh * abs_dg[ch] / m);
            if (t > scale_dy) scale_dy = t;
        }
        const double e_dy = tol_dy * scale_dy, dymax = max_abs(dy_r, count);
        const bind mask_bind = maskm == 1   ? (bind)IN("mask", mask_in_h, words * 4)
                               : maskm == 2 ? (bind)IN("mask", relu16_h, count * 2)
                                            : (bind)NUL("mask");
        for (int si = 0; si < (sliced ? SCHEDULES : 2); si++) {
            char w2[360];
            snprintf(w2, sizeof w2, "%s %s %s", k->name, where, schedule_names[si]);
            if (sliced) {
                bind bs[] = {IN("dout", dout16_h, count * 2), mask_bind,
                             IN("y", y16_h, count * 2),       IN("mean", mean, c * 4),
                             IN("invstd", invstd, c * 4),     OUT("partials", sums, sbytes)};
                hash[si] = launch(si, &s, ksum[ci - 6], bs, 6);
                if (si == 0) memcpy(sums0, sums, sbytes);
                bind bd[] = {IN("dout", dout16_h, count * 2),
                             mask_bind,
                             IN("y", y16_h, count * 2),
                             IN("mean", mean, c * 4),
                             IN("invstd", invstd, c * 4),
                             IN("gamma", gamma, c * 4),
                             IN("partials", sums0, sbytes),
                             OUT("dgamma", dg, c * 4),
                             OUT("dbeta", db, c * 4),
                             OUT("dy", dy_k, count * 2),
                             res ? (bind)OUT("dres", dres_k, count * 2) : (bind)NUL("dres")};
                hash[si] ^= launch(si, &s, kdx[ci - 6], bd, 11) * 31;
            } else {
                bind b[] = {
                    IN("dout", dout16_h, count * 2), mask_bind,
                    IN("y", y16_h, count * 2),       IN("mean", mean, c * 4),
                    IN("invstd", invstd, c * 4),     IN("gamma", gamma, c * 4),
                    OUT("dgamma", dg, c * 4),        OUT("dbeta", db, c * 4),
                    OUT("dy", dy_k, count * 2),      res ? (bind)OUT("dres", dres_k, count * 2) : (bind)NUL("dres")};
                hash[si] = launch(si, &s, kb[ci], b, 10);
                /* The fp32 kernel (y in bf16) on the widened dout and ReLU output: the same
                 * dgamma and dbeta bits, and dy, dres rounded once. */
                bind b32[] = {IN("dout", doutb_h, count * 4),
                              maskm == 1   ? (bind)IN("mask", mask_in_h, words * 4)
                              : maskm == 2 ? (bind)IN("mask", relub_h, count * 4)
                                           : (bind)NUL("mask"),
                              IN("y", y16_h, count * 2),
                              IN("mean", mean, c * 4),
                              IN("invstd", invstd, c * 4),
                              IN("gamma", gamma, c * 4),
                              OUT("dgamma", dg32, c * 4),
                              OUT("dbeta", db32, c * 4),
                              OUT("dy", dy32_k, count * 4),
                              res ? (bind)OUT("dres", dres32_k, count * 4) : (bind)NUL("dres")};
                launch(si, &s, kb32[ci], b32, 10);
                CHECK(memcmp(dg, dg32, c * 4) == 0 && memcmp(db, db32, c * 4) == 0,
                      "%s: dgamma/dbeta differ from the fp32 kernel's on the widened inputs", w2);
                bf16_of_floats("dy vs the fp32 kernel", w2, dy_k, dy32_k, count);
                if (res) bf16_of_floats("dres vs the fp32 kernel", w2, dres_k, dres32_k, count);
            }
            relayout(dy, dy_k, 2, n, c, hw, 0);
            if (res) relayout(dres, dres_k, 2, n, c, hw, 0);
            const char *op = sliced ? "bn_backward_sums+dx bf16" : "bn_backward bf16";
            expect(op, "dbeta (rel. to sum|dz|)", w2, max_diff(db, db_r, c) / scale_of(max_abs(abs_db, c)), tol_db);
            expect(op, "dgamma (rel. to sum|dz*xhat|)", w2, max_diff(dg, dg_r, c) / scale_of(max_abs(abs_dg, c)),
                   tol_dg);
            expect(op, "dy (rel. to its terms; tol as fp32 + bf16 rounding)", w2,
                   bf16_outputs("dy", w2, dy, dy_r, count, e_dy, 0, scale_of(scale_dy)),
                   (e_dy + U_BF16 * (dymax + e_dy)) / scale_of(scale_dy));
            if (res)
                expect(op, "dres (exact: dout or 0)", w2, bf16_outputs("dres", w2, dres, dres_r, count, 0, 0, 1), 0);
        }
        if (sliced)
            same_outputs_all(k->name, hash);
        else
            same_outputs(k->name, hash);
    }
    printf("%s: bn_stats, bn_stats_part+merge, 5 bn_apply, 6 bn_backward and 3 sliced backward kernels match\n", where);
    free(y0), free(res0), free(dout0), free(relu0), free(y16), free(res16), free(dout16), free(relu16);
    free(yb), free(resb), free(doutb), free(relub), free(y16_h), free(res16_h), free(dout16_h), free(relu16_h);
    free(yb_h), free(resb_h), free(doutb_h), free(relub_h), free(rm_in), free(rv_in), free(gamma), free(beta);
    free(mask_in), free(mask_in_h), free(mean_r), free(invstd_r), free(rm_r), free(rv_r);
    free(mean), free(invstd), free(rm), free(rv), free(mean32), free(invstd32), free(rm32), free(rv32);
    free(partials), free(partials0), free(out_r), free(out_k), free(out), free(out32_k), free(mask_k), free(mask);
    free(dg_r), free(db_r), free(dy_r), free(dres_r), free(abs_dg), free(abs_db), free(dummy), free(absdout),
        free(ymirror);
    free(dg), free(db), free(dg32), free(db32), free(dy32_k), free(dres32_k), free(dy_k), free(dres_k), free(dy),
        free(dres);
    free(sums), free(sums0);
    set_free(&s);
}

/* Max pooling with bf16 activations: y is a selection (exact: the chosen element's bits) and
 * argmax as the reference on the widened x; dx the fp32 sum of the widened dy (test_maxpool's
 * tolerance: exact where windows do not overlap) rounded once. */
static void test_maxpool_act_bf16(int n, int c, int h, int w, int r, int stride, int pad, int ties)
{
    kernel_set s;
    set_init(&s, "train_ops_maxpool_actbf16_n%dc%dh%dw%d_r%ds%dp%d", n, c, h, w, r, stride, pad);
    const char *fmt = "{ N = %d, C = %d, H = %d, W = %d, R = %d, STRIDE = %d, PAD = %d, ACT_BF16 = 1 }";
    int kf = set_add(&s, "maxpool_fwd", fmt, n, c, h, w, r, stride, pad);
    int kb = set_add(&s, "maxpool_bwd", fmt, n, c, h, w, r, stride, pad);
    set_compile(&s, 1);
    int p, q;
    maxpool_out_size(h, w, r, stride, pad, &p, &q);
    const size_t in_count = (size_t)n * c * h * w, out_count = (size_t)n * c * p * q;
    char where[160];
    snprintf(where, sizeof where, "N%d C%d %dx%d R%d stride %d pad %d -> %dx%d bf16%s", n, c, h, w, r, stride, pad, p,
             q, ties ? " (ties, a NaN)" : "");
    float *x0 = xmalloc(in_count * 4);
    for (size_t i = 0; i < in_count; i++) x0[i] = ties ? (float)(int)uniform(-3, 3) : uniform(-4, 4);
    if (ties) x0[in_count / 2] = NAN;
    float *dy0 = rand_floats(out_count, -1, 1);
    uint16_t *x16 = bf16_bits(x0, in_count), *dy16 = bf16_bits(dy0, out_count);
    float *xb = bf16_widened(x16, in_count), *dyb = bf16_widened(dy16, out_count);
    float *y_r = xmalloc(out_count * 4);
    uint8_t *arg_r = xmalloc(out_count), *arg = xmalloc(out_count), *arg_k = xmalloc(out_count);
    double *dx_r = xmalloc(in_count * 8);
    maxpool_fwd_ref(n, c, h, w, r, stride, pad, xb, y_r, arg_r);
    maxpool_bwd_ref(n, c, h, w, r, stride, pad, dyb, arg_r, dx_r);
    uint16_t *x16_h = nhwc_copy(x16, 2, n, c, h * w), *dy16_h = nhwc_copy(dy16, 2, n, c, p * q);
    uint8_t *arg_r_h = nhwc_copy(arg_r, 1, n, c, p * q);
    uint16_t *y_k = xmalloc(out_count * 2), *y = xmalloc(out_count * 2), *dx_k = xmalloc(in_count * 2),
             *dx = xmalloc(in_count * 2);
    const int kw = (r + stride - 1) / stride, kk = kw * kw;
    const double tol_dx = kk * (kk - 1) * U, dymax = max_absf(dyb, out_count), e = tol_dx * dymax;
    uint64_t hash[2];
    for (int si = 0; si < 2; si++) {
        char w2[200];
        snprintf(w2, sizeof w2, "%s %s", where, schedule_names[si]);
        bind bf[] = {IN("x", x16_h, in_count * 2), OUT("y", y_k, out_count * 2), OUT("argmax", arg_k, out_count)};
        hash[si] = launch(si, &s, kf, bf, 3);
        relayout(y, y_k, 2, n, c, p * q, 0);
        relayout(arg, arg_k, 1, n, c, p * q, 0);
        bf16_of_floats("y (exact: the chosen element)", w2, y, y_r, out_count);
        for (size_t i = 0; i < out_count; i++)
            CHECK(arg[i] == arg_r[i], "%s: argmax[%zu] = %d, reference %d", w2, i, arg[i], arg_r[i]);
        expect("maxpool_fwd bf16", "y and argmax (exact)", w2, 0, 0);
        bind bb[] = {IN("dy", dy16_h, out_count * 2), IN("argmax", arg_r_h, out_count), OUT("dx", dx_k, in_count * 2)};
        hash[si] ^= launch(si, &s, kb, bb, 3) * 31;
        relayout(dx, dx_k, 2, n, c, h * w, 0);
        expect("maxpool_bwd bf16", "dx (rel. to max|dy|; fp32 tol + bf16 rounding)", w2,
               bf16_outputs("dx", w2, dx, dx_r, in_count, e, 0, scale_of(dymax)),
               (e + U_BF16 * (max_abs(dx_r, in_count) + e)) / scale_of(dymax));
    }
    same_outputs(s.k[kf].name, hash);
    printf("maxpool %s: fwd exact, bwd matches\n", where);
    free(x0), free(dy0), free(x16), free(dy16), free(xb), free(dyb), free(y_r), free(arg_r), free(arg), free(arg_k);
    free(dx_r), free(x16_h), free(dy16_h), free(arg_r_h), free(y_k), free(y), free(dx_k), free(dx);
    set_free(&s);
}

/* Global average pooling with bf16 activations: x in bf16, y in fp32 (test_avgpool's
 * tolerance on the widened x); dy in fp32, dx = dy/HW (one division, within u of each
 * element) rounded once to bf16. */
static void test_avgpool_act_bf16(int n, int c, int hw)
{
    kernel_set s;
    set_init(&s, "train_ops_avgpool_actbf16_n%dc%dhw%d", n, c, hw);
    int kf = set_add(&s, "avgpool_fwd", "{ N = %d, C = %d, HW = %d, ACT_BF16 = 1 }", n, c, hw);
    int kb = set_add(&s, "avgpool_bwd", "{ N = %d, C = %d, HW = %d, ACT_BF16 = 1 }", n, c, hw);
    set_compile(&s, 1);
    const size_t rows = (size_t)n * c, count = rows * hw;
    char where[120];
    snprintf(where, sizeof where, "N%d C%d HW%d bf16", n, c, hw);
    float *x0 = rand_floats(count, -2, 2), *dy = rand_floats(rows, -1, 1), *y = xmalloc(rows * 4);
    uint16_t *x16 = bf16_bits(x0, count);
    float *xb = bf16_widened(x16, count), *absx = xmalloc(count * 4);
    for (size_t i = 0; i < count; i++) absx[i] = fabsf(xb[i]);
    double *y_r = xmalloc(rows * 8), *ya_r = xmalloc(rows * 8), *dx_r = xmalloc(count * 8);
    avgpool_fwd_ref(n, c, hw, xb, y_r);
    avgpool_fwd_ref(n, c, hw, absx, ya_r);
    avgpool_bwd_ref(n, c, hw, dy, dx_r);
    uint16_t *x16_h = nhwc_copy(x16, 2, n, c, hw), *dx_k = xmalloc(count * 2), *dx = xmalloc(count * 2);
    const double tol_y = (ceil(hw / 32.0) + 5 + 1) * U;
    uint64_t hash[2];
    for (int si = 0; si < 2; si++) {
        char w2[160];
        snprintf(w2, sizeof w2, "%s %s", where, schedule_names[si]);
        bind bf[] = {IN("x", x16_h, count * 2), OUT("y", y, rows * 4)};
        hash[si] = launch(si, &s, kf, bf, 2);
        expect("avgpool_fwd bf16", "y (rel. to max mean|x|)", w2,
               max_diff(y, y_r, rows) / scale_of(max_abs(ya_r, rows)), tol_y);
        bind bb[] = {IN("dy", dy, rows * 4), OUT("dx", dx_k, count * 2)};
        hash[si] ^= launch(si, &s, kb, bb, 2) * 31;
        relayout(dx, dx_k, 2, n, c, hw, 0);
        /* Per element: e = u*|dx|, then the rounding; relative to max|dx| for the summary. */
        const double dxmax = max_abs(dx_r, count);
        expect("avgpool_bwd bf16", "dx (rel. to max|dx|; u per element + bf16 rounding)", w2,
               bf16_outputs("dx", w2, dx, dx_r, count, 0, U, scale_of(dxmax)), U_BF16 * (1 + U) + U);
    }
    same_outputs(s.k[kf].name, hash);
    printf("avgpool %s: fwd and bwd match\n", where);
    free(x0), free(dy), free(y), free(x16), free(xb), free(absx), free(y_r), free(ya_r), free(dx_r);
    free(x16_h), free(dx_k), free(dx);
    set_free(&s);
}

/* sgd with SHADOW = 1: params and momentum_buf bitwise those of SHADOW = 0 (test_sgd checks
 * those against the reference), shadow exactly the bf16 rounding of the updated params. */
static void test_sgd_shadow(int count)
{
    kernel_set s;
    set_init(&s, "train_ops_sgd_shadow_count%d", count);
    int k0 = set_add(&s, "sgd", "{ COUNT = %d }", count);
    int k1 = set_add(&s, "sgd", "{ COUNT = %d, SHADOW = 1 }", count);
    set_compile(&s, 1);
    char where[120];
    snprintf(where, sizeof where, "COUNT %d", count);
    float *p = rand_floats(count, -1, 1), *g = rand_floats(count, -0.1f, 0.1f), *buf = rand_floats(count, -0.2f, 0.2f);
    const float lr = 0.1f, momentum = 0.9f, wd = 5e-4f;
    const size_t bytes = (size_t)count * 4;
    float *p0 = xmalloc(bytes), *buf0 = xmalloc(bytes), *p1 = xmalloc(bytes), *buf1 = xmalloc(bytes);
    uint16_t *shadow = xmalloc((size_t)count * 2);
    uint64_t hash[2];
    for (int si = 0; si < 2; si++) {
        char w2[160];
        snprintf(w2, sizeof w2, "%s %s", where, schedule_names[si]);
        bind b0[] = {INOUT("params", p, p0, bytes),           IN("grads", g, bytes),
                     INOUT("momentum_buf", buf, buf0, bytes), {"lr", NULL, NULL, 0, &lr},
                     {"momentum", NULL, NULL, 0, &momentum},  {"weight_decay", NULL, NULL, 0, &wd}};
        launch(si, &s, k0, b0, 6);
        bind b1[] = {INOUT("params", p, p1, bytes),
                     IN("grads", g, bytes),
                     INOUT("momentum_buf", buf, buf1, bytes),
                     OUT("shadow", shadow, (size_t)count * 2),
                     {"lr", NULL, NULL, 0, &lr},
                     {"momentum", NULL, NULL, 0, &momentum},
                     {"weight_decay", NULL, NULL, 0, &wd}};
        hash[si] = launch(si, &s, k1, b1, 7);
        CHECK(memcmp(p0, p1, bytes) == 0 && memcmp(buf0, buf1, bytes) == 0,
              "%s: SHADOW = 1 changes params or momentum_buf", w2);
        bf16_of_floats("shadow", w2, shadow, p1, (size_t)count);
        expect("sgd shadow", "params, momentum (bitwise SHADOW 0), shadow (exact bf16 of params)", w2, 0, 0);
    }
    same_outputs(s.k[k1].name, hash);
    printf("sgd SHADOW 1 %s: params and momentum bitwise SHADOW 0, shadow = bf16(params)\n", where);
    free(p), free(g), free(buf), free(p0), free(buf0), free(p1), free(buf1), free(shadow);
    set_free(&s);
}

/* ================= parameter errors ================= */

static void expect_error(const char *op, const char *params, const char *fragment)
{
    gen_kernel k;
    pp_status st = gen_layer_op_kernel(static_ctx, op, params, &k);
    CHECK(st != PP_OK, "%s %s must fail", op, params);
    CHECK(strstr(pp_last_error(static_ctx), fragment) != NULL, "%s %s: message '%s' lacks '%s'", op, params,
          pp_last_error(static_ctx), fragment);
    printf("  %s %s -> %s: %s\n", op, params, pp_status_string(st), pp_last_error(static_ctx));
}

static void test_errors(void)
{
    printf("parameter errors:\n");
    expect_error("bn_stats", "{ N = 2, C = 3 }", "missing parameter HW");
    expect_error("bn_apply", "{ N = 2, C = 0, HW = 4 }", "parameter C must be a positive integer, got 0");
    expect_error("bn_backward", "{ N = -1, C = 3, HW = 4 }", "parameter N must be a positive integer, got -1");
    expect_error("bn_backward", "{ N = 1, C = 3, HW = 4, MASK = 3 }", "MASK must be one of 0, 1, 2");
    expect_error("bn_apply", "{ N = 1, C = 3, HW = 4, RELU = 2 }", "RELU must be 0 or 1");
    expect_error("bn_stats", "{ N = 1, C = 3, HW = 1 }", "at least 2 values per channel");
    expect_error("bn_stats", "{ N = 1, C = 3, HW = 4, EPS = 0 }", "EPS must be in (0");
    expect_error("maxpool_fwd", "{ N = 1, C = 3, H = 5 }", "missing parameter W");
    expect_error("relu_mask_fwd", "{ COUNT = 0 }", "parameter COUNT must be a positive integer, got 0");
    expect_error("maxpool_fwd", "{ N = 1, C = 3, H = 5, W = 5, PAD = 2 }", "PAD = 2 exceeds R/2");
    expect_error("maxpool_bwd", "{ N = 1, C = 3, H = 1, W = 5, R = 5, PAD = 1 }", "does not fit");
    expect_error("avgpool_fwd", "{ N = 1, C = 2.5, HW = 4 }", "parameter C must be a positive integer, got 2.5");
    expect_error("fc_fwd", "{ N = 4, IN = 3, OUT = 0 }", "parameter OUT must be a positive integer");
    expect_error("fc_bwd_weight", "{ N = 4, IN = 3 }", "missing parameter OUT");
    expect_error("softmax_ce", "{ N = 4, CLASSES = 'ten' }", "CLASSES must be a positive integer");
    expect_error("softmax_ce", "{ N = 5000, CLASSES = 10 }", "at most 4096");
    expect_error("bn_stats_part", "{ N = 1, C = 3, HW = 4, SLICES = 5 }", "SLICES = 5 exceeds N*HW = 4");
    expect_error("bn_backward_sums", "{ N = 2, C = 3, HW = 4 }", "missing parameter SLICES");
    expect_error("bn_backward_dx", "{ N = 2, C = 3, HW = 4, SLICES = 2, RES = 2 }", "RES must be 0 or 1");
    expect_error("bn_stats_merge", "{ C = 3, PARTS = 2, M = 8, SHIFT = 2 }", "SHIFT must be 0 or 1");
    expect_error("softmax_ce_reduce", "{ N = 0 }", "N must be a positive integer");
    expect_error("sgd", "{ COUNT = 0 }", "COUNT must be a positive integer");
    expect_error("sgd", "{ COUNT = 10, LR = 0.1 }", "unknown parameter 'LR'");
    expect_error("bn_apply", "{ N = 65536, C = 2048, HW = 64 }", "beyond the 2147483647 an int indexes");
    expect_error("no_such_op", "{ N = 1 }", "unknown op 'no_such_op'");
    expect_error("sgd", "{ COUNT = ", "op parameters");
    expect_error("bn_apply", "{ N = 1, C = 3, HW = 4, SAVE_BF16 = 1, ACT_BF16 = 1 }",
                 "SAVE_BF16 = 1 with ACT_BF16 = 1: y is already stored in bf16");
    expect_error("bn_apply_pool", "{ N = 1, C = 3, H = 4, W = 4, SAVE_BF16 = 1, ACT_BF16 = 1, POOL_F = 2 }",
                 "SAVE_BF16 = 1 with ACT_BF16 = 1");
    expect_error("maxpool_fwd", "{ N = 1, C = 3, H = 5, W = 5, ACT_BF16 = 2 }", "ACT_BF16 must be 0 or 1, got 2");
    expect_error("sgd", "{ COUNT = 10, SHADOW = 2 }", "SHADOW must be 0 or 1, got 2");
    /* Names: identical parameters, identical names; every parameter that changes the
     * source changes the name. */
    gen_kernel a, b;
    CHECK_OK(static_ctx, gen_layer_op_kernel(static_ctx, "bn_stats", "{ N = 2, C = 16, HW = 64 }", &a));
    CHECK_OK(static_ctx, gen_layer_op_kernel(static_ctx, "bn_stats", "{ HW = 64, C = 16, N = 2, MOMENTUM = 0.1 }", &b));
    CHECK(strcmp(a.name, "bn_stats_n2c16hw64_v0") == 0, "name %s", a.name);
    CHECK(strcmp(a.name, b.name) == 0 && strcmp(a.source, b.source) == 0, "%s vs %s", a.name, b.name);
    gen_layer_kernel_free(&b);
    CHECK_OK(static_ctx,
             gen_layer_op_kernel(static_ctx, "bn_stats", "{ N = 2, C = 16, HW = 64, MOMENTUM = 0.01 }", &b));
    CHECK(strcmp(a.name, b.name) != 0 && strcmp(a.source, b.source) != 0, "MOMENTUM must change name and source");
    printf("  names: %s, %s\n", a.name, b.name);
    gen_layer_kernel_free(&a);
    gen_layer_kernel_free(&b);
}

/* Shapes of a ResNet-50 step at batch 256 (and a CIFAR one): compiled with NVRTC only. */
static void test_large_compile(void)
{
    kernel_set s;
    set_init(&s, "train_ops_resnet50_b256");
    set_add(&s, "bn_stats", "{ N = 256, C = 64, HW = 12544 }");
    set_add(&s, "bn_apply", "{ N = 256, C = 64, HW = 12544, RELU = 1, SAVE_BF16 = 1 }");
    set_add(&s, "bn_apply", "{ N = 256, C = 2048, HW = 49, RELU = 1, ADD = 1 }");
    set_add(&s, "bn_apply", "{ N = 256, C = 2048, HW = 49, EVAL = 1, RELU = 1, ADD = 1 }");
    set_add(&s, "bn_backward", "{ N = 256, C = 64, HW = 12544, MASK = 1, BF16 = 1 }");
    set_add(&s, "bn_backward", "{ N = 256, C = 2048, HW = 49, MASK = 1, RES = 1 }");
    set_add(&s, "bn_backward", "{ N = 256, C = 256, HW = 3136, MASK = 2 }");
    set_add(&s, "maxpool_fwd", "{ N = 256, C = 64, H = 112, W = 112 }");
    set_add(&s, "maxpool_bwd", "{ N = 256, C = 64, H = 112, W = 112 }");
    set_add(&s, "avgpool_fwd", "{ N = 256, C = 2048, HW = 49 }");
    set_add(&s, "avgpool_bwd", "{ N = 256, C = 2048, HW = 49 }");
    set_add(&s, "fc_fwd", "{ N = 256, IN = 2048, OUT = 1000 }");
    set_add(&s, "fc_bwd_data", "{ N = 256, IN = 2048, OUT = 1000 }");
    set_add(&s, "fc_bwd_weight", "{ N = 256, IN = 2048, OUT = 1000 }");
    set_add(&s, "softmax_ce", "{ N = 256, CLASSES = 1000 }");
    set_add(&s, "softmax_ce_rows", "{ N = 256, CLASSES = 1000 }");
    set_add(&s, "softmax_ce_reduce", "{ N = 256 }");
    set_add(&s, "bn_stats_part", "{ N = 256, C = 64, HW = 12544, SLICES = 33 }");
    set_add(&s, "bn_stats_merge", "{ C = 64, PARTS = 33, M = 3211264, SHIFT = 1 }");
    set_add(&s, "bn_backward_sums", "{ N = 256, C = 64, HW = 12544, SLICES = 33, MASK = 1, BF16 = 1 }");
    set_add(&s, "bn_backward_dx", "{ N = 256, C = 64, HW = 12544, SLICES = 33, MASK = 1, BF16 = 1 }");
    set_add(&s, "bn_backward_sums", "{ N = 256, C = 2048, HW = 49, SLICES = 2, MASK = 1 }");
    set_add(&s, "bn_backward_dx", "{ N = 256, C = 2048, HW = 49, SLICES = 2, MASK = 1, RES = 1 }");
    set_add(&s, "bn_backward_dx", "{ N = 256, C = 256, HW = 3136, SLICES = 9, MASK = 2 }");
    set_add(&s, "sgd", "{ COUNT = 25557032 }");
    set_add(&s, "sgd", "{ COUNT = 25557032, SHADOW = 1 }");
    /* bf16 activations (ACT_BF16 = 1) at the same shapes. */
    set_add(&s, "bn_stats", "{ N = 256, C = 64, HW = 12544, ACT_BF16 = 1 }");
    set_add(&s, "bn_apply", "{ N = 256, C = 64, HW = 12544, RELU = 1, ACT_BF16 = 1 }");
    set_add(&s, "bn_apply", "{ N = 256, C = 2048, HW = 49, RELU = 1, ADD = 1, ACT_BF16 = 1 }");
    set_add(&s, "bn_apply", "{ N = 256, C = 2048, HW = 49, EVAL = 1, RELU = 1, ADD = 1, ACT_BF16 = 1 }");
    set_add(&s, "bn_backward", "{ N = 256, C = 64, HW = 12544, MASK = 1, ACT_BF16 = 1 }");
    set_add(&s, "bn_backward", "{ N = 256, C = 2048, HW = 49, MASK = 1, RES = 1, ACT_BF16 = 1 }");
    set_add(&s, "bn_backward", "{ N = 256, C = 256, HW = 3136, MASK = 2, ACT_BF16 = 1 }");
    set_add(&s, "bn_stats_part", "{ N = 256, C = 64, HW = 12544, SLICES = 33, ACT_BF16 = 1 }");
    set_add(&s, "bn_backward_sums", "{ N = 256, C = 64, HW = 12544, SLICES = 33, MASK = 1, ACT_BF16 = 1 }");
    set_add(&s, "bn_backward_dx", "{ N = 256, C = 64, HW = 12544, SLICES = 33, MASK = 1, ACT_BF16 = 1 }");
    set_add(&s, "bn_backward_dx", "{ N = 256, C = 2048, HW = 49, SLICES = 2, MASK = 1, RES = 1, ACT_BF16 = 1 }");
    set_add(&s, "bn_backward_sums", "{ N = 256, C = 256, HW = 3136, SLICES = 9, MASK = 2, ACT_BF16 = 1 }");
    set_add(&s, "bn_backward_dx", "{ N = 256, C = 256, HW = 3136, SLICES = 9, MASK = 2, ACT_BF16 = 1 }");
    set_add(&s, "maxpool_fwd", "{ N = 256, C = 64, H = 112, W = 112, ACT_BF16 = 1 }");
    set_add(&s, "maxpool_bwd", "{ N = 256, C = 64, H = 112, W = 112, ACT_BF16 = 1 }");
    set_add(&s, "avgpool_fwd", "{ N = 256, C = 2048, HW = 49, ACT_BF16 = 1 }");
    set_add(&s, "avgpool_bwd", "{ N = 256, C = 2048, HW = 49, ACT_BF16 = 1 }");
    set_add(&s, "fc_fwd", "{ N = 1, IN = 64, OUT = 10 }");
    set_add(&s, "softmax_ce", "{ N = 128, CLASSES = 10 }");
    set_compile(&s, 0);
    set_free(&s);
}

static double t0; /* when main started: the cases print the time elapsed */

/* Batch norm: tiny channels (M below the thread count, one partial mask word), mask
 * words straddling pixels with a partial last word, offsets that defeat the
 * sum-of-squares variance, channels of 1024+ and 8192+ values (256/512 threads), and
 * channel tiles of 2, 4 and 8 channels, with a part-filled last tile (C 33, C 12). */
static void bn_one_pass(void)
{
    test_bn(1, 3, 5, 0.0f, 1);
    test_bn(2, 5, 49, 3.0f, 1);
    test_bn(3, 7, 99, 0.5f, 1);
    test_bn(2, 33, 13, 1000.0f, 0);
    test_bn(2, 4, 600, 10.0f, 0);
    test_bn(3, 2, 3001, 2.0f, 0);
    test_bn(2, 12, 4100, 100.0f, 0);
}

/* The sliced forms: 600 rows in 7 slices of 85/86 with a part-filled channel tile;
 * 3003 rows in 37 slices (more than the 16 pixel groups that merge them) at offset 1000
 * (the shift); one row per slice; 300 slices (more than the merge's 256 threads). */
static void bn_sliced(void)
{
    test_bn_sliced(2, 12, 300, 100.0f, 7);
    test_bn_sliced(3, 5, 1001, 1000.0f, 37);
    test_bn_sliced(1, 3, 5, 2.0f, 5);
    test_bn_sliced(1, 2, 700, 10.0f, 300);
}

static void bf16_rounding(void) { test_bf16_rounding(); }

/* bf16 activations: one row per slice with C 3; C 33 (a part-filled channel tile) at
 * offset 100 (the shift) and C 7 at HW 1001 (256 threads; 3003 rows in 37 slices): mask
 * words straddle pixels, the last one partial, no size a multiple of 8 or 32. */
static void bn_act_bf16(void)
{
    test_bn_act_bf16(1, 3, 5, 0.0f, 5);
    test_bn_act_bf16(2, 33, 13, 100.0f, 3);
    test_bn_act_bf16(3, 7, 1001, 10.0f, 37);
    printf("batch norm done (%.1f s)\n", test_now_s() - t0);
}

static void maxpool_shapes(void)
{
    test_maxpool(1, 3, 7, 7, 3, 2, 1, 0);
    test_maxpool(2, 5, 9, 11, 3, 2, 1, 1);
    test_maxpool(3, 2, 10, 13, 2, 2, 0, 0);
    test_maxpool(1, 4, 8, 9, 3, 1, 1, 1);
    test_maxpool(2, 3, 15, 17, 5, 2, 2, 0);
    test_maxpool(1, 2, 1, 1, 3, 2, 1, 0);
}

/* One element; a partial single word; 33 (a second word with one bit); 1000 (four blocks,
 * the last partial); 4099 (17 blocks, a 3-bit last word). */
static void relu_mask_counts(void)
{
    test_relu_mask(1);
    test_relu_mask(31);
    test_relu_mask(33);
    test_relu_mask(1000);
    test_relu_mask(4099);
}

static void avgpool_shapes(void)
{
    test_avgpool(1, 3, 49);
    test_avgpool(2, 5, 7);
    test_avgpool(3, 7, 64);
    test_avgpool(2, 33, 100);
}

static void pooling_act_bf16(void)
{
    test_maxpool_act_bf16(1, 3, 7, 7, 3, 2, 1, 0);
    test_maxpool_act_bf16(2, 5, 9, 11, 3, 2, 1, 1);
    test_maxpool_act_bf16(3, 2, 10, 13, 2, 2, 0, 0);
    test_maxpool_act_bf16(1, 4, 8, 9, 3, 1, 1, 1);
    test_avgpool_act_bf16(1, 3, 49);
    test_avgpool_act_bf16(2, 33, 100);
    printf("pooling done (%.1f s)\n", test_now_s() - t0);
}

static void fc_shapes(void)
{
    test_fc(1, 7, 5);
    test_fc(2, 33, 10);
    test_fc(3, 100, 37);
    test_fc(20, 70, 45);
    test_fc(3, 67, 130);
    test_fc(40, 19, 66);
}

static void softmax_one_block(void)
{
    test_softmax(1, 10, 0);
    test_softmax(3, 10, 0);
    test_softmax(3, 10, 1);
    test_softmax(2, 1000, 0);
    test_softmax(3, 1000, 2);
}

static void softmax_multi_block(void)
{
    test_softmax_multi(2, 10, 0);
    test_softmax_multi(37, 10, 0);
    test_softmax_multi(70, 1000, 1);
    test_softmax_multi(600, 10, 2);
    test_softmax_multi(4100, 3, 0);
}

static void sgd_updates(void)
{
    test_sgd(1, 1);
    test_sgd(1000, 0);
    test_sgd(4099, 1);
    test_sgd_shadow(1);
    test_sgd_shadow(4099);
    printf("fc, loss, sgd done (%.1f s)\n", test_now_s() - t0);
}

/* The random stream runs through the cases in this order. */
static const test_case tests[] = {
    TEST_CASE(test_errors, "bad op parameters are errors that say what is wrong; every parameter that changes a "
                           "kernel's source changes its name"),
    TEST_CASE(bn_one_pass, "bn_stats, bn_apply (16 option sets), bn_backward (12) on 7 shapes against the reference"),
    TEST_CASE(bn_sliced, "the sliced BN forms (bn_stats_part/merge, bn_backward_sums/dx) on 4 row/slice counts"),
    TEST_CASE(bf16_rounding, "bn_apply's SAVE_BF16 rounds edge cases and random bits as the reference does, which "
                             "rounds known values right"),
    TEST_CASE(bn_act_bf16, "BN with bf16 activations (and sliced) on 3 shapes: the reference on bf16 inputs, bitwise "
                           "the fp32 kernel on the widened inputs"),
    TEST_CASE(maxpool_shapes, "maxpool forward and backward on 6 shapes: values, argmax, gradients exactly"),
    TEST_CASE(relu_mask_counts, "the standalone ReLU (relu_mask_fwd/bwd) on 5 counts: y, mask and dx exactly"),
    TEST_CASE(avgpool_shapes, "global average pooling forward and backward on 4 shapes"),
    TEST_CASE(pooling_act_bf16, "max and average pooling with bf16 activations on 6 shapes"),
    TEST_CASE(fc_shapes, "fc forward, data and weight gradients on 6 shapes (each GEMM tile height)"),
    TEST_CASE(softmax_one_block, "softmax cross-entropy (one block) with 10 and 1000 classes, labels -1 and CLASSES"),
    TEST_CASE(softmax_multi_block, "the multi-block softmax (rows + reduce) on 5 shapes: the one-block kernel's bits"),
    TEST_CASE(sgd_updates, "sgd with momentum and weight decay (first and later steps), and its bf16 weight shadow"),
    TEST_CASE(test_large_compile, "ResNet-50 (batch 256) and CIFAR shapes compile with NVRTC without spills"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    t0 = test_now_s();
    const int cuda = argc > 1 && strcmp(argv[1], "cuda") == 0;
    const pp_schedule schedules[SCHEDULES] = {PP_SCHEDULE_FORWARD, PP_SCHEDULE_REVERSE, PP_SCHEDULE_SHUFFLED};
    for (int i = 0; i < SCHEDULES; i++) {
        pp_context_options o;
        pp_context_options_init(&o);
        o.backend = cuda ? PP_BACKEND_CUDA : PP_BACKEND_HOST;
        o.host_schedule = schedules[i];
        o.host_threads = 2;
        pp_status st = pp_context_create(&o, &host[i]);
        if (cuda && st == PP_ERR_NO_DEVICE) {
            printf("no GPU: %s: skipped\n", host[i] ? pp_last_error(host[i]) : "");
            return PP_TEST_SKIP;
        }
        CHECK_OK(host[i], st);
    }
    if (cuda) {
        schedule_names[0] = "gpu run 1";
        schedule_names[1] = "gpu run 2";
        schedule_names[2] = "gpu run 3";
        printf("device: %s\n", pp_context_device_name(host[0]));
    }
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_NONE;
    CHECK_OK(static_ctx, pp_context_create(&o, &static_ctx));

    int status = TEST_RUN(tests, only);

    printf("\nregisters, spills and shared memory per kernel (sm_90; sm_80 spills too):\n");
    int worst_regs = 0;
    for (int i = 0; i < reg_row_count; i++) {
        printf("  %-62s regs %3d spill %d (sm_80: regs %3d spill %d) smem %d\n", reg_rows[i].name, reg_rows[i].regs[1],
               reg_rows[i].spill[1], reg_rows[i].regs[0], reg_rows[i].spill[0], reg_rows[i].smem90);
        if (reg_rows[i].regs[1] > worst_regs) worst_regs = reg_rows[i].regs[1];
    }
    printf("%d NVRTC compiles (sm_80, sm_90) of %d kernels with zero spill bytes; most registers (sm_90): %d\n",
           static_compiles, reg_row_count, worst_regs);
    printf("\nlargest error per op (relative, as each check defines it; ratio = error/tolerance):\n");
    for (int i = 0; i < summary_count; i++)
        printf("  %-14s %4d checks  largest error %.3e  largest ratio %.3f\n", summaries[i].op, summaries[i].checks,
               summaries[i].worst, summaries[i].worst_ratio);
    if (!only)
        printf("all ops match the reference under both schedules, bit-identically between them (%.1f s)\n",
               test_now_s() - t0);
    for (int i = 0; i < SCHEDULES; i++) pp_context_destroy(host[i]);
    pp_context_destroy(static_ctx);
    return status;
}
