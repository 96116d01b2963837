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
    int bf16_storage; /* the layer stores x, w, y, dy, dx, xp as bf16 (PP_STORAGE_BF16) */
    /* The largest error as a fraction of what its precision allows: fp32 outputs err/tol,
     * tensor-core outputs max over elements of |kernel - ref| / bound (layer_check.c).
     * An output passes when its excess is at most 1. */
    double excess_y, excess_xp, excess_dx, excess_dw;
    int passed;
} layer_check_result;

/* Inputs are uniform in [-1, 1) from seed (with bf16 storage: then rounded to bf16, so
 * that the reference sees exactly what the kernels read). The layer must come from desc. */
pp_status layer_check_run(pp_context *ctx, pp_layer *layer, const pp_layer_desc *desc, uint32_t seed,
                          layer_check_result *out);

/* The bound of a bf16-stored output (layer_check.c): max over elements of
 * |out - ref| / (halfulp_bf16(|ref| + E) + E + 2^-24|ref|), E = terms*2^-23*abs_ref, where
 * ref is the exact product of the (bf16) inputs as a float and abs_ref the same product of
 * their absolute values. At most 1 when out is ref's fp32 sum rounded to bf16 to nearest
 * even. Exposed so that a test can show the bound rejects a wrong rounding or a dropped
 * input. */
double layer_check_bf16_excess(const float *out, const float *ref, const float *abs_ref, size_t count, double terms);

/* x rounded to bf16 (to nearest even) and back; and truncated (a wrong rounding mode). */
float layer_check_bf16_round(float x);
float layer_check_bf16_truncate(float x);

#endif
