/* tuner.h - what model building takes from the tuner's database (tuner.c). */
#ifndef PP_TUNER_H
#define PP_TUNER_H

#include "context.h"

/* The four outputs of a layer run (pp_layer_run). */
typedef struct outputs {
    float *y, *xp, *dx, *dw;
} outputs;

/* How far op's outputs in got are from ref, as a fraction of what the math mode ("fp32",
 * "tf32", "bf16") allows (tuner.c states the bounds); abs_ref: the reference run on the
 * inputs' absolute values. At most 1 passes; NaN anywhere gives infinity. */
double tuner_op_excess(const char *op, const char *math, const pp_layer_desc *d, const pp_layer_shape *s,
                       const outputs *got, const outputs *ref, const outputs *abs_ref);

/* The tuned variants of the context's device: keys (tuning-database keys) and variant
 * indices, count entries; none when the context ignores tuning, has no tuning directory or
 * its database is missing. A corrupt or stale database is reported through the log and
 * ignored. Release with tune_lookup_free. */
pp_status tune_lookup(pp_context *ctx, char ***keys, int **variants, int *count);
void tune_lookup_free(char **keys, int *variants, int count);

#endif
