/* layer.h - what other runtime files (the tuner) use of layer.c beyond the public API. */
#ifndef PP_LAYER_H
#define PP_LAYER_H

#include "context.h"

/* pp_layer_benchmark restricted to the kernels of op (NULL: all; "conv_bwd_weight"
 * includes its split-K reduction); ms[k] is 0 for the kernels not timed. */
pp_status layer_benchmark_kernels(pp_layer *layer, const char *op, int warmup, int repeats, double *ms);

/* Runs only op's kernels ("conv_fwd", "conv_bwd_data", "conv_bwd_weight" with its split-K
 * reduction) on host arrays, each (N,C,H,W)-shaped as in pp_layer_run. Inputs: conv_fwd
 * reads x and w; conv_bwd_data dy and w; conv_bwd_weight dy and the saved input, which is
 * `saved` (xp) when the layer pools and x otherwise. Outputs: conv_fwd writes y and xp
 * (x itself when the layer does not pool); conv_bwd_data dx; conv_bwd_weight dw. */
pp_status layer_run_op(pp_layer *layer, const char *op, const float *x, const float *w, const float *dy,
                       const float *saved, float *y, float *xp, float *dx, float *dw);

#endif
