/* test_conv_variants.c - the variant spaces' code paths on the host emulation backend,
 * against the plain C reference, in both thread schedules. Running all of the ~1000
 * convolution variants on the host would take about 20 minutes, so the test runs a
 * covering set instead: for each op, variants picked in index order until every value of
 * every tile parameter (BM, BN, BK, TM, TN, WARPS_M, WARPS_N, STAGES, MATH, MAX_SPLITS)
 * and every (MATH, BK) pair has run at least once (the pipeline, gemm_mainloop.cuh, does
 * not depend on the math; the fragment loops depend on both). The ops' sets run in
 * lockstep (configuration j uses the j-th variant of each, the last repeated), on two
 * shapes: one whose channel counts are multiples of every K-tile and block width (the
 * iterators' tap-aligned and one-tap paths) and one whose are not (the general paths).
 * bf16 storage (PP_STORAGE_BF16), which only the BF16 variants take: a second covering set
 * over the BF16 variants alone (every value of every parameter among them), run with bf16
 * storage on the two shapes and a third whose channel counts are 2 mod 4 (C = 6, K = 10:
 * the 4-byte copies; the unaligned shape's C = 20, K = 12 take the 8-byte ones, the aligned
 * shape the 16-byte ones; the stem's 2-byte copies run in test_conv_kernels).
 * Every variant compiles and stays within registers without spills: test_kernel_compile.
 * Tolerances: reference/layer_check.c, as test_conv_kernels (for bf16 storage: the bf16
 * output bound stated there). */
#include "layer_check.h"
#include "test_util.h"

#include <stdio.h>
#include <string.h>

enum {
    max_items = 256,
    max_picked = 64
};

typedef struct coverage {
    char items[max_items][48]; /* "KEY=VALUE" or "MATH=.. BK=.." already run */
    int count;
} coverage;

static int covered(const coverage *c, const char *item)
{
    for (int i = 0; i < c->count; i++)
        if (strcmp(c->items[i], item) == 0) return 1;
    return 0;
}

static void cover(coverage *c, const char *item)
{
    if (covered(c, item)) return;
    CHECK(c->count < max_items, "too many coverage items");
    snprintf(c->items[c->count++], sizeof c->items[0], "%.47s", item);
}

/* The value of key in a variant's "BK=16 BM=64 ..." configuration, or "" when absent. */
static void config_value(const char *config, const char *key, char *out, size_t size)
{
    char pattern[32];
    snprintf(pattern, sizeof pattern, "%s=", key);
    out[0] = '\0';
    for (const char *p = config; (p = strstr(p, pattern)) != NULL; p++) {
        if (p != config && p[-1] != ' ') continue;
        size_t n = strcspn(p + strlen(pattern), " ");
        if (n >= size) n = size - 1;
        memcpy(out, p + strlen(pattern), n);
        out[n] = '\0';
        return;
    }
}

/* A variant's coverage items: each parameter's value, and its (MATH, BK). */
static int variant_items(const char *config, char items[][48])
{
    static const char *const keys[] = {"BM",      "BN",      "BK",     "TM",   "TN",
                                       "WARPS_M", "WARPS_N", "STAGES", "MATH", "MAX_SPLITS"};
    int n = 0;
    char v[16], math[16], bk[16];
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        config_value(config, keys[k], v, sizeof v);
        if (v[0]) snprintf(items[n++], 48, "%s=%s", keys[k], v);
    }
    config_value(config, "MATH", math, sizeof math);
    config_value(config, "BK", bk, sizeof bk);
    snprintf(items[n++], 48, "MATH=%s BK=%s", math, bk);
    return n;
}

/* Variants of op (only_math: those of that math, else all), in index order, each adding
 * at least one item not yet covered. */
static int pick_covering(pp_context *ctx, const char *op, const char *only_math, int picked[max_picked])
{
    int count, n = 0;
    CHECK_OK(ctx, pp_layer_variant_count(ctx, op, &count));
    coverage c = {.count = 0};
    for (int v = 1; v <= count; v++) {
        pp_variant_info vi;
        CHECK_OK(ctx, pp_layer_variant_info(ctx, op, v, &vi));
        if (only_math && strcmp(vi.math, only_math) != 0) continue;
        char items[16][48];
        int ni = variant_items(vi.config, items), fresh = 0;
        for (int i = 0; i < ni; i++) fresh |= !covered(&c, items[i]);
        if (!fresh) continue;
        CHECK(n < max_picked, "%s: the covering set grew past %d variants", op, max_picked);
        picked[n++] = v;
        for (int i = 0; i < ni; i++) cover(&c, items[i]);
    }
    /* Every item of the space is covered: a second pass adds nothing. */
    for (int v = 1; v <= count; v++) {
        pp_variant_info vi;
        CHECK_OK(ctx, pp_layer_variant_info(ctx, op, v, &vi));
        if (only_math && strcmp(vi.math, only_math) != 0) continue;
        char items[16][48];
        int ni = variant_items(vi.config, items);
        for (int i = 0; i < ni; i++) CHECK(covered(&c, items[i]), "%s v%d: %s not covered", op, v, items[i]);
    }
    printf("%s: %d of %d variants%s cover %d parameter values and combinations\n", op, n, count,
           only_math ? " (BF16 only)" : "", c.count);
    return n;
}

