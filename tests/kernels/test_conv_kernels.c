/* test_conv_kernels.c - every generated convolution kernel, run on the host emulation
 * backend, against the plain C reference (reference/conv_ref.c), over a matrix of shapes:
 * 1x1/3x3/7x7 kernels, stride 1 and 2, padding 0..3, H and W not divisible by the pool
 * factor or the tile sizes, channel counts that are not multiples of 32, N = 1..3,
 * f in {1,2,4,8} with avg and max pooling, and channel counts that are multiples of the
 * K-tiles (the iterators' tap-aligned paths), under five variant configurations (fp32 FFMA
 * with and without cp.async pipelining, TF32 and BF16 tensor cores) and two thread
 * schedules (forward and reverse). Tolerances: reference/layer_check.c states them
 * (16*u*sqrt(n) relative to the output's magnitude for fp32 dot products of length n,
 * 1e-6 for average pooling, exact for max pooling and f = 1; for TF32 and BF16 the
 * rigorous element-wise bound (2.01u + n*2^-23)*sum|a||b|).
 * bf16 storage (PP_STORAGE_BF16) runs the same shape matrix under three BF16
 * configurations (the bf16-storage default, 0, and the first and last BF16 variants of
 * each op: BK 16 and 32, 2 and 4 stages, both warp layouts' extremes): inputs rounded to
 * bf16, the reference on those values; y and dx are checked after the kernel's own bf16
 * rounding against halfulp_bf16(|ref| + E) + E + 2^-24|ref| per element, E = n*2^-23*
 * sum|a||b| (a bf16 result rounded to nearest even is within half an ulp of its fp32 sum,
 * at most 2^-8 of it; E bounds the fp32 sum's own error in any order), dw (fp32) against
 * E, xp against half an ulp of the mean plus its fp32 error (avg) or exactly (max); see
 * reference/layer_check.c. The shapes cover the stem (C = 3: synchronous 2-byte copies),
 * odd C and K (2-byte copies), C or K = 4 mod 8 (8-byte copies) and multiples of 8
 * (16-byte copies). Before the runs, the bound itself is shown to reject a result rounded
 * by truncation instead of to nearest and one with an input channel dropped; and asking
 * for a non-BF16 variant with bf16 storage must fail with PP_ERR_INVALID_ARGUMENT.
 * Usage: test_conv_kernels [quick|bf16] - quick runs the first tile configuration only,
 * bf16 the bf16-storage configurations only. */
#include "conv_ref.h"
#include "layer_check.h"
#include "test_util.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct shape_case {
    int n, c, h, w, k, r, s, stride, pad, pool;
    pp_pool_mode mode;
} shape_case;

static const shape_case cases[] = {
    {1, 3, 8, 8, 5, 1, 1, 1, 0, 1, PP_POOL_AVG},
    {2, 5, 9, 7, 6, 3, 3, 1, 1, 2, PP_POOL_AVG},
    {3, 7, 11, 13, 9, 3, 3, 2, 1, 4, PP_POOL_MAX},
    {1, 4, 15, 15, 33, 7, 7, 2, 3, 4, PP_POOL_AVG},
    {2, 33, 10, 10, 17, 1, 1, 2, 0, 2, PP_POOL_MAX},
    {1, 6, 12, 9, 5, 3, 3, 2, 2, 1, PP_POOL_MAX},
    {2, 3, 17, 17, 8, 7, 7, 1, 3, 8, PP_POOL_AVG},
    {3, 2, 6, 10, 3, 1, 1, 1, 3, 2, PP_POOL_AVG},
    {1, 35, 7, 7, 40, 3, 3, 1, 0, 4, PP_POOL_MAX},
    {2, 16, 14, 14, 24, 3, 3, 2, 1, 2, PP_POOL_AVG},
    {1, 3, 23, 19, 16, 7, 7, 2, 2, 4, PP_POOL_MAX},
    {2, 12, 9, 9, 12, 1, 1, 1, 1, 8, PP_POOL_MAX},
    /* Channel counts that are multiples of the K-tiles, so the iterators' tap-aligned
     * paths run (conv_fwd: C % BK == 0, conv_bwd_data: K % BK == 0, conv_bwd_weight's
     * one-tap blocks: C % BM == 0), with stride phases that have fewer taps or none. */
    {2, 64, 9, 9, 64, 3, 3, 1, 1, 2, PP_POOL_AVG},
    {2, 128, 7, 7, 32, 1, 1, 2, 0, 2, PP_POOL_MAX},
    {1, 32, 10, 10, 48, 3, 3, 2, 1, 4, PP_POOL_AVG},
};

