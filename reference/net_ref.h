/* net_ref.h - a plain C reference of a whole ResNet training step (DESIGN.md sections 1
 * and 5, tier 4): forward with batch norm in training mode, softmax cross-entropy, and
 * backward, all in double precision, written from the formulas and independent of the
 * generated kernels. A conv whose pool factor is above 1 computes its weight gradient from
 * its input pooled and un-pooled (what poolprop approximates); everything else is exact.
 * Tensors are NCHW; parameters and BN statistics are flat arrays indexed by offsets. */
#ifndef PP_NET_REF_H
#define PP_NET_REF_H

#include <stddef.h>
#include <stdint.h>

typedef enum ref_op {
    REF_CONV,
    REF_BN,
    REF_MAXPOOL,
    REF_AVGPOOL,
    REF_FC,
    REF_SOFTMAX_CE
} ref_op;

typedef struct ref_layer {
    ref_op op;
    int input, output, residual; /* tensor ids (0 is the network input); residual -1 if none */
    /* conv: N C H W K R S stride pad -> P Q; maxpool: N C H W, R stride pad -> P Q;
     * bn: N, C, H*W in h (w = 1); avgpool: N C H W; fc: N, c = in, k = out; loss: N, k = classes */
    int n, c, h, w, k, r, s, stride, pad, p, q;
    int relu;                         /* bn: ReLU after the (residual) add */
    int pool, pool_max;               /* conv: factor and mode of the saved input (1: exact) */
    size_t weight, bias;              /* offsets into params */
    size_t running_mean, running_var; /* bn: offsets into state */
} ref_layer;

typedef struct ref_net {
    const ref_layer *layers;
    int layer_count;
    const size_t *tensor_elems; /* per tensor id */
    int tensor_count;
    size_t param_count;
} ref_net;

/* One training step: returns the loss (batch mean), writes grads (param_count) and updates
 * state (running statistics, momentum 0.1, unbiased variance). Returns NAN on allocation
 * failure. */
double ref_net_step(const ref_net *net, const double *params, double *state, const float *x, const int32_t *labels,
                    double *grads);

#endif
