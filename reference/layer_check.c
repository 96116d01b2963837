/* layer_check.c - a generated layer against the C reference (see layer_check.h).
 *
 * Tolerances: the kernels accumulate in fp32 (FFMA), the reference in double. For a dot
 * product of n terms whose products have random signs, fp32 rounding grows like
 * u*sqrt(n)*|terms| with u = 2^-24; relative to the output's largest magnitude (itself
 * about sqrt(n)*|terms| / 3 for uniform inputs) that stays below 16*u*sqrt(n) with a wide
 * margin. The tolerance is that bound with n the reduction length of each output, never
 * smaller than 1e-6. Average pooling sums at most 64 values: 1e-6. Max pooling and
 * un-pooling copy values: exact (0).
 *
 * Tensor-core outputs (TF32, BF16) get a rigorous bound, element by element. Each input is
 * rounded to the format (unit roundoff u = 2^-11 for TF32 with cvt.rna, 2^-8 for BF16 with
 * cvt.rn), so each product is off by at most (2u + u^2)|a||b|; the products are exact in
 * f32, and n of them added in f32 in any order (the hardware's is unspecified) add at
 * most n*2^-23*sum|a||b| (2^-23: the adders may truncate). So
 *     |kernel - reference| <= (2.01u + n*2^-23) * sum|a||b|   for every element,
 * where sum|a||b| is the reference convolution of the inputs' absolute values.
 *
 * bf16 storage (PP_STORAGE_BF16): the inputs x, w, dy are drawn, then rounded to bf16, and
 * the reference runs on those same values, so the products carry no input rounding: only
 * the fp32 accumulation (any order) differs, by at most E = n*2^-23*sum|a||b|. y and dx are
 * that fp32 sum rounded to bf16 to nearest even, off by at most half a bf16 ulp of the
 * sum's binade (at most 2^-8 relative: 8 significant bits), so for every element
 *     |kernel - reference| <= halfulp_bf16(|reference| + E) + E + 2^-24|reference|
 * (the last term: the reference itself is a double sum rounded to float). Where E is small
 * against an ulp (short reductions), a rounding that is not to nearest (truncation errs by
 * up to a whole ulp) or a missing input channel exceeds it: test_conv_kernels shows both.
 * dw is fp32 from bf16 dy and the kernel's own bf16 xp, un-pooled: |dw - ref| <= E (u = 0
 * above). xp: average pooling is the fp32 mean of bf16 values rounded to bf16: within
 * halfulp_bf16(|mean| + e) + e of the reference mean, e = 1e-6 of the largest |x| (the
 * fp32 tolerance of a mean); max pooling picks a bf16 value: exact. */
#include "layer_check.h"

#include "conv_ref.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fill_uniform(float *a, size_t n, uint32_t *state)
{
    for (size_t i = 0; i < n; i++) {
        *state ^= *state << 13;
        *state ^= *state >> 17;
        *state ^= *state << 5;
        a[i] = (float)((*state >> 8) * (1.0 / 16777216.0) * 2.0 - 1.0);
    }
}

static double dot_tolerance(double terms)
{
    double tol = 16.0 * ldexp(1.0, -24) * sqrt(terms);
    return tol > 1e-6 ? tol : 1e-6;
}

/* Unit roundoff of a math mode's operands; 0 for fp32 (which uses the statistical bound). */
static double operand_roundoff(const char *math)
{
    if (strcmp(math, "tf32") == 0) return ldexp(1.0, -11);
    if (strcmp(math, "bf16") == 0) return ldexp(1.0, -8);
    return 0.0;
}

/* max_i |a - ref| / ((2.01u + n*2^-23) * abs_ref), with abs_ref the |a||b| convolution. */
static double bound_excess(const float *a, const float *ref, const float *abs_ref, size_t count, double u, double terms)
{
    const double factor = 2.01 * u + terms * ldexp(1.0, -23);
    double worst = 0;
    for (size_t i = 0; i < count; i++) {
        double d = fabs((double)a[i] - (double)ref[i]);
        if (isnan(d)) return INFINITY;
        double allowed = factor * (double)abs_ref[i] + 1e-30;
        if (d / allowed > worst) worst = d / allowed;
    }
    return worst;
}

float layer_check_bf16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) <= 0x7f800000u) u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

