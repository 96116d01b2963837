/* conv_ref.h - plain C reference for DESIGN.md section 1, written from the formulas and
 * independent of the generated kernels: direct loops, double accumulation.
 *   X: (N,C,H,W)  Wt: (K,C,R,S)  Y, dY: (N,K,P,Q)  Xp: (N,C,Hp,Wp) */
#ifndef PP_CONV_REF_H
#define PP_CONV_REF_H

#include <stddef.h>

typedef struct conv_ref_shape {
    int n, c, h, w, k, r, s, stride, pad, pool, pool_max;
    int p, q, hp, wp; /* derived by conv_ref_derive */
} conv_ref_shape;

/* Derives p, q, hp, wp. Returns 0, or -1 (and zero extents) for a shape the reference
 * cannot index: a size below 1 (pad below 0), a kernel larger than the padded input, a
 * padded extent (h + 2*pad, h + pool - 1) or a tensor's element count above INT_MAX. Every
 * function below returns -1 and touches no array for such a shape, or for extents that are
 * not conv_ref_derive's; else 0. */
int conv_ref_derive(conv_ref_shape *sh);
int conv_fwd_ref(const conv_ref_shape *sh, const float *x, const float *wt, float *y);
/* Pooling with factor f, ceil mode, mean (or max) over the window elements that exist. */
int pool_ref(const conv_ref_shape *sh, const float *x, float *xp);
/* Nearest-neighbour un-pool of xp to (N,C,H,W). */
int unpool_ref(const conv_ref_shape *sh, const float *xp, float *xu);
int conv_bwd_data_ref(const conv_ref_shape *sh, const float *dy, const float *wt, float *dx);
/* dW from dY and the un-pooled input xu (N,C,H,W). */
int conv_bwd_weight_ref(const conv_ref_shape *sh, const float *dy, const float *xu, float *dw);

/* Largest |a-b| / max(1e-30, largest |b|): the error relative to the reference's magnitude. */
double max_rel_error(const float *a, const float *b, size_t count);

#endif