/* The bf16 bound (layer_check_bf16_excess) on y of a short-reduction layer (the stem's
 * 3 channels, 3x3: n = 27, where E is far below an ulp): the reference rounded to nearest
 * passes; rounded by truncation, or computed without input channel 1, it must fail. */
static void check_bf16_bound_rejects(void)
{
    conv_ref_shape sh = {2, 3, 9, 9, 8, 3, 3, 1, 1, 1, 0, 0, 0, 0, 0};
    conv_ref_derive(&sh);
    size_t nx = (size_t)sh.n * sh.c * sh.h * sh.w, nw = (size_t)sh.k * sh.c * sh.r * sh.s;
    size_t ny = (size_t)sh.n * sh.k * sh.p * sh.q;
    float *x = malloc(sizeof(float) * (2 * nx + 2 * nw + 4 * ny));
    CHECK(x != NULL, "out of memory");
    float *ax = x + nx, *w = ax + nx, *aw = w + nw, *ref = aw + nw, *abs_ref = ref + ny, *out = abs_ref + ny,
          *dropped = out + ny;
    uint32_t state = 12345u;
    for (size_t i = 0; i < nx + nw; i++) {
        float v = layer_check_bf16_round(test_lcg_signed(&state));
        if (i < nx)
            x[i] = v, ax[i] = fabsf(v);
        else
            w[i - nx] = v, aw[i - nx] = fabsf(v);
    }
    conv_fwd_ref(&sh, x, w, ref);
    conv_fwd_ref(&sh, ax, aw, abs_ref);
    const double n = (double)sh.c * sh.r * sh.s;
    for (size_t i = 0; i < ny; i++) out[i] = layer_check_bf16_round(ref[i]);
    double good = layer_check_bf16_excess(out, ref, abs_ref, ny, n);
    for (size_t i = 0; i < ny; i++) out[i] = layer_check_bf16_truncate(ref[i]);
    double truncated = layer_check_bf16_excess(out, ref, abs_ref, ny, n);
    float *x_drop = malloc(sizeof(float) * nx);
    CHECK(x_drop != NULL, "out of memory");
    memcpy(x_drop, x, sizeof(float) * nx);
    for (int b = 0; b < sh.n; b++)
        for (int i = 0; i < sh.h * sh.w; i++) x_drop[((size_t)b * sh.c + 1) * sh.h * sh.w + (size_t)i] = 0.0f;
    conv_fwd_ref(&sh, x_drop, w, dropped);
    for (size_t i = 0; i < ny; i++) out[i] = layer_check_bf16_round(dropped[i]);
    double drop = layer_check_bf16_excess(out, ref, abs_ref, ny, n);
    printf("bf16 bound on a 3-channel 3x3 layer: rounded to nearest %.2f, truncated %.2f, channel 1 dropped %.2f "
           "(of allowed; must be <= 1, > 1, > 1)\n",
           good, truncated, drop);
    CHECK(good <= 1, "the bf16 bound rejects a correctly rounded result (%.2f)", good);
    CHECK(truncated > 1, "the bf16 bound accepts a truncated result (%.2f)", truncated);
    CHECK(drop > 1, "the bf16 bound accepts a result without an input channel (%.2f)", drop);
    free(x_drop);
    free(x);
}

/* With bf16 storage, a variant of another math is refused, not replaced. */
static void check_bf16_needs_bf16_variant(pp_context *ctx, int tf32_variant)
{
    pp_layer_desc d;
    pp_layer_desc_init(&d);
    d.n = 1, d.c = 8, d.h = 6, d.w = 6, d.k = 8, d.r = 3, d.s = 3, d.pad = 1;
    d.storage = PP_STORAGE_BF16;
    d.variant_fwd = tf32_variant;
    pp_layer *layer = NULL;
    pp_status st = pp_layer_create(ctx, &d, &layer);
    printf("bf16 storage with TF32 variant %d of conv_fwd: %s: %s\n", tf32_variant, pp_status_string(st),
           pp_last_error(ctx));
    CHECK(st == PP_ERR_INVALID_ARGUMENT && layer == NULL, "a TF32 variant with bf16 storage was not refused");
    CHECK(strstr(pp_last_error(ctx), "bf16 storage needs a BF16") != NULL, "unclear message: %s", pp_last_error(ctx));
    d.variant_fwd = 0;
    d.storage = (pp_storage)7;
    st = pp_layer_create(ctx, &d, &layer);
    CHECK(st == PP_ERR_INVALID_ARGUMENT && layer == NULL, "storage 7 was not refused");
}

