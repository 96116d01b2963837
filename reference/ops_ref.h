/* ops_ref.h - plain C reference of the training step's non-convolution ops (the kernels
 * of generator/poolprop/ops.lua), written from the formulas in double precision and
 * independent of the kernels and the runtime. Inputs are the kernels' float32 (or
 * bf16/mask/index) data; computed results are double, so a test sees the kernels'
 * rounding; selections and bit patterns (masks, argmax, bf16) are exact integers.
 * Tensors are NCHW; a channel's values in (N,C,HW) are y[(n*C + c)*HW + i]. Masks are
 * bit-packed: element i is bit i%32 of word i/32. */
#ifndef PP_OPS_REF_H
#define PP_OPS_REF_H

#include <stddef.h>
#include <stdint.h>

/* Batch statistics of y (n,c,hw) per channel, train mode: mean, biased variance, invstd =
 * 1/sqrt(var + eps); running stats (c) updated from running_*_in with momentum and the
 * unbiased variance var*m/(m-1), m = n*hw. */
void bn_stats_ref(int n, int c, int hw, double momentum, double eps, const float *y, const float *running_mean_in,
                  const float *running_var_in, double *mean, double *invstd, double *running_mean, double *running_var);

/* out = gamma*(y - m)*s + beta (+ residual if residual != NULL), ReLU if relu; m, s = mean,
 * invstd, or with eval running_mean, 1/sqrt(running_var + eps). */
void bn_apply_ref(int n, int c, int hw, int relu, int eval, double eps, const float *y, const float *mean,
                  const float *invstd, const float *gamma, const float *beta, const float *residual,
                  const float *running_mean, const float *running_var, double *out);

/* bf16 bits of x rounded to nearest, ties to even (computed from the two neighbouring bf16
 * values, not with the kernels' bit trick); past the largest bf16 rounds to infinity as
 * IEEE does; NaN -> the quiet NaN (x's top 16 bits | 0x0040). */
uint16_t bf16_round_ref(float x);
float bf16_to_float_ref(uint16_t b);

/* Backward of out = ReLU(BN(y) (+ residual)). mask_mode 0: no ReLU; 1: mask_bits (bit set
 * = active); 2: relu_out > 0 = active. dres (if not NULL) = dz. y as the kernel sees it
 * (bf16 already decoded by the caller). */
void bn_backward_ref(int n, int c, int hw, int mask_mode, const float *dout, const uint32_t *mask_bits,
                     const float *relu_out, const float *y, const float *mean, const float *invstd, const float *gamma,
                     double *dgamma, double *dbeta, double *dy, double *dres);

/* The standalone ReLU over count elements of any layout: y = max(x, 0) (NaN stays NaN),
 * mask bit i = (y_i > 0), the bits past count 0 (mask: ceil(count/32) words). */
void relu_mask_fwd_ref(size_t count, const float *x, float *y, uint32_t *mask);
/* dx = dy where the mask bit is set, else 0. */
void relu_mask_bwd_ref(size_t count, const float *dy, const uint32_t *mask, float *dx);

/* Max pooling r x r, stride, pad, floor mode; p, q as a conv's. argmax = r_*r + t of the
 * first maximum in r-major order; positions outside x never win; a NaN wins (the first). */
void maxpool_fwd_ref(int n, int c, int h, int w, int r, int stride, int pad, const float *x, float *y, uint8_t *argmax);
/* dx (n,c,h,w) = scatter of dy (n,c,p,q) to the argmax positions. */
void maxpool_bwd_ref(int n, int c, int h, int w, int r, int stride, int pad, const float *dy, const uint8_t *argmax,
                     double *dx);
void maxpool_out_size(int h, int w, int r, int stride, int pad, int *p, int *q);

void avgpool_fwd_ref(int n, int c, int hw, const float *x, double *y);
void avgpool_bwd_ref(int n, int c, int hw, const float *dy, double *dx);

/* x (n,in), w (out,in), b (out), y (n,out). */
void fc_fwd_ref(int n, int in, int out, const float *x, const float *w, const float *b, double *y);
void fc_bwd_data_ref(int n, int in, int out, const float *dy, const float *w, double *dx);
void fc_bwd_weight_ref(int n, int in, int out, const float *dy, const float *x, double *dw, double *db);

/* Returns the batch-mean cross-entropy loss (NaN if a label is outside [0, classes));
 * dlogits = (softmax - onehot(clamped label)) / n. */
/* Returns the mean loss; *correct (if not NULL) counts the rows whose first maximum is the label. */
double softmax_ce_ref(int n, int classes, const float *logits, const int32_t *labels, double *dlogits, int *correct);

/* PyTorch SGD: d = grad + wd*param; buf = momentum*buf + d; param -= lr*buf. */
void sgd_ref(size_t count, const float *params, const float *grads, const float *momentum_buf, double lr,
             double momentum, double weight_decay, double *params_out, double *momentum_out);

#endif
