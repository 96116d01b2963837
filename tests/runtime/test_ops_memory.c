/* test_ops_memory.c - the element-wise and pooling ops on the caller's memory (pp_op_*,
 * pp_relu_*, pp_maxpool_*, pp_batchnorm_*), on the host backend, against plain C written
 * from the contract in poolprop.h on the test's own channels-last (N,H,W,C) arrays:
 *   ReLU: y and the mask exactly (NaN, -0, infinities, a count that is not a multiple of 32
 *     with the mask's bits past the end 0, no word past the mask touched), dx exactly
 *     (a NaN gradient where the mask bit is clear gives 0), and in place (y = x, dx = dy)
 *     the same bits;
 *   max pool: 3x3 s2 p1 (ResNet's stem) and 2x2 s2 p0: y and argmax exactly (the first
 *     maximum in r-major order, a NaN wins), dx against the float64 scatter, where
 *     overlapping windows add several gradients into one element;
 *   batch norm: y, mean, invstd and PyTorch's running statistics after two calls
 *     (momentum 0.1 and a non-default momentum/eps on the sliced shape that uses the
 *     workspace) against the float64 formulas; backward dx, dgamma, dbeta against float64,
 *     with save_bf16 on the bf16-rounded x (whose bits must be the reference rounding's);
 *   refusals by name: NULL tensors, bad windows, a missing workspace, x_bf16 that does not
 *     match save_bf16, a call of the wrong kind, too few values for BN statistics.
 * Tolerances (u = 2^-24, fp32's unit roundoff) are stated at each comparison; selections
 * and copies (ReLU, max pool values and argmax, masks, bf16 bits) must match exactly. */
#include "ops_ref.h"
#include "test_util.h"

#include <math.h>

#define U (1.0 / 16777216.0)

static pp_context *ctx;
static uint64_t rng = 0x5DEECE66Dull;

static size_t at(const pp_op_desc *d, int n, int h, int w, int c)
{
    return (((size_t)n * d->h + h) * d->w + w) * d->c + c;
}

static int bit(const uint32_t *mask, size_t i) { return (int)((mask[i / 32] >> (i % 32)) & 1u); }

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* ---- ReLU ---- */

