/* tunedb.h - the per-device tuning database: for each kernel signature, the variants tried
 * on one device, how each fared, and the fastest verified one.
 *
 * One text file per device identity (tunedb_path), one record per line, fields separated
 * by single spaces. Strings are percent-escaped: '%' and every byte outside 0x21..0x7e
 * becomes %XX, and the empty string is written "-" (a lone "-" is written %2D). Doubles
 * are written with %.17g (exact round trip); "-" stands for a negative ("not measured")
 * value, which loads as -1. Integers "-" likewise load as -1.
 *
 *   poolprop-tune 1
 *   device <escaped>
 *   arch <int >= 0>
 *   sm_count <int >= 0>
 *   toolkit <escaped>
 *   generator <escaped>
 *   backend <escaped>
 *   entry <signature> best <variant|-> best_ms <ms|-> default_ms <ms|-> trials <n>
 *     (best is "-" or the variant of one of the entry's trials whose status is ok)
 *   trial <variant> ok|wrong|compile_failed|launch_failed|skipped <median_ms|-> <max_error|-> <escaped note>
 *   ... exactly n trial lines per entry, signatures unique ...
 *   end <number of entries>
 *   checksum <32 lowercase hex digits of FNV-1a-128 over all bytes before this line>
 *
 * Every line ends with '\n'; nothing follows the checksum line. Times are finite; a
 * max_error may be +inf. */
#ifndef PP_TUNEDB_H
#define PP_TUNEDB_H

#include "context.h"

#include <stddef.h>

/* The largest file tunedb_load reads: a database of every kernel of every built-in model
 * holds a few thousand entries of a few KB each. A larger file is reported as corrupt. */
#define TUNEDB_MAX_BYTES ((size_t)64 << 20)

typedef struct tunedb_identity {
    char device[256];   /* device name as the context reports it */
    int arch;           /* compute capability as XY (90 = sm_90) */
    int sm_count;       /* multiprocessors (cuda) or emulation threads (host) */
    char toolkit[64];   /* e.g. "nvrtc 13.0" */
    char generator[64]; /* version of the generator's variant spaces (a hex hash string) */
    char backend[16];   /* "cuda" or "host" */
} tunedb_identity;

typedef enum tunedb_trial_status {
    TUNEDB_OK = 0,         /* verified against the reference variant and timed */
    TUNEDB_WRONG,          /* ran, but its output failed the check */
    TUNEDB_COMPILE_FAILED, /* unusable: compiler rejected it (registers, shared memory, arch) */
    TUNEDB_LAUNCH_FAILED,  /* unusable: launch or run failed */
    TUNEDB_SKIPPED         /* not tried: budget exhausted or not allowed by the policy's math mode */
} tunedb_trial_status;

typedef struct tunedb_trial {
    int variant;
    tunedb_trial_status status;
    double median_ms; /* < 0 when not timed (stored as -1) */
    double max_error; /* largest error relative to the allowed tolerance, < 0 when not
                              checked (stored as -1); NaN is stored as +inf */
    char note[160];   /* e.g. the first line of a compile error; may be empty; newlines
                              are stored as spaces */
} tunedb_trial;

typedef struct tunedb_entry {
    char signature[256];        /* kernel signature: no whitespace, e.g. "conv_fwd:n8c16h32w32k16r3s3u1p1f2avg:tf32" */
    int best_variant;           /* -1 when none */
    double best_ms, default_ms; /* < 0 when not measured */
    int trial_count, trial_capacity;
    tunedb_trial *trials;
} tunedb_entry;

typedef struct tunedb {
    tunedb_identity id;
    int count, capacity;
    tunedb_entry *entries; /* reallocated by tunedb_put: entry pointers do not survive it */
} tunedb;

typedef enum tunedb_load_outcome {
    TUNEDB_LOADED,
    TUNEDB_MISSING,
    TUNEDB_CORRUPT,
    TUNEDB_STALE
} tunedb_load_outcome;

void tunedb_init(tunedb *db, const tunedb_identity *id);
void tunedb_free(tunedb *db);
/* dir/<device name with every char outside [A-Za-z0-9._-] replaced by '_'>-sm<arch>-<sm_count>sm-<backend>.pptune */
void tunedb_path(const char *dir, const tunedb_identity *id, char *out, size_t size);
/* Loads path. A missing file gives TUNEDB_MISSING; a damaged or unreadable file (bad
 * magic, parse error, truncated, checksum mismatch, an entry whose best variant is not one
 * of its trials that passed, larger than TUNEDB_MAX_BYTES) gives TUNEDB_CORRUPT; a well-formed
 * file whose identity differs from *expect (any field) gives TUNEDB_STALE. Corrupt and
 * stale files are reported through ctx_log as warnings naming the file and the reason,
 * and ignored: *db is then an empty database with identity *expect. Returns PP_OK in all
 * those cases; only out-of-memory returns an error. *db need not be initialised. */
pp_status tunedb_load(pp_context *ctx, const char *path, const tunedb_identity *expect, tunedb *db,
                      tunedb_load_outcome *outcome);
tunedb_entry *tunedb_find(tunedb *db, const char *signature);
/* Returns the entry for signature, created empty (or emptied of its trials if it existed):
 * no trials, best_variant -1, best_ms and default_ms -1. NULL (and ctx error) on out of
 * memory or a signature that is empty, too long or has a byte outside 0x21..0x7e. */
tunedb_entry *tunedb_put(pp_context *ctx, tunedb *db, const char *signature);
/* Appends a copy of *trial (normalised as described at tunedb_trial). Rejects a negative
 * variant, an unknown status and a NaN or infinite median_ms. */
pp_status tunedb_add_trial(pp_context *ctx, tunedb_entry *entry, const tunedb_trial *trial);
/* Writes atomically (temporary file + rename via file_write_atomic), creating the
 * directory. Refuses (PP_ERR_INVALID_ARGUMENT) values that tunedb_load would reject. */
pp_status tunedb_save(pp_context *ctx, const char *path, const tunedb *db);

#endif