static pp_context *ctx[2]; /* host backend: forward and reverse schedule */
static int quick, only_bf16;
/* Tile configurations: (fwd, bwd_data, bwd_weight) variant indices; the last three
 * (from bf16_from) run with bf16 storage. */
static int configs[8][3];
static const int bf16_from = 5;
static int first_tf32_fwd; /* the first TF32 variant of conv_fwd */

/* The tile configurations, found by what they are: the default (0); the first fp32 entry of
 * each space (for conv_bwd_weight: no split of the reduction) and the last (the largest
 * tiles, cp.async pipelined); the first and last TF32 tensor-core entries; the first and
 * last BF16 ones. */
static void variant_configurations(void)
{
    const int n_ops = 3;
    const char *ops[3] = {"conv_fwd", "conv_bwd_data", "conv_bwd_weight"};
    int first[3][3], last[3][3]; /* [op][math: fp32, tf32, bf16] */
    for (int o = 0; o < n_ops; o++) {
        int count;
        CHECK_OK(ctx[0], pp_layer_variant_count(ctx[0], ops[o], &count));
        for (int m = 0; m < 3; m++) first[o][m] = last[o][m] = -1;
        for (int v = 1; v <= count; v++) {
            pp_variant_info vi;
            CHECK_OK(ctx[0], pp_layer_variant_info(ctx[0], ops[o], v, &vi));
            int m = strcmp(vi.math, "tf32") == 0 ? 1 : strcmp(vi.math, "bf16") == 0 ? 2 : 0;
            if (first[o][m] < 0) first[o][m] = v;
            last[o][m] = v;
        }
        for (int m = 0; m < 3; m++) CHECK(first[o][m] > 0, "%s declares no variant of math mode %d", ops[o], m);
        pp_variant_info vi;
        CHECK_OK(ctx[0], pp_layer_variant_info(ctx[0], ops[o], last[o][0], &vi));
        CHECK(vi.stages == 2, "the last fp32 variant of %s is not pipelined: %s", ops[o], vi.config);
    }
    /* The last three run with bf16 storage (0: the BF16 default). */
    const int c[8][3] = {{0, 0, 0},
                         {first[0][0], last[1][0], first[2][0]},
                         {last[0][0], first[1][0], last[2][0]},
                         {first[0][1], last[1][1], first[2][1]},
                         {last[0][2], first[1][2], last[2][2]},
                         {0, 0, 0},
                         {first[0][2], last[1][2], first[2][2]},
                         {last[0][2], first[1][2], last[2][2]}};
    memcpy(configs, c, sizeof configs);
    first_tf32_fwd = first[0][1];
}

static void bf16_needs_bf16_variant(void) { check_bf16_needs_bf16_variant(ctx[0], first_tf32_fwd); }