/* Runs the ops' covering sets in lockstep (configuration j uses the j-th variant of each,
 * the last repeated) on the shapes, in both schedules; returns the number of layer runs. */
static int run_covering(pp_context *ctx[2], int picked[3][max_picked], const int counts[3], const int shapes[][10],
                        int n_shapes, pp_storage storage)
{
    int configs = 0, runs = 0;
    for (int o = 0; o < 3; o++)
        if (counts[o] > configs) configs = counts[o];
    for (int j = 0; j < configs; j++) {
        int v[3];
        for (int o = 0; o < 3; o++) v[o] = picked[o][j < counts[o] ? j : counts[o] - 1];
        for (int sh = 0; sh < n_shapes; sh++) {
            const int *s = shapes[sh];
            pp_layer_desc d;
            pp_layer_desc_init(&d);
            d.n = s[0], d.c = s[1], d.h = s[2], d.w = s[3], d.k = s[4], d.r = s[5], d.s = s[6];
            d.stride = s[7], d.pad = s[8], d.pool = s[9], d.pool_mode = PP_POOL_AVG;
            d.variant_fwd = v[0], d.variant_bwd_data = v[1], d.variant_bwd_weight = v[2];
            d.storage = storage;
            for (int si = 0; si < 2; si++) {
                pp_layer *layer;
                CHECK_OK(ctx[si], pp_layer_create(ctx[si], &d, &layer));
                layer_check_result r;
                CHECK_OK(ctx[si], layer_check_run(ctx[si], layer, &d, 101u + (uint32_t)j, &r));
                printf("v(%3d,%3d,%3d) %s/%s/%s %s C%-3d K%-3d %s: y %.1e dx %.1e dw %.1e (of allowed: %.2f %.2f "
                       "%.2f %.2f)\n",
                       v[0], v[1], v[2], r.math_y, r.math_dx, r.math_dw,
                       storage == PP_STORAGE_BF16 ? "bf16-storage" : "fp32-storage", d.c, d.k,
                       si ? "reverse" : "forward", r.err_y, r.err_dx, r.err_dw, r.excess_y, r.excess_xp, r.excess_dx,
                       r.excess_dw);
                CHECK(r.excess_y <= 1, "y (%s) error %.3e is %.2f of what is allowed", r.math_y, r.err_y, r.excess_y);
                CHECK(r.excess_xp <= 1, "xp error %.3e is %.2f of what is allowed", r.err_xp, r.excess_xp);
                CHECK(r.excess_dx <= 1, "dx (%s) error %.3e is %.2f of what is allowed", r.math_dx, r.err_dx,
                      r.excess_dx);
                CHECK(r.excess_dw <= 1, "dw (%s) error %.3e is %.2f of what is allowed", r.math_dw, r.err_dw,
                      r.excess_dw);
                pp_layer_destroy(layer);
                runs++;
            }
        }
    }
    printf("%d layer runs of %d covering configurations (%s storage) match the reference in both schedules\n", runs,
           configs, storage == PP_STORAGE_BF16 ? "bf16" : "fp32");
    return runs;
}

static pp_context *ctx[2]; /* host backend: forward and reverse schedule */
static const char *ops[3] = {"conv_fwd", "conv_bwd_data", "conv_bwd_weight"};
/* Aligned: C, K multiples of 128 and of every BK (tap-aligned K-tiles, one-tap weight
 * gradient blocks), stride 2 (input-gradient phases with 4, 2, 2 and 1 taps).
 * Unaligned: channel counts multiples of 4 (16-byte fp32 copies) but of no K-tile.
 * Two mod four (bf16 only): C = 6, K = 10. */
static const int shapes[3][10] = {
    {1, 128, 7, 7, 128, 3, 3, 2, 1, 2}, {2, 20, 7, 6, 12, 3, 3, 1, 1, 2}, {2, 6, 6, 5, 10, 3, 3, 1, 1, 2}};

static void fp32_storage_covering_set(void)
{
    int picked[3][max_picked], counts[3];
    for (int o = 0; o < 3; o++) counts[o] = pick_covering(ctx[0], ops[o], NULL, picked[o]);
    run_covering(ctx, picked, counts, shapes, 2, PP_STORAGE_F32);
}

static void bf16_storage_covering_set(void)
{
    int picked[3][max_picked], counts[3];
    for (int o = 0; o < 3; o++) counts[o] = pick_covering(ctx[0], ops[o], "bf16", picked[o]);
    run_covering(ctx, picked, counts, shapes, 3, PP_STORAGE_BF16);
}

static const test_case tests[] = {
    TEST_CASE(fp32_storage_covering_set,
              "variants covering every tile parameter value of each op match the reference on 2 shapes, 2 schedules"),
    TEST_CASE(bf16_storage_covering_set,
              "BF16 variants covering every parameter value, bf16 storage: within the bf16 bound on 3 shapes"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    test_host_contexts(ctx);
    int status = TEST_RUN(tests, only);
    for (int i = 0; i < 2; i++) pp_context_destroy(ctx[i]);
    return status;
}
