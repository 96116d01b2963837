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
