/* layer_check.c - a generated layer against the C reference (see layer_check.h).
 *
 * Tolerances: the kernels accumulate in fp32 (FFMA), the reference in double. For a dot
 * product of n terms whose products have random signs, fp32 rounding grows like
 * u*sqrt(n)*|terms| with u = 2^-24; relative to the output's largest magnitude (itself
 * about sqrt(n)*|terms| / 3 for uniform inputs) that stays below 16*u*sqrt(n) with a wide
 * margin. The tolerance is that bound with n the reduction length of each output, never
 * smaller than 1e-6. Average pooling sums at most 64 values: 1e-6. Max pooling and
 * un-pooling copy values: exact (0). */
#include "layer_check.h"

#include "conv_ref.h"

#include <math.h>
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

pp_status layer_check_run(pp_context *ctx, pp_layer *layer, const pp_layer_desc *d, uint32_t seed,
                          layer_check_result *out)
{
    memset(out, 0, sizeof *out);
    pp_layer_shape s;
    pp_status st = pp_layer_shape_get(layer, &s);
    if (st != PP_OK) return st;
    conv_ref_shape sh = {d->n, d->c, d->h, d->w, d->k, d->r, d->s, d->stride, d->pad, d->pool,
                         d->pool_mode == PP_POOL_MAX, 0, 0, 0, 0};
    conv_ref_derive(&sh);
    size_t nx = s.x_elems, nw = s.w_elems, ny = s.y_elems, np = s.xp_elems;
    float *buf = malloc(sizeof(float) * (3 * nx + 2 * nw + 3 * ny + 2 * np + nx));
    if (!buf) return PP_ERR_OUT_OF_MEMORY;
    float *x = buf, *w = x + nx, *dy = w + nw, *y = dy + ny, *xp = y + ny, *dx = xp + np, *dw = dx + nx;
    float *ry = dw + nw, *rxp = ry + ny, *rdx = rxp + np, *rxu = rdx + nx;
    uint32_t state = seed ? seed : 1;
    fill_uniform(x, nx, &state);
    fill_uniform(w, nw, &state);
    fill_uniform(dy, ny, &state);
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
        free(ref_dw);
        free(kernel_xu);
        out->tol_y = dot_tolerance((double)d->c * d->r * d->s);
        out->tol_xp = d->pool > 1 && d->pool_mode == PP_POOL_AVG ? 1e-6 : 0.0;
        out->tol_dx = dot_tolerance((double)d->k * d->r * d->s);
        out->tol_dw = dot_tolerance((double)d->n * sh.p * sh.q);
        out->passed = out->err_y <= out->tol_y && out->err_xp <= out->tol_xp &&
                      out->err_dx <= out->tol_dx && out->err_dw <= out->tol_dw;
    }
    free(buf);
    return st;
}
