/* tuner.h - what model building takes from the tuner's database (tuner.c). */
#ifndef PP_TUNER_H
#define PP_TUNER_H

#include "context.h"

/* The tuned variants of the context's device: keys (tuning-database keys) and variant
 * indices, count entries; none when the context ignores tuning, has no tuning directory or
 * its database is missing. A corrupt or stale database is reported through the log and
 * ignored. Release with tune_lookup_free. */
pp_status tune_lookup(pp_context *ctx, char ***keys, int **variants, int *count);
void tune_lookup_free(char **keys, int *variants, int count);

#endif
