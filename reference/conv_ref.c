/* conv_ref.c - the plain C reference of DESIGN.md section 1 (see conv_ref.h). */
#include "conv_ref.h"

#include <math.h>
#include <stdlib.h>

void conv_ref_derive(conv_ref_shape *sh)
{
    sh->p = (sh->h + 2 * sh->pad - sh->r) / sh->stride + 1;
    sh->q = (sh->w + 2 * sh->pad - sh->s) / sh->stride + 1;
    sh->hp = (sh->h + sh->pool - 1) / sh->pool;
    sh->wp = (sh->w + sh->pool - 1) / sh->pool;
}

#define X4(a, d1, d2, d3, i0, i1, i2, i3) a[(((size_t)(i0) * (d1) + (i1)) * (d2) + (i2)) * (d3) + (i3)]

void conv_fwd_ref(const conv_ref_shape *sh, const float *x, const float *wt, float *y)
{
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
}

void pool_ref(const conv_ref_shape *sh, const float *x, float *xp)
{
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
}

void unpool_ref(const conv_ref_shape *sh, const float *xp, float *xu)
{
    for (int n = 0; n < sh->n; n++)
        for (int c = 0; c < sh->c; c++)
            for (int h = 0; h < sh->h; h++)
                for (int w = 0; w < sh->w; w++)
                    X4(xu, sh->c, sh->h, sh->w, n, c, h, w) =
                        X4(xp, sh->c, sh->hp, sh->wp, n, c, h / sh->pool, w / sh->pool);
}

void conv_bwd_data_ref(const conv_ref_shape *sh, const float *dy, const float *wt, float *dx)
{
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
}

void conv_bwd_weight_ref(const conv_ref_shape *sh, const float *dy, const float *xu, float *dw)
{
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
