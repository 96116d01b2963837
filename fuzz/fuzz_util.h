/* fuzz_util.h - what every fuzz target shares: a generation-only context (backend none, no
 * disk cache, no tuning databases) and a scratch directory to put an input into a file
 * when the reader under test only reads paths. Used by the libFuzzer build and by the
 * corpus replay (replay_main.c) alike. */
#ifndef PP_FUZZ_UTIL_H
#define PP_FUZZ_UTIL_H

#include "poolprop.h"

#include <stddef.h>
#include <stdint.h>

/* Aborts (a finding) with the file, line and the condition's text when cond is false.
 * For invariants of a successful read, never for a rejected input. */
#define FUZZ_ASSERT(cond) ((cond) ? (void)0 : fuzz_util_fail(__FILE__, __LINE__, #cond))

/* The process's context, created on first use: PP_BACKEND_NONE, cache disabled, tuning
 * ignored, warnings discarded. Aborts if it cannot be created (not an input's fault). */
pp_context *fuzz_util_context(void);
/* The process's scratch directory ($TMPDIR or /tmp, removed with its files at exit). */
const char *fuzz_util_dir(void);
/* Writes data to fuzz_util_dir()/name (replacing it) and returns the full path (a static
 * buffer, valid until the next call). Aborts if the write fails. */
const char *fuzz_util_write(const char *name, const uint8_t *data, size_t size);
/* data as a NUL-terminated string: a malloc'ed copy cut at its first NUL byte. */
char *fuzz_util_string(const uint8_t *data, size_t size);
void fuzz_util_fail(const char *file, int line, const char *what);

#endif
