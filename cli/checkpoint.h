/* checkpoint.h - training checkpoints: one file, DIR/checkpoint.ppc, written to a
 * temporary name and renamed, so an interrupted write never leaves half a checkpoint.
 *   "PPCKPT01" | u64 text length | text (key=value lines: the run's settings and its
 *   position) | u64 count | count floats (parameters and BN statistics, state_dict order)
 *   | u64 count | count floats (SGD momentum) | 16-byte FNV-1a-128 of everything before
 * Numbers that must come back bit-exact (loss sums) are stored as C99 hex floats. */
#ifndef PP_CHECKPOINT_H
#define PP_CHECKPOINT_H

#include "poolprop.h"

#include <stddef.h>

#define CHECKPOINT_TEXT_MAX 8192

typedef struct checkpoint {
    char text[CHECKPOINT_TEXT_MAX]; /* key=value lines */
    float *params;   /* parameters and statistics in state_dict order */
    size_t param_count;
    float *momentum;
    size_t momentum_count;
} checkpoint;

/* Gathers the model's parameters, statistics and momentum, and writes them with text. */
int checkpoint_save(pp_context *ctx, pp_model *model, const char *dir, const char *text, char *err, size_t err_len);
/* Reads and verifies DIR/checkpoint.ppc (magic, sizes, checksum). */
int checkpoint_load(pp_context *ctx, const char *dir, checkpoint *out, char *err, size_t err_len);
/* Puts a loaded checkpoint's parameters, statistics and momentum into the model. */
int checkpoint_restore(pp_model *model, const checkpoint *c, char *err, size_t err_len);
void checkpoint_free(checkpoint *c);
/* The value of key in the checkpoint's text, or NULL. */
const char *checkpoint_get(const checkpoint *c, const char *key, char *buf, size_t len);

#endif