static void relu(void)
{
    pp_op_desc d;
    pp_op_desc_init(&d, PP_OP_RELU);
    d.n = 2, d.c = 3, d.h = 5, d.w = 7; /* 210 elements: 7 words, the last holds 18 */
    pp_op *op = NULL;
    CHECK_OK(ctx, pp_op_create(ctx, &d, &op));
    int p = 0, q = 0;
    size_t ws = 1;
    CHECK_OK(ctx, pp_op_output_size(op, &p, &q));
    CHECK_OK(ctx, pp_op_workspace_size(op, &ws));
    CHECK(p == 5 && q == 7 && ws == 0, "relu: output %dx%d, workspace %zu", p, q, ws);
    const size_t count = 210, words = (count + 31) / 32;
    float *x = test_rand_floats(&rng, count, -1, 1);
    x[3] = NAN, x[4] = -0.0f, x[5] = 0.0f, x[6] = INFINITY, x[7] = -INFINITY, x[8] = 0.75f, x[count - 1] = 0.5f;
    float *y = test_xmalloc(count * 4), *xy = test_xmalloc(count * 4);
    uint32_t *mask = test_xmalloc((words + 1) * 4), *mask2 = test_xmalloc((words + 1) * 4);
    memset(mask, 0xff, (words + 1) * 4), memset(mask2, 0xff, (words + 1) * 4);
    CHECK_OK(ctx, pp_relu_forward(op, x, y, mask, NULL));
    int active = 0;
    for (size_t i = 0; i < count; i++) {
        float want = x[i] < 0 ? 0.0f : x[i]; /* max(x, 0), NaN and -0 kept */
        CHECK(same_bits(y[i], want) || (isnan(x[i]) && isnan(y[i])), "relu: y[%zu] = %g for x %g", i, y[i], x[i]);
        CHECK(bit(mask, i) == (want > 0), "relu: mask bit %zu is %d for y %g", i, bit(mask, i), want);
        active += want > 0;
    }
    CHECK(mask[words - 1] >> (count % 32) == 0, "relu: mask bits past the end: word %08x", mask[words - 1]);
    CHECK(mask[words] == 0xffffffffu, "relu: the word after the mask was written: %08x", mask[words]);
    /* In place: y = x. */
    memcpy(xy, x, count * 4);
    CHECK_OK(ctx, pp_relu_forward(op, xy, xy, mask2, NULL));
    CHECK(memcmp(xy, y, count * 4) == 0 && memcmp(mask2, mask, words * 4) == 0, "relu: in place differs");

    float *dy = test_rand_floats(&rng, count, -1, 1), *dx = test_xmalloc(count * 4), *dd = test_xmalloc(count * 4);
    dy[3] = NAN; /* x[3] is NaN: bit clear, so dx is 0, not NaN */
    dy[8] = NAN; /* x[8] > 0: the NaN passes */
    CHECK_OK(ctx, pp_relu_backward(op, dy, mask, dx, NULL));
    CHECK(same_bits(dx[3], 0.0f) && isnan(dx[8]), "relu: NaN gradients: dx[3] = %g, dx[8] = %g", dx[3], dx[8]);
    for (size_t i = 0; i < count; i++) {
        float want = bit(mask, i) ? dy[i] : 0.0f;
        CHECK(same_bits(dx[i], want) || (isnan(want) && isnan(dx[i])), "relu: dx[%zu] = %g, want %g", i, dx[i], want);
    }
    memcpy(dd, dy, count * 4);
    CHECK_OK(ctx, pp_relu_backward(op, dd, mask, dd, NULL));
    CHECK(memcmp(dd, dx, count * 4) == 0, "relu: backward in place differs");
    printf("relu: %zu elements (%d active, NaN gradients at an inactive and an active element), y, mask, dx exact, "
           "in place too\n",
           count, active);

    /* Refusals. */
    CHECK(pp_relu_forward(op, x, y, NULL, NULL) == PP_ERR_INVALID_ARGUMENT &&
              strstr(pp_last_error(ctx), "tensor mask is NULL"),
          "relu: a NULL mask: %s", pp_last_error(ctx));
    CHECK(pp_relu_backward(op, NULL, mask, dx, NULL) == PP_ERR_INVALID_ARGUMENT &&
              strstr(pp_last_error(ctx), "tensor dy is NULL"),
          "relu: a NULL dy: %s", pp_last_error(ctx));
    CHECK(pp_maxpool_forward(op, x, y, (uint8_t *)mask, NULL) == PP_ERR_INVALID_ARGUMENT &&
              strstr(pp_last_error(ctx), "not a maxpool"),
          "relu: called as a max pool: %s", pp_last_error(ctx));
    free(x), free(y), free(xy), free(mask), free(mask2), free(dy), free(dx), free(dd);
    pp_op_destroy(op);
}

/* ---- max pool ---- */

