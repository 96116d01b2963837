/* test_util.h - assertion macros for the C tests: a failed check prints file:line and
 * what was expected, and ends the test with exit status 1. */
#ifndef PP_TEST_UTIL_H
#define PP_TEST_UTIL_H

#include "poolprop.h"

#include <stdio.h>
#include <stdlib.h>

/* CTest's skip code for tests that need a GPU where none exists. */
#define PP_TEST_SKIP 77

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);           \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fprintf(stderr, "\n");                                                             \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

#define CHECK_OK(ctx, expr)                                                                    \
    do {                                                                                       \
        pp_status check_status_ = (expr);                                                      \
        if (check_status_ != PP_OK) {                                                          \
            fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #expr,           \
                    pp_status_string(check_status_), pp_last_error(ctx));                      \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

/* Host-emulation contexts with 2 OS threads, ctx[0] running a block's threads in the
 * forward schedule and ctx[1] in the reverse one (the two orders every kernel test runs in). */
static inline void test_host_contexts(pp_context *ctx[2])
{
    const pp_schedule schedules[2] = {PP_SCHEDULE_FORWARD, PP_SCHEDULE_REVERSE};
    for (int i = 0; i < 2; i++) {
        pp_context_options o;
        pp_context_options_init(&o);
        o.backend = PP_BACKEND_HOST;
        o.host_schedule = schedules[i];
        o.host_threads = 2;
        ctx[i] = NULL;
        CHECK_OK(ctx[i], pp_context_create(&o, &ctx[i]));
    }
}

/* The whole file at PP_SOURCE_DIR/rel (NUL-terminated, malloc'ed); a test fails if it
 * cannot be read. */
#ifdef PP_SOURCE_DIR
static inline char *test_read_source(const char *rel)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", PP_SOURCE_DIR, rel);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = (char *)malloc((size_t)n + 1);
    CHECK(s && fread(s, 1, (size_t)n, f) == (size_t)n, "cannot read %s", path);
    s[n] = '\0';
    fclose(f);
    return s;
}
#endif

#endif
