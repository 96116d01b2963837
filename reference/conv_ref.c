/* conv_ref.c - the plain C reference of DESIGN.md section 1 (see conv_ref.h). Every function checks
 * its shape first (conv_ref_derive's rules) and touches no array for one it cannot index. */
#include "conv_ref.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* The derived extents of sh (P, Q, Hp, Wp) in 64-bit arithmetic; -1 when sh is not a shape
 * the reference can index (conv_ref.h). */
static int derive64(const conv_ref_shape *sh, int64_t *p, int64_t *q, int64_t *hp, int64_t *wp)
{
    if (sh->n < 1 || sh->c < 1 || sh->h < 1 || sh->w < 1 || sh->k < 1 || sh->r < 1 || sh->s < 1 || sh->stride < 1 ||
        sh->pad < 0 || sh->pool < 1)
        return -1;
    /* Every int the loops form (stride*oy + r <= h + 2*pad, h + pad - r, the window end
     * f*i + f <= h + f - 1) stays within these bounds. */
    int64_t ph = (int64_t)sh->h + 2 * (int64_t)sh->pad, pw = (int64_t)sh->w + 2 * (int64_t)sh->pad;
    if (ph > INT_MAX || pw > INT_MAX || (int64_t)sh->h + sh->pool - 1 > INT_MAX ||
        (int64_t)sh->w + sh->pool - 1 > INT_MAX)
        return -1;
    if (sh->r > ph || sh->s > pw) return -1;
    *p = (ph - sh->r) / sh->stride + 1;
    *q = (pw - sh->s) / sh->stride + 1;
    *hp = ((int64_t)sh->h + sh->pool - 1) / sh->pool;
    *wp = ((int64_t)sh->w + sh->pool - 1) / sh->pool;
    /* Each tensor's element count at most INT_MAX: products checked factor by factor. */
    const int64_t counts[4][4] = {
        {sh->n, sh->c, sh->h, sh->w}, {sh->k, sh->c, sh->r, sh->s}, {sh->n, sh->k, *p, *q}, {sh->n, sh->c, *hp, *wp}};
    for (int t = 0; t < 4; t++) {
        int64_t count = 1;
        for (int i = 0; i < 4; i++) {
            if (counts[t][i] > INT_MAX / count) return -1;
            count *= counts[t][i];
        }
    }
    return 0;
}

int conv_ref_derive(conv_ref_shape *sh)
{
    int64_t p, q, hp, wp;
    if (derive64(sh, &p, &q, &hp, &wp) != 0) {
        sh->p = sh->q = sh->hp = sh->wp = 0;
        return -1;
    }
    sh->p = (int)p, sh->q = (int)q, sh->hp = (int)hp, sh->wp = (int)wp;
    return 0;
}

/* Whether sh can be indexed and its derived extents are conv_ref_derive's. */
static int shape_ok(const conv_ref_shape *sh)
{
    int64_t p, q, hp, wp;
    return derive64(sh, &p, &q, &hp, &wp) == 0 && sh->p == p && sh->q == q && sh->hp == hp && sh->wp == wp;
}

#define X4(a, d1, d2, d3, i0, i1, i2, i3) a[(((size_t)(i0) * (d1) + (i1)) * (d2) + (i2)) * (d3) + (i3)]

int conv_fwd_ref(const conv_ref_shape *sh, const float *x, const float *wt, float *y)
{
    if (!shape_ok(sh)) return -1;
    for (int n = 0; n < sh->n; n++)
        for (int k = 0; k < sh->k; k++)
            for (int oy = 0; oy < sh->p; oy++)
                for (int ox = 0; ox < sh->q; ox++) {
                    double sum = 0;
                    for (int c = 0; c < sh->c; c++)
                        for (int r = 0; r < sh->r; r++)
                            for (int t = 0; t < sh->s; t++) {
                                int ih = sh->stride * oy + r - sh->pad, iw = sh->stride * ox + t - sh->pad;
                                if (ih < 0 || ih >= sh->h || iw < 0 || iw >= sh->w) continue;
                                sum += (double)X4(wt, sh->c, sh->r, sh->s, k, c, r, t) *
                                       X4(x, sh->c, sh->h, sh->w, n, c, ih, iw);
                            }
                    X4(y, sh->k, sh->p, sh->q, n, k, oy, ox) = (float)sum;
                }
    return 0;
}