static void shape_matrix(void)
{
    const char *schedule_names[2] = {"forward", "reverse"};
    int nconfigs = quick ? 1 : 8;
    double worst[4][4] = {{0}};
    int outputs_of[4] = {0, 0, 0, 0}; /* outputs checked per precision (3: bf16 storage) */
    int runs = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const shape_case *c = &cases[ci];
        for (int v = only_bf16 ? bf16_from : 0; v < nconfigs; v++) {
            pp_layer_desc d;
            pp_layer_desc_init(&d);
            d.n = c->n, d.c = c->c, d.h = c->h, d.w = c->w, d.k = c->k, d.r = c->r, d.s = c->s;
            d.stride = c->stride, d.pad = c->pad, d.pool = c->pool, d.pool_mode = c->mode;
            d.variant_fwd = configs[v][0], d.variant_bwd_data = configs[v][1], d.variant_bwd_weight = configs[v][2];
            d.storage = v >= bf16_from ? PP_STORAGE_BF16 : PP_STORAGE_F32;
            for (int si = 0; si < 2; si++) {
                pp_layer *layer;
                CHECK_OK(ctx[si], pp_layer_create(ctx[si], &d, &layer));
                layer_check_result r;
                CHECK_OK(ctx[si], layer_check_run(ctx[si], layer, &d, 77u + (uint32_t)ci, &r));
                int nk;
                pp_layer_kernel_count(layer, &nk);
                unsigned blocks[4] = {0, 0, 0, 0};
                for (int k = 0; k < nk && k < 4; k++) {
                    pp_kernel_info info;
                    pp_layer_kernel_info_get(layer, k, &info);
                    blocks[k] = info.block[0];
                    /* The static check is made on request only (pp_layer_kernel_check); once per
                     * configuration here, on the first shape. */
                    if (ci == 0 && si == 0) {
                        CHECK(info.registers == -1, "%s: registers known before the static check", info.name);
                        pp_kernel_info checked;
                        CHECK_OK(ctx[si], pp_layer_kernel_check(layer, k, &checked));
                        CHECK(checked.registers > 0 && checked.registers <= 255 && checked.spill_store_bytes == 0 &&
                                  checked.spill_load_bytes == 0 && checked.shared_bytes >= 0,
                              "%s: static check: %d registers, %d/%d spill bytes", info.name, checked.registers,
                              checked.spill_store_bytes, checked.spill_load_bytes);
                        CHECK(strcmp(checked.name, info.name) == 0 && checked.block[0] == info.block[0],
                              "the static check keeps the kernel's description");
                    }
                }
                printf("N%d C%-2d %2dx%-2d K%-2d %dx%d s%d p%d f%d %s %s v(%d,%d,%d) %s/%s/%s threads(%u,%u,%u) %s: "
                       "y %.1e xp %.1e dx %.1e dw %.1e (of allowed: %.2f %.2f %.2f %.2f)\n",
                       c->n, c->c, c->h, c->w, c->k, c->r, c->s, c->stride, c->pad, c->pool,
                       c->mode == PP_POOL_MAX ? "max" : "avg", r.bf16_storage ? "bf16-storage" : "fp32-storage",
                       d.variant_fwd, d.variant_bwd_data, d.variant_bwd_weight, r.math_y, r.math_dx, r.math_dw,
                       blocks[0], blocks[1], blocks[2], schedule_names[si], r.err_y, r.err_xp, r.err_dx, r.err_dw,
                       r.excess_y, r.excess_xp, r.excess_dx, r.excess_dw);
                CHECK(r.excess_y <= 1, "y (%s) error %.3e is %.2f of what is allowed", r.math_y, r.err_y, r.excess_y);
                CHECK(r.excess_xp <= 1, "xp error %.3e > tolerance %.3e", r.err_xp, r.tol_xp);
                CHECK(r.excess_dx <= 1, "dx (%s) error %.3e is %.2f of what is allowed", r.math_dx, r.err_dx,
                      r.excess_dx);
                CHECK(r.excess_dw <= 1, "dw (%s) error %.3e is %.2f of what is allowed", r.math_dw, r.err_dw,
                      r.excess_dw);
                /* Largest errors per precision: [math][output]. */
                double e[4] = {r.err_y, r.err_xp, r.err_dx, r.err_dw};
                const char *m4[4] = {r.math_y, "fp32", r.math_dx, r.math_dw};
                for (int i = 0; i < 4; i++) {
                    int m = r.bf16_storage ? 3 : strcmp(m4[i], "tf32") == 0 ? 1 : strcmp(m4[i], "bf16") == 0 ? 2 : 0;
                    if (e[i] > worst[m][i]) worst[m][i] = e[i];
                    outputs_of[m]++;
                }
                pp_layer_destroy(layer);
                runs++;
            }
        }
    }
    printf("%d layer runs match the reference; largest errors relative to the output's magnitude:\n", runs);
    const char *math_names[4] = {"fp32", "tf32", "bf16", "bf16 storage"};
    for (int m = 0; m < 4; m++) {
        if (!outputs_of[m])
            printf("  %s: not run\n", math_names[m]);
        else
            printf("  %s: y %.2e, xp %.2e, dx %.2e, dw %.2e\n", math_names[m], worst[m][0], worst[m][1], worst[m][2],
                   worst[m][3]);
    }
}

static const test_case tests[] = {
    TEST_CASE(variant_configurations,
              "each conv op declares fp32, TF32 and BF16 variants; its last fp32 one is pipelined (2 stages)"),
    TEST_CASE(check_bf16_bound_rejects,
              "the bf16 bound passes a result rounded to nearest, rejects a truncated one and one missing a channel"),
    TEST_CASE_AFTER(bf16_needs_bf16_variant, variant_configurations,
                    "bf16 storage with a TF32 variant, or an unknown storage, is PP_ERR_INVALID_ARGUMENT"),
    TEST_CASE_AFTER(shape_matrix, variant_configurations,
                    "15 shapes x 8 configurations x 2 schedules: y, xp, dx, dw within the stated bounds; no spills"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    quick = argc > 1 && strcmp(argv[1], "quick") == 0;
    only_bf16 = argc > 1 && strcmp(argv[1], "bf16") == 0;
    test_host_contexts(ctx);
    int status = TEST_RUN(tests, only);
    for (int i = 0; i < 2; i++) pp_context_destroy(ctx[i]);
    return status;
}
