/* layer_check.h - runs one generated layer (through the public API) on deterministic
 * random inputs and compares all four outputs with the plain C reference. Shared by
 * `poolprop verify` and the kernel tests, so both apply the same tolerances. */
#ifndef PP_LAYER_CHECK_H
#define PP_LAYER_CHECK_H

#include "poolprop.h"

typedef struct layer_check_result {
    /* Largest |kernel - reference| relative to the reference's largest magnitude. */
    double err_y, err_xp, err_dx, err_dw;
    /* fp32 tolerances for those errors (see layer_check.c). */
    double tol_y, tol_xp, tol_dx, tol_dw;
    /* The precision each output was computed in ("fp32", "tf32", "bf16"). */
    char math_y[8], math_dx[8], math_dw[8];
    /* The largest error as a fraction of what its precision allows: fp32 outputs err/tol,
     * tensor-core outputs max over elements of |kernel - ref| / bound (layer_check.c).
     * An output passes when its excess is at most 1. */
    double excess_y, excess_xp, excess_dx, excess_dw;
    int passed;
} layer_check_result;

/* Inputs are uniform in [-1, 1) from seed. The layer must come from desc. */
pp_status layer_check_run(pp_context *ctx, pp_layer *layer, const pp_layer_desc *desc, uint32_t seed,
                          layer_check_result *out);

#endif
