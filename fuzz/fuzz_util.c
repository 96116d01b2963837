/* fuzz_util.c - the context and scratch directory every fuzz target shares (fuzz_util.h). */
#define _XOPEN_SOURCE 700
#include "fuzz_util.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ASan's quarantine for every target (ASAN_OPTIONS still overrides it): 32 MiB, not the
 * default 256. A Lua input that grows a string a byte at a time frees ever larger strings;
 * each leaves the quarantine into the free list of its own size class, where the next,
 * larger strings cannot use it and it stays resident after the input. The generator's
 * 1.5 GB of such copies (fuzz/corpus/model/crash_string_growth) peak at 1.7 GB of RSS
 * with 256 MiB, 0.85 GB with 64, 0.56 GB with 32, 0.12 GB with none; the release build runs
 * it in 37 MB and its Lua heap stays under 1 MiB. What stays, with a later input that
 * fills the generator's 1 GiB memory cap (string_doubling, 1.0 GB alone), peaks at 1.5 GB
 * with 32 MiB (1.8 GB with 64), under the 2 GiB -rss_limit_mb of tools/fuzz.sh. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUZZ_ASAN 1
#endif
#endif
#if defined(FUZZ_ASAN) || defined(__SANITIZE_ADDRESS__)
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "quarantine_size_mb=32"; }
#endif

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
