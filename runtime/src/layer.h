/* layer.h - what other runtime files (the tuner) use of layer.c beyond the public API. */
#ifndef PP_LAYER_H
#define PP_LAYER_H

#include "context.h"

/* pp_layer_benchmark restricted to the kernels of op (NULL: all; "conv_bwd_weight"
 * includes its split-K reduction); ms[k] is 0 for the kernels not timed. */
pp_status layer_benchmark_kernels(pp_layer *layer, const char *op, int warmup, int repeats, double *ms);

#endif