static void maxpool_case(int n, int c, int h, int w, int window, int stride, int padding, int want_p, int want_q)
{
    pp_op_desc d;
    pp_op_desc_init(&d, PP_OP_MAXPOOL);
    d.n = n, d.c = c, d.h = h, d.w = w, d.window = window, d.stride = stride, d.padding = padding;
    pp_op *op = NULL;
    CHECK_OK(ctx, pp_op_create(ctx, &d, &op));
    int p = 0, q = 0;
    size_t ws = 1;
    CHECK_OK(ctx, pp_op_output_size(op, &p, &q));
    CHECK_OK(ctx, pp_op_workspace_size(op, &ws));
    CHECK(p == want_p && q == want_q, "maxpool %dx%d s%d p%d on %dx%d: output %dx%d, want %dx%d", window, window,
          stride, padding, h, w, p, q, want_p, want_q);
    const size_t xc = (size_t)n * h * w * c, yc = (size_t)n * p * q * c;
    float *x = test_rand_floats(&rng, xc, -1, 1);
    /* Ties: a repeated value in some windows (the first in r-major order must win), and a NaN. */
    for (size_t i = 0; i + 2 * c < xc; i += 5 * (size_t)c) x[i + 2 * c] = x[i];
    x[at(&d, n - 1, 1, 1, c - 1)] = NAN;
    float *y = test_xmalloc(yc * 4), *dy = test_rand_floats(&rng, yc, -1, 1), *dx = test_xmalloc(xc * 4);
    uint8_t *argmax = test_xmalloc(yc);
    CHECK_OK(ctx, pp_maxpool_forward(op, x, y, argmax, NULL));
    CHECK_OK(ctx, pp_maxpool_backward(op, dy, argmax, dx, NULL, NULL));

    double *dx_r = calloc(xc, sizeof *dx_r), *dx_abs = calloc(xc, sizeof *dx_abs);
    int *hits = calloc(xc, sizeof *hits), nans = 0, most = 0;
    CHECK(dx_r && dx_abs && hits, "out of memory");
    for (int b = 0; b < n; b++)
        for (int oy = 0; oy < p; oy++)
            for (int ox = 0; ox < q; ox++)
                for (int ch = 0; ch < c; ch++) {
                    float best = 0;
                    int arg = -1;
                    size_t src = 0;
                    for (int r = 0; r < window; r++)
                        for (int t = 0; t < window; t++) {
                            int hh = oy * stride + r - padding, ww = ox * stride + t - padding;
                            if (hh < 0 || hh >= h || ww < 0 || ww >= w) continue;
                            float v = x[at(&d, b, hh, ww, ch)];
                            int wins = arg < 0 || (isnan(v) && !isnan(best)) || (!isnan(best) && v > best);
                            if (wins) best = v, arg = r * window + t, src = at(&d, b, hh, ww, ch);
                        }
                    size_t o = (((size_t)b * p + oy) * q + ox) * c + ch;
                    CHECK(argmax[o] == arg, "maxpool: argmax at output %zu is %d, want %d", o, argmax[o], arg);
                    CHECK(same_bits(y[o], best) || (isnan(best) && isnan(y[o])), "maxpool: y[%zu] = %g, want %g", o,
                          y[o], best);
                    nans += isnan(best);
                    dx_r[src] += dy[o], dx_abs[src] += fabs(dy[o]), hits[src]++;
                    if (hits[src] > most) most = hits[src];
                }
    /* dx: the sum of at most `most` gradients, added in fp32: off by at most
     * (most - 1)*u*sum|dy| (0 where one gradient or none lands: a copy). */
    double worst = 0;
    for (size_t i = 0; i < xc; i++) {
        double err = fabs(dx[i] - dx_r[i]), tol = (most - 1) * U * dx_abs[i];
        CHECK(err <= tol, "maxpool: dx[%zu] = %.9g, want %.9g (%d gradients)", i, dx[i], dx_r[i], hits[i]);
        if (dx_abs[i] > 0 && err / dx_abs[i] > worst) worst = err / dx_abs[i];
    }
    CHECK(nans > 0, "maxpool: no window saw the NaN");
    if (stride < window) CHECK(most > 1, "maxpool: overlapping windows, yet no element is the argmax of two");
    printf("maxpool %dx%d s%d p%d on %dx%dx%dx%d -> %dx%d: y, argmax exact (%d NaN windows); dx: up to %d gradients "
           "per element, largest error %.2g of sum|dy| (tolerance (k-1)u)\n",
           window, window, stride, padding, n, h, w, c, p, q, nans, most, worst);
    CHECK(ws == 0, "maxpool: workspace %zu bytes (the gather needs none)", ws);
    CHECK(pp_maxpool_backward(op, dy, NULL, dx, NULL, NULL) == PP_ERR_INVALID_ARGUMENT &&
              strstr(pp_last_error(ctx), "tensor argmax is NULL"),
          "maxpool: a NULL argmax: %s", pp_last_error(ctx));
    free(x), free(y), free(dy), free(dx), free(argmax), free(dx_r), free(dx_abs), free(hits);
    pp_op_destroy(op);
}

static void maxpool(void)
{
    maxpool_case(2, 3, 9, 8, 3, 2, 1, 5, 4); /* ResNet's stem pool; windows overlap */
    maxpool_case(2, 5, 7, 6, 2, 2, 0, 3, 3); /* disjoint windows; the last row is in none */
}

/* ---- batch norm ---- */

typedef struct bn_case {
    const char *name;
    int n, c, h, w, save_bf16;
    double momentum, eps;
} bn_case;