int pool_ref(const conv_ref_shape *sh, const float *x, float *xp)
{
    if (!shape_ok(sh)) return -1;
    int f = sh->pool;
    for (int n = 0; n < sh->n; n++)
        for (int c = 0; c < sh->c; c++)
            for (int i = 0; i < sh->hp; i++)
                for (int j = 0; j < sh->wp; j++) {
                    double sum = 0, best = -INFINITY;
                    int count = 0;
                    for (int h = f * i; h < f * i + f && h < sh->h; h++)
                        for (int w = f * j; w < f * j + f && w < sh->w; w++) {
                            double v = X4(x, sh->c, sh->h, sh->w, n, c, h, w);
                            sum += v;
                            if (v > best) best = v;
                            count++;
                        }
                    X4(xp, sh->c, sh->hp, sh->wp, n, c, i, j) = (float)(sh->pool_max ? best : sum / count);
                }
    return 0;
}

int unpool_ref(const conv_ref_shape *sh, const float *xp, float *xu)
{
    if (!shape_ok(sh)) return -1;
    for (int n = 0; n < sh->n; n++)
        for (int c = 0; c < sh->c; c++)
            for (int h = 0; h < sh->h; h++)
                for (int w = 0; w < sh->w; w++)
                    X4(xu, sh->c, sh->h, sh->w, n, c, h, w) =
                        X4(xp, sh->c, sh->hp, sh->wp, n, c, h / sh->pool, w / sh->pool);
    return 0;
}

int conv_bwd_data_ref(const conv_ref_shape *sh, const float *dy, const float *wt, float *dx)
{
    if (!shape_ok(sh)) return -1;
    for (int n = 0; n < sh->n; n++)
        for (int c = 0; c < sh->c; c++)
            for (int h = 0; h < sh->h; h++)
                for (int w = 0; w < sh->w; w++) {
                    double sum = 0;
                    for (int k = 0; k < sh->k; k++)
                        for (int r = 0; r < sh->r; r++)
                            for (int t = 0; t < sh->s; t++) {
                                int ty = h + sh->pad - r, tx = w + sh->pad - t;
                                if (ty < 0 || tx < 0 || ty % sh->stride || tx % sh->stride) continue;
                                int oy = ty / sh->stride, ox = tx / sh->stride;
                                if (oy >= sh->p || ox >= sh->q) continue;
                                sum += (double)X4(wt, sh->c, sh->r, sh->s, k, c, r, t) *
                                       X4(dy, sh->k, sh->p, sh->q, n, k, oy, ox);
                            }
                    X4(dx, sh->c, sh->h, sh->w, n, c, h, w) = (float)sum;
                }
    return 0;
}

int conv_bwd_weight_ref(const conv_ref_shape *sh, const float *dy, const float *xu, float *dw)
{
    if (!shape_ok(sh)) return -1;
    for (int k = 0; k < sh->k; k++)
        for (int c = 0; c < sh->c; c++)
            for (int r = 0; r < sh->r; r++)
                for (int t = 0; t < sh->s; t++) {
                    double sum = 0;
                    for (int n = 0; n < sh->n; n++)
                        for (int oy = 0; oy < sh->p; oy++)
                            for (int ox = 0; ox < sh->q; ox++) {
                                int ih = sh->stride * oy + r - sh->pad, iw = sh->stride * ox + t - sh->pad;
                                if (ih < 0 || ih >= sh->h || iw < 0 || iw >= sh->w) continue;
                                sum += (double)X4(dy, sh->k, sh->p, sh->q, n, k, oy, ox) *
                                       X4(xu, sh->c, sh->h, sh->w, n, c, ih, iw);
                            }
                    X4(dw, sh->c, sh->r, sh->s, k, c, r, t) = (float)sum;
                }
    return 0;
}

double max_rel_error(const float *a, const float *b, size_t count)
{
    double scale = 1e-30, worst = 0;
    for (size_t i = 0; i < count; i++)
        if (fabs((double)b[i]) > scale) scale = fabs((double)b[i]);
    for (size_t i = 0; i < count; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d)) return INFINITY; /* a NaN anywhere fails every tolerance */
        if (d > worst) worst = d;
    }
    return worst / scale;
}
