/* fuzz_util.c - the context and scratch directory every fuzz target shares (fuzz_util.h). */
#define _XOPEN_SOURCE 700
#include "fuzz_util.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pp_context *context;
static char dir[4096];
static char path[4096 + 256];

void fuzz_util_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", file, line, what);
    abort();
}

static void discard_log(void *user, pp_log_level level, const char *message) { (void)user, (void)level, (void)message; }

pp_context *fuzz_util_context(void)
{
    if (context) return context;
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_NONE;
    o.disable_cache = 1;
    o.ignore_tuning = 1;
    o.tuning_dir = fuzz_util_dir();
    o.log = discard_log;
    if (pp_context_create(&o, &context) != PP_OK) {
        fprintf(stderr, "fuzz_util: cannot create a context: %s\n", context ? pp_last_error(context) : "out of memory");
        abort();
    }
    return context;
}

static int remove_entry(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    remove(p);
    return 0;
}

static void remove_dir(void)
{
    if (context) pp_context_destroy(context), context = NULL;
    if (dir[0]) nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fuzz_util_dir(void)
{
    if (dir[0]) return dir;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/pp-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "fuzz_util: cannot create a scratch directory %s: %s\n", dir, strerror(errno));
        abort();
    }
    atexit(remove_dir);
    return dir;
}

const char *fuzz_util_write(const char *name, const uint8_t *data, size_t size)
{
    snprintf(path, sizeof path, "%s/%s", fuzz_util_dir(), name);
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(data, 1, size, f) == size;
    if (f && fclose(f) != 0) ok = 0;
    if (!ok) {
        fprintf(stderr, "fuzz_util: cannot write %s: %s\n", path, strerror(errno));
        abort();
    }
    return path;
}

char *fuzz_util_string(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t n = nul ? (size_t)(nul - data) : size;
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, data, n);
    s[n] = '\0';
    return s;
}