/* float64 statistics of channel ch over the m = n*h*w values of x (NHWC). */
static void stats64(const pp_op_desc *d, const float *x, int ch, double *mean, double *var)
{
    size_t m = (size_t)d->n * d->h * d->w;
    double s = 0, v = 0;
    for (size_t j = 0; j < m; j++) s += x[j * d->c + ch];
    s /= (double)m;
    for (size_t j = 0; j < m; j++) v += (x[j * d->c + ch] - s) * (x[j * d->c + ch] - s);
    *mean = s, *var = v / (double)m;
}

static void batchnorm_case(const bn_case *bc)
{
    pp_op_desc d;
    pp_op_desc_init(&d, PP_OP_BATCHNORM);
    CHECK(d.eps == 1e-5 && d.momentum == 0.1, "pp_op_desc_init: eps %g, momentum %g", d.eps, d.momentum);
    d.n = bc->n, d.c = bc->c, d.h = bc->h, d.w = bc->w, d.save_bf16 = bc->save_bf16;
    d.momentum = bc->momentum, d.eps = bc->eps;
    pp_op *op = NULL;
    CHECK_OK(ctx, pp_op_create(ctx, &d, &op));
    size_t ws = 0;
    CHECK_OK(ctx, pp_op_workspace_size(op, &ws));
    const int c = d.c;
    const size_t m = (size_t)d.n * d.h * d.w, count = m * c;
    unsigned char *workspace = ws ? test_xmalloc(ws) : NULL;
    float *gamma = test_rand_floats(&rng, c, 0.5f, 1.5f), *beta = test_rand_floats(&rng, c, -0.5f, 0.5f);
    float *rm = test_xmalloc(c * 4), *rv = test_xmalloc(c * 4), *mean = test_xmalloc(c * 4);
    float *invstd = test_xmalloc(c * 4), *y = test_xmalloc(count * 4);
    uint16_t *x_bf16 = bc->save_bf16 ? test_xmalloc(count * 2) : NULL;
    double *rm_r = test_xmalloc(c * 8), *rv_r = test_xmalloc(c * 8);
    for (int ch = 0; ch < c; ch++) rm[ch] = 0, rv[ch] = 1, rm_r[ch] = 0, rv_r[ch] = 1; /* PyTorch's start */

    /* Tolerances. Each statistic is an fp32 Welford chain of at most ceil(m/16) updates (a
     * block's pixel groups: THREADS/CT >= 128/8 = 16) and a merge tree of at most 9 levels,
     * 8 more for the sliced form's merge of the slices, each off by a few u of the data's
     * magnitude; with kappa = 1 + |mean - K|/std (K the channel's first value, the kernels'
     * shift), invstd errs by (steps + 8)*u*kappa relative (as test_train_ops derives). */
    const double steps = ceil((double)m / 16) + 9 + 8;
    double *x_mean = test_xmalloc(c * 8), *x_var = test_xmalloc(c * 8);
    float *x = NULL;
    double worst_y = 0, worst_stat = 0;
    for (int call = 0; call < 2; call++) {
        free(x);
        x = test_rand_floats(&rng, count, -1, 1);
        for (size_t i = 0; i < count; i++) x[i] += 0.25f * (float)(i % c); /* a different mean per channel */
        double kappa = 1, xmax = 0;
        for (int ch = 0; ch < c; ch++) {
            stats64(&d, x, ch, &x_mean[ch], &x_var[ch]);
            double k = 1 + fabs(x_mean[ch] - x[ch]) / sqrt(x_var[ch]);
            if (k > kappa) kappa = k;
        }
        for (size_t i = 0; i < count; i++) xmax = fmax(xmax, fabs(x[i]));
        const double tol_mean = (steps + 4) * U * xmax, tol_invstd = (steps + 8) * U * kappa;
        CHECK_OK(ctx, pp_batchnorm_forward(op, x, gamma, beta, rm, rv, y, mean, invstd, x_bf16, workspace, NULL));
        for (int ch = 0; ch < c; ch++) {
            /* The kernels see momentum and eps as float32. */
            const double mom = (float)d.momentum, is = 1 / sqrt(x_var[ch] + (float)d.eps);
            rm_r[ch] = (1 - mom) * rm_r[ch] + mom * x_mean[ch];
            rv_r[ch] = (1 - mom) * rv_r[ch] + mom * x_var[ch] * (double)m / (double)(m - 1);
            CHECK(fabs(mean[ch] - x_mean[ch]) <= tol_mean, "%s call %d: mean[%d] = %.9g, want %.9g", bc->name, call, ch,
                  mean[ch], x_mean[ch]);
            CHECK(fabs(invstd[ch] - is) <= tol_invstd * is, "%s call %d: invstd[%d] = %.9g, want %.9g", bc->name, call,
                  ch, invstd[ch], is);
            /* Running statistics: the update adds three roundings (running_mean, relative to
             * max|x| + |running_mean|) and twice invstd's relative error (var against
             * 1/sqrt(var)) to the variance; the second call carries the first's error on,
             * scaled by 1 - momentum. */
            double e_rm = fabs(rm[ch] - rm_r[ch]), e_rv = fabs(rv[ch] - rv_r[ch]) / rv_r[ch];
            CHECK(e_rm <= 2 * (tol_mean + 4 * U * (xmax + 1)), "%s call %d: running_mean[%d] = %.9g, want %.9g",
                  bc->name, call, ch, rm[ch], rm_r[ch]);
            CHECK(e_rv <= 2 * (2 * tol_invstd + 8 * U), "%s call %d: running_var[%d] = %.9g, want %.9g (unbiased)",
                  bc->name, call, ch, rv[ch], rv_r[ch]);
            worst_stat = fmax(worst_stat, fmax(fabs(invstd[ch] - is) / is, e_rv));
        }
        /* y = gamma*(x - mean)*invstd + beta: the statistics' errors above (mean's through
         * invstd*|gamma|, invstd's relative through |gamma*xhat|) plus 4 roundings. */
        for (size_t i = 0; i < count; i++) {
            int ch = (int)(i % c);
            double is = 1 / sqrt(x_var[ch] + (float)d.eps), xhat = (x[i] - x_mean[ch]) * is;
            double want = gamma[ch] * xhat + beta[ch];
            double tol = (tol_invstd + 4 * U) * (fabs(gamma[ch] * xhat) + fabs(beta[ch])) + gamma[ch] * is * tol_mean;
            CHECK(fabs(y[i] - want) <= tol, "%s call %d: y[%zu] = %.9g, want %.9g (tolerance %.3g)", bc->name, call, i,
                  y[i], want, tol);
            worst_y = fmax(worst_y, fabs(y[i] - want) / tol);
            if (x_bf16)
                CHECK(x_bf16[i] == bf16_round_ref(x[i]), "%s: x_bf16[%zu] = %04x, want %04x", bc->name, i, x_bf16[i],
                      bf16_round_ref(x[i]));
        }
    }

    /* Backward, from the saved input as the forward left it (x, or its bf16 copy) and the
     * mean and invstd it wrote, against float64 on those same values. */
    float *saved = test_xmalloc(count * 4);
    for (size_t i = 0; i < count; i++) saved[i] = x_bf16 ? bf16_to_float_ref(x_bf16[i]) : x[i];
    float *dy = test_rand_floats(&rng, count, -1, 1), *dx = test_xmalloc(count * 4);
    float *dgamma = test_xmalloc(c * 4), *dbeta = test_xmalloc(c * 4);
    CHECK_OK(ctx, pp_batchnorm_backward(op, dy, x_bf16 ? (const void *)x_bf16 : (const void *)x, gamma, mean, invstd,
                                        dx, dgamma, dbeta, workspace, NULL));
    double *sum_dy = calloc(c, 8), *sum_dyx = calloc(c, 8), *abs_dy = calloc(c, 8), *abs_dyx = calloc(c, 8);
    CHECK(sum_dy && sum_dyx && abs_dy && abs_dyx, "out of memory");
    for (size_t i = 0; i < count; i++) {
        int ch = (int)(i % c);
        double xhat = (saved[i] - (double)mean[ch]) * invstd[ch];
        sum_dy[ch] += dy[i], abs_dy[ch] += fabs(dy[i]);
        sum_dyx[ch] += dy[i] * xhat, abs_dyx[ch] += fabs(dy[i] * xhat);
    }
    /* Sums of m terms in fp32 along the same chains as the statistics: steps*u of the sum of
     * the terms' magnitudes; dgamma's terms carry 3 more roundings (xhat, the product). */
    double worst_g = 0, worst_dx = 0;
    for (int ch = 0; ch < c; ch++) {
        double tb = steps * U * abs_dy[ch], tg = (steps + 3) * U * abs_dyx[ch];
        CHECK(fabs(dbeta[ch] - sum_dy[ch]) <= tb, "%s: dbeta[%d] = %.9g, want %.9g", bc->name, ch, dbeta[ch],
              sum_dy[ch]);
        CHECK(fabs(dgamma[ch] - sum_dyx[ch]) <= tg, "%s: dgamma[%d] = %.9g, want %.9g", bc->name, ch, dgamma[ch],
              sum_dyx[ch]);
        worst_g = fmax(worst_g, fmax(fabs(dbeta[ch] - sum_dy[ch]) / tb, fabs(dgamma[ch] - sum_dyx[ch]) / tg));
    }
    /* dx = gamma*invstd*(dy - dbeta/m - xhat*dgamma/m): the sums' errors over m, plus 6
     * roundings of the terms' magnitudes. */
    for (size_t i = 0; i < count; i++) {
        int ch = (int)(i % c);
        double is = invstd[ch], xhat = (saved[i] - (double)mean[ch]) * is;
        double want = gamma[ch] * is * (dy[i] - sum_dy[ch] / m - xhat * sum_dyx[ch] / m);
        double terms = fabs(dy[i]) + abs_dy[ch] / m + fabs(xhat) * abs_dyx[ch] / m;
        double tol = gamma[ch] * is * (steps + 8) * U * terms;
        CHECK(fabs(dx[i] - want) <= tol, "%s: dx[%zu] = %.9g, want %.9g (tolerance %.3g)", bc->name, i, dx[i], want,
              tol);
        worst_dx = fmax(worst_dx, fabs(dx[i] - want) / tol);
    }
    printf("%s: n%d c%d %dx%d%s, momentum %g eps %g, workspace %zu bytes: statistics (worst rel. %.2g), y (%.2f of "
           "tolerance), running stats after 2 calls; dgamma/dbeta (%.2f), dx (%.2f) of their tolerances\n",
           bc->name, d.n, d.c, d.h, d.w, bc->save_bf16 ? " save_bf16" : "", d.momentum, d.eps, ws, worst_stat, worst_y,
           worst_g, worst_dx);

    /* Refusals. */
    CHECK(pp_batchnorm_forward(op, x, gamma, NULL, rm, rv, y, mean, invstd, x_bf16, workspace, NULL) ==
                  PP_ERR_INVALID_ARGUMENT &&
              strstr(pp_last_error(ctx), "tensor beta is NULL"),
          "%s: a NULL beta: %s", bc->name, pp_last_error(ctx));
    uint16_t other;
    CHECK(pp_batchnorm_forward(op, x, gamma, beta, rm, rv, y, mean, invstd, x_bf16 ? NULL : &other, workspace, NULL) ==
                  PP_ERR_INVALID_ARGUMENT &&
              strstr(pp_last_error(ctx), "x_bf16"),
          "%s: x_bf16 against save_bf16: %s", bc->name, pp_last_error(ctx));
    if (ws) {
        CHECK(pp_batchnorm_forward(op, x, gamma, beta, rm, rv, y, mean, invstd, x_bf16, NULL, NULL) ==
                      PP_ERR_INVALID_ARGUMENT &&
                  strstr(pp_last_error(ctx), "needs a workspace of"),
              "%s: a NULL workspace (forward): %s", bc->name, pp_last_error(ctx));
        CHECK(pp_batchnorm_backward(op, dy, x, gamma, mean, invstd, dx, dgamma, dbeta, NULL, NULL) ==
                      PP_ERR_INVALID_ARGUMENT &&
                  strstr(pp_last_error(ctx), "needs a workspace of"),
              "%s: a NULL workspace (backward): %s", bc->name, pp_last_error(ctx));
    }
    free(workspace), free(gamma), free(beta), free(rm), free(rv), free(mean), free(invstd), free(y), free(x_bf16);
    free(rm_r), free(rv_r), free(x_mean), free(x_var), free(x), free(saved), free(dy), free(dx), free(dgamma);
    free(dbeta), free(sum_dy), free(sum_dyx), free(abs_dy), free(abs_dyx);
    pp_op_destroy(op);
}