float layer_check_bf16_truncate(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    u &= 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

/* Half the spacing of bf16 values in the binade of v >= 0 (8 significant bits). */
static double bf16_half_ulp(double v)
{
    if (v <= 0) return 0;
    int e;
    frexp(v, &e); /* v in [2^(e-1), 2^e) */
    return ldexp(1.0, e - 9);
}

double layer_check_bf16_excess(const float *out, const float *ref, const float *abs_ref, size_t count, double terms)
{
    double worst = 0;
    for (size_t i = 0; i < count; i++) {
        double d = fabs((double)out[i] - (double)ref[i]);
        if (isnan(d)) return INFINITY;
        double e = terms * ldexp(1.0, -23) * (double)abs_ref[i];
        double allowed = bf16_half_ulp(fabs((double)ref[i]) * (1 + ldexp(1.0, -23)) + e) + e +
                         ldexp(fabs((double)ref[i]), -24) + 1e-30;
        if (d / allowed > worst) worst = d / allowed;
    }
    return worst;
}

/* xp of bf16 storage against the reference pooling (comment at the top). */
static double bf16_pool_excess(const float *xp, const float *ref, size_t count, int pool_max, double x_magnitude)
{
    double worst = 0, e = 1e-6 * x_magnitude;
    for (size_t i = 0; i < count; i++) {
        double d = fabs((double)xp[i] - (double)ref[i]);
        if (isnan(d)) return INFINITY;
        if (pool_max) {
            if (d > 0) return INFINITY;
            continue;
        }
        double allowed = bf16_half_ulp(fabs((double)ref[i]) + e) + e;
        if (d / allowed > worst) worst = d / allowed;
    }
    return worst;
}

static void absolute(const float *a, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = fabsf(a[i]);
}

/* The precision the layer's kernel of op computes in. */
static void kernel_math(pp_layer *layer, const char *op, char out[8])
{
    snprintf(out, 8, "fp32");
    int count = 0;
    pp_layer_kernel_count(layer, &count);
    for (int i = 0; i < count; i++) {
        pp_kernel_info info;
        if (pp_layer_kernel_info_get(layer, i, &info) == PP_OK && strcmp(info.op, op) == 0 && info.math)
            snprintf(out, 8, "%s", info.math);
    }
}

pp_status layer_check_run(pp_context *ctx, pp_layer *layer, const pp_layer_desc *d, uint32_t seed,
                          layer_check_result *out)
{
    memset(out, 0, sizeof *out);
    pp_layer_shape s;
    pp_status st = pp_layer_shape_get(layer, &s);
    if (st != PP_OK) return st;
    conv_ref_shape sh = {
        d->n, d->c, d->h, d->w, d->k, d->r, d->s, d->stride, d->pad, d->pool, d->pool_mode == PP_POOL_MAX, 0, 0, 0, 0};
    /* The generator accepted d; a shape the reference cannot index, or whose output extents
     * are not the layer's (the arrays below are sized by the layer), is still refused. */
    if (conv_ref_derive(&sh) != 0 || (size_t)d->n * d->k * sh.p * sh.q != s.y_elems ||
        (size_t)d->n * d->c * sh.hp * sh.wp != s.xp_elems)
        return PP_ERR_SHAPE;
    size_t nx = s.x_elems, nw = s.w_elems, ny = s.y_elems, np = s.xp_elems;
    float *buf = malloc(sizeof(float) * (3 * nx + 2 * nw + 3 * ny + 2 * np + nx));
    if (!buf) return PP_ERR_OUT_OF_MEMORY;
    float *x = buf, *w = x + nx, *dy = w + nw, *y = dy + ny, *xp = y + ny, *dx = xp + np, *dw = dx + nx;
    float *ry = dw + nw, *rxp = ry + ny, *rdx = rxp + np, *rxu = rdx + nx;
    uint32_t state = seed ? seed : 1;
    fill_uniform(x, nx, &state);
    fill_uniform(w, nw, &state);
    fill_uniform(dy, ny, &state);
    const int bf16 = d->storage == PP_STORAGE_BF16;
    if (bf16) {
        for (size_t i = 0; i < nx; i++) x[i] = layer_check_bf16_round(x[i]);
        for (size_t i = 0; i < nw; i++) w[i] = layer_check_bf16_round(w[i]);
        for (size_t i = 0; i < ny; i++) dy[i] = layer_check_bf16_round(dy[i]);
    }
    out->bf16_storage = bf16;
    st = pp_layer_run(layer, x, w, dy, y, xp, dx, dw);
    if (st == PP_OK) {
        conv_fwd_ref(&sh, x, w, ry);
        pool_ref(&sh, x, rxp);
        conv_bwd_data_ref(&sh, dy, w, rdx);
        unpool_ref(&sh, rxp, rxu);
        /* The weight gradient uses the pooled input the kernel itself saved, un-pooled by
         * the reference: the check isolates the un-pool + GEMM from the pooling. */
        float *ref_dw = malloc(sizeof(float) * nw);
        float *kernel_xu = malloc(sizeof(float) * nx);
        if (!ref_dw || !kernel_xu) {
            free(ref_dw);
            free(kernel_xu);
            free(buf);
            return PP_ERR_OUT_OF_MEMORY;
        }
        unpool_ref(&sh, xp, kernel_xu);
        conv_bwd_weight_ref(&sh, dy, kernel_xu, ref_dw);
        (void)ctx;
        out->err_y = max_rel_error(y, ry, ny);
        out->err_xp = max_rel_error(xp, rxp, np);
        out->err_dx = max_rel_error(dx, rdx, nx);
        out->err_dw = max_rel_error(dw, ref_dw, nw);
        /* The same check against the reference's own pooled input, which must agree too. */
        conv_bwd_weight_ref(&sh, dy, rxu, ref_dw);
        double err_dw_ref_pool = max_rel_error(dw, ref_dw, nw);
        if (err_dw_ref_pool > out->err_dw) out->err_dw = err_dw_ref_pool;
        out->tol_y = dot_tolerance((double)d->c * d->r * d->s);
        out->tol_xp = d->pool > 1 && d->pool_mode == PP_POOL_AVG ? 1e-6 : 0.0;
        out->tol_dx = dot_tolerance((double)d->k * d->r * d->s);
        out->tol_dw = dot_tolerance((double)d->n * sh.p * sh.q);
        kernel_math(layer, "conv_fwd", out->math_y);
        kernel_math(layer, "conv_bwd_data", out->math_dx);
        kernel_math(layer, "conv_bwd_weight", out->math_dw);
        out->excess_y = out->err_y / out->tol_y;
        out->excess_xp = out->tol_xp > 0 ? out->err_xp / out->tol_xp : out->err_xp > 0 ? INFINITY : 0.0;
        out->excess_dx = out->err_dx / out->tol_dx;
        out->excess_dw = out->err_dw / out->tol_dw;
        double u_y = operand_roundoff(out->math_y), u_dx = operand_roundoff(out->math_dx),
               u_dw = operand_roundoff(out->math_dw);
        if (bf16 || u_y > 0 || u_dx > 0 || u_dw > 0) {
            /* Absolute-value inputs and references: sum|a||b| per output element. */
            size_t big = nx > nw ? nx : nw;
            float *abs_a = malloc(sizeof(float) * (nx + nw + ny)), *abs_ref = malloc(sizeof(float) * (big + ny));
            if (!abs_a || !abs_ref) {
                free(abs_a), free(abs_ref), free(ref_dw), free(kernel_xu), free(buf);
                return PP_ERR_OUT_OF_MEMORY;
            }
            float *ax = abs_a, *aw = ax + nx, *ady = aw + nw;
            absolute(x, ax, nx);
            absolute(w, aw, nw);
            absolute(dy, ady, ny);
            if (bf16) {
                /* Inputs already bf16: only the accumulation and the output rounding remain. */
                conv_fwd_ref(&sh, ax, aw, abs_ref);
                out->excess_y = layer_check_bf16_excess(y, ry, abs_ref, ny, (double)d->c * d->r * d->s);
                conv_bwd_data_ref(&sh, ady, aw, abs_ref);
                out->excess_dx = layer_check_bf16_excess(dx, rdx, abs_ref, nx, (double)d->k * d->r * d->s);
                double x_magnitude = 0;
                for (size_t i = 0; i < nx; i++) x_magnitude = ax[i] > x_magnitude ? ax[i] : x_magnitude;
                out->excess_xp = bf16_pool_excess(xp, rxp, np, d->pool_mode == PP_POOL_MAX, x_magnitude);
            } else {
                if (u_y > 0) {
                    conv_fwd_ref(&sh, ax, aw, abs_ref);
                    out->excess_y = bound_excess(y, ry, abs_ref, ny, u_y, (double)d->c * d->r * d->s);
                }
                if (u_dx > 0) {
                    conv_bwd_data_ref(&sh, ady, aw, abs_ref);
                    out->excess_dx = bound_excess(dx, rdx, abs_ref, nx, u_dx, (double)d->k * d->r * d->s);
                }
            }
            if (bf16 || u_dw > 0) {
                /* Against the kernel's own saved input, un-pooled (the reference's pooled
                 * input agrees with it within the xp check); ref_dw held the other one.
                 * (bf16: dw is fp32, so only the accumulation bound, u = 0.) */
                conv_bwd_weight_ref(&sh, dy, kernel_xu, ref_dw);
                absolute(kernel_xu, ax, nx);
                conv_bwd_weight_ref(&sh, ady, ax, abs_ref);
                out->excess_dw = bound_excess(dw, ref_dw, abs_ref, nw, bf16 ? 0.0 : u_dw, (double)d->n * sh.p * sh.q);
            }
            free(abs_a), free(abs_ref);
        }
        free(ref_dw);
        free(kernel_xu);
        out->passed = out->excess_y <= 1 && out->excess_xp <= 1 && out->excess_dx <= 1 && out->excess_dw <= 1;
    }
    free(buf);
    return st;
}
