/* checkpoint.h - training checkpoints: one file, DIR/checkpoint.ppc, written to a
 * temporary name and renamed (cli/outfile.h), so an interrupted write never leaves half a
 * checkpoint.
 *   "PPCKPT02" | u64 text length | text (key=value lines: the run's settings and its
 *   position) | u64 count | count floats (parameters and BN statistics, state_dict order)
 *   | u64 count | count floats (SGD momentum) | u64 FNV-1a-64 of everything before
 * Numbers that must come back bit-exact (loss sums) are stored as C99 hex floats.
 * Reading is bounded: the text at most CHECKPOINT_TEXT_MAX bytes, each float array at most
 * CHECKPOINT_MAX_FLOATS, and a file must be exactly as long as its declared sizes; a file
 * that is not a regular file (a pipe, /dev/zero) is refused before anything is read. */
#ifndef PP_CHECKPOINT_H
#define PP_CHECKPOINT_H

#include "poolprop.h"

#include <stddef.h>

#include <stdint.h>

#define CHECKPOINT_TEXT_MAX 8192
#define CHECKPOINT_MAX_FLOATS ((uint64_t)1 << 31) /* 8 GiB of floats per array */

typedef struct checkpoint {
    char text[CHECKPOINT_TEXT_MAX]; /* key=value lines */
    float *params;                  /* parameters and statistics in state_dict order */
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

/* 64-bit FNV-1a of len bytes, continuing from h (start with CHECKPOINT_FNV_BASIS). */
#define CHECKPOINT_FNV_BASIS 0xcbf29ce484222325ULL
uint64_t checkpoint_fnv1a(uint64_t h, const void *data, size_t len);
/* The FNV-1a-64 of a file's bytes, refusing a file of more than max_bytes (or a stream that
 * goes on past it) without reading further; non-zero with the reason in err. */
int checkpoint_hash_file(const char *path, uint64_t max_bytes, uint64_t *out, char *err, size_t err_len);

#endif