static void batchnorm(void)
{
    const bn_case one = {"one-pass", 2, 5, 3, 4, 0, 0.1, 1e-5};
    batchnorm_case(&one);
}

static void batchnorm_bf16(void)
{
    const bn_case bf16 = {"one-pass bf16", 2, 5, 3, 4, 1, 0.1, 1e-5};
    batchnorm_case(&bf16);
}

static void batchnorm_sliced(void)
{
    /* m = 2*24*24 = 1152 rows of 3 channels: the plan slices it (two slices of 576 rows). */
    const bn_case sliced = {"sliced", 2, 3, 24, 24, 0, 0.3, 1e-3};
    batchnorm_case(&sliced);
}

/* ---- refusals at creation ---- */

static void expect_create_error(const pp_op_desc *d, pp_status want, const char *fragment)
{
    static int sentinel;
    pp_op *op = (pp_op *)&sentinel; /* pp_op_create must set it to NULL on failure */
    pp_status st = pp_op_create(ctx, d, &op);
    CHECK(st == want && op == NULL && strstr(pp_last_error(ctx), fragment), "want %s with '%s', got %s: %s",
          pp_status_string(want), fragment, pp_status_string(st), pp_last_error(ctx));
    printf("refused: %s\n", pp_last_error(ctx));
}

