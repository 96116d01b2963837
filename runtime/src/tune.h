/* tune.h - what model building and the tests take from the tuner (tune.c). */
#ifndef PP_TUNE_H
#define PP_TUNE_H

#include "context.h"
#include "plan.h"

/* The four outputs of a layer run (pp_layer_run). */
typedef struct tune_outputs {
    float *y, *xp, *dx, *dw;
} tune_outputs;

/* How far op's outputs in got are from ref, as a fraction of what the math mode ("fp32",
 * "tf32", "bf16") allows (tune.c states the bounds); abs_ref: the reference run on the
 * inputs' absolute values. At most 1 passes; NaN anywhere gives infinity. */
double tune_op_excess(const char *op, const char *math, const pp_layer_desc *d, const pp_layer_shape *s,
                      const tune_outputs *got, const tune_outputs *ref, const tune_outputs *abs_ref);

/* Puts the tuned variants of the context's device into req (tuned_keys, tuned_variants,
 * tuned_count): none when the context ignores tuning, has no tuning directory or its
 * database is missing. A corrupt or stale database is reported through the log and
 * ignored. Release with tune_lookup_free once the plan is built. */
pp_status tune_lookup(pp_context *ctx, gen_plan_request *req);
void tune_lookup_free(gen_plan_request *req);

#endif