static void create_errors(void)
{
    pp_op_desc d;
    pp_op_desc_init(&d, PP_OP_MAXPOOL);
    d.n = 1, d.c = 2, d.h = 8, d.w = 8, d.window = 3, d.stride = 2, d.padding = 2;
    expect_create_error(&d, PP_ERR_INVALID_ARGUMENT, "padding 2 exceeds window/2 = 1");
    d.padding = 0, d.window = 0;
    expect_create_error(&d, PP_ERR_INVALID_ARGUMENT, "window and stride must be positive");
    d.window = 3, d.stride = 0;
    expect_create_error(&d, PP_ERR_INVALID_ARGUMENT, "window and stride must be positive");
    d.stride = 1, d.window = 17;
    expect_create_error(&d, PP_ERR_INVALID_ARGUMENT, "argmax");
    d.window = 9;
    expect_create_error(&d, PP_ERR_SHAPE, "does not fit");
    d.window = 3, d.save_bf16 = 1;
    expect_create_error(&d, PP_ERR_INVALID_ARGUMENT, "save_bf16 is a batch-norm option");
    pp_op_desc_init(&d, PP_OP_RELU);
    d.n = 1, d.c = 0, d.h = 4, d.w = 4;
    expect_create_error(&d, PP_ERR_SHAPE, "each must be positive");
    pp_op_desc_init(&d, PP_OP_BATCHNORM);
    d.n = 1, d.c = 4, d.h = 1, d.w = 1;
    expect_create_error(&d, PP_ERR_SHAPE, "more than one value per channel");
    d.kind = (pp_op_kind)7;
    expect_create_error(&d, PP_ERR_INVALID_ARGUMENT, "kind 7");
    CHECK(pp_op_create(ctx, NULL, &(pp_op *){NULL}) == PP_ERR_INVALID_ARGUMENT &&
              strstr(pp_last_error(ctx), "NULL desc"),
          "a NULL desc: %s", pp_last_error(ctx));
}

static const test_case tests[] = {
    TEST_CASE(relu, "ReLU: y, the 1-bit mask and dx exactly (NaN, -0, a partial last word), in place too"),
    TEST_CASE(maxpool, "max pool 3x3 s2 p1 and 2x2 s2 p0: y and argmax exactly, dx with overlapping windows"),
    TEST_CASE(batchnorm, "batch norm (one pass): y, statistics, running stats after two calls, backward"),
    TEST_CASE(batchnorm_bf16, "batch norm with save_bf16: the bf16 save's bits, backward on the rounded x"),
    TEST_CASE(batchnorm_sliced, "batch norm in the sliced form with its workspace, momentum 0.3 and eps 1e-3"),
    TEST_CASE(create_errors, "bad windows, shapes and options are refused at pp_op_create by name"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_HOST;
    o.host_threads = 2;
    CHECK_OK(ctx, pp_context_create(&o, &ctx));
    double t0 = test_now_s();
    int status = TEST_RUN(tests, only);
    printf("%.1f s\n", test_now_s() - t0);
    pp_context_destroy(ctx);
    return status;
}
