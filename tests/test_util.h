/* test_util.h - what the C tests share: assertion macros (a failed check prints file:line
 * and what was expected, and ends the test with exit status 1), named test cases run from
 * a table, and the helpers several tests need (host contexts, source files and their lines,
 * temporary directories, random data, memory, time). Header-only: each test is one translation unit.
 *
 * A test file is a set of static void functions, each one coherent check, and a main that
 * runs their table:
 *
 *     static const test_case tests[] = {
 *         TEST_CASE(reduce, "block sums are exact under every schedule"),
 *         TEST_CASE_AFTER(cache_hit, reduce, "the second compile is served from the cache"),
 *     };
 *     int main(int argc, char **argv)
 *     {
 *         const char *only = test_select(&argc, argv);
 *         ... the file's own arguments, contexts the tests share ...
 *         return TEST_RUN(tests, only);
 *     }
 *
 * Each case prints "test NAME: WHAT" before it runs and "  ok" after; a failed CHECK ends
 * the program there. "--test=NAME" (or "--test NAME") anywhere on the command line runs
 * only that case (after the cases it is declared to need, TEST_CASE_AFTER, which share
 * its state); test_select removes it, so the file's own arguments keep their positions.
 * Cases run in table order: where they share state (a random stream, counters, a cache),
 * the order is part of the test. */
#ifndef PP_TEST_UTIL_H
#define PP_TEST_UTIL_H

#include "poolprop.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* CTest's skip code for tests that need a GPU where none exists. */
#define PP_TEST_SKIP 77

#define CHECK(cond, ...)                                                             \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fprintf(stderr, "\n");                                                   \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

#define CHECK_OK(ctx, expr)                                                                                           \
    do {                                                                                                              \
        pp_status check_status_ = (expr);                                                                             \
        if (check_status_ != PP_OK) {                                                                                 \
            fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #expr, pp_status_string(check_status_), \
                    pp_last_error(ctx));                                                                              \
            exit(1);                                                                                                  \
        }                                                                                                             \
    } while (0)

/* ---- named test cases ---- */

typedef struct test_case {
    const char *name; /* the function's name, what --test selects */
    void (*run)(void);
    const char *what;  /* what the case checks, printed before it runs */
    const char *after; /* NULL, or the case whose state this one needs (run first when selected) */
} test_case;

/* clang-format would split these initialisers over lines and mis-indent #fn. */
/* clang-format off */
#define TEST_CASE(fn, what) {#fn, fn, what, NULL}
#define TEST_CASE_AFTER(fn, prev, what) {#fn, fn, what, #prev}
/* clang-format on */
#define TEST_RUN(tests, only) test_run_cases(tests, (int)(sizeof tests / sizeof tests[0]), only)

/* The case named by "--test=NAME" or "--test NAME" in argv (NULL: all), removed from argv
 * and *argc. Makes stdout line-buffered, so that what a case printed comes before a failed
 * check's message on stderr: call it first in main, before any output. */
static inline const char *test_select(int *argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *only = NULL;
    int kept = 1;
    for (int i = 1; i < *argc; i++) {
        if (strncmp(argv[i], "--test=", 7) == 0)
            only = argv[i] + 7;
        else if (strcmp(argv[i], "--test") == 0 && i + 1 < *argc)
            only = argv[++i];
        else
            argv[kept++] = argv[i];
    }
    argv[kept] = NULL;
    *argc = kept;
    return only;
}

static inline void test_run_case(const test_case *t)
{
    printf("test %s: %s\n", t->name, t->what);
    fflush(stdout);
    t->run();
    printf("  ok\n");
    fflush(stdout);
}

/* Runs tests[0..n) in order, or only the one named only and the cases it needs (its
 * TEST_CASE_AFTER chain). Returns main's exit status: 0, or 2 when only names no case (the
 * names are listed on stderr). */
static inline int test_run_cases(const test_case *tests, int n, const char *only)
{
    int ran = 0;
    if (!only) {
        for (int i = 0; i < n; i++) test_run_case(&tests[i]), ran++;
        printf("%d tests passed\n", ran);
        return 0;
    }
    /* Walk the chain back from the selected case; then run it forwards, in table order. */
    int chain[64], length = 0;
    for (const char *want = only; want && length < 64;) {
        int found = -1;
        for (int i = 0; i < n && found < 0; i++)
            if (strcmp(tests[i].name, want) == 0) found = i;
        if (found < 0) {
            fprintf(stderr, "no test named '%s'; the tests are:", want);
            for (int i = 0; i < n; i++) fprintf(stderr, " %s", tests[i].name);
            fprintf(stderr, "\n");
            return 2;
        }
        int again = 0; /* a cycle of TEST_CASE_AFTER: each case still runs once */
        for (int j = 0; j < length; j++) again |= chain[j] == found;
        if (again) break;
        chain[length++] = found;
        want = tests[found].after;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < length; j++)
            if (chain[j] == i) test_run_case(&tests[i]), ran++;
    printf("%d of %d tests passed (selected: %s)\n", ran, n, only);
    return 0;
}

/* ---- helpers ---- */

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

/* 1-based number of the first line of src that contains marker; a test fails if none does. */
static inline int test_line_of(const char *src, const char *marker)
{
    const char *p = strstr(src, marker);
    CHECK(p != NULL, "marker '%s' not found", marker);
    int line = 1;
    for (const char *q = src; q < p; q++) line += *q == '\n';
    return line;
}

/* A new directory /tmp/pp_NAME_XXXXXX (mkdtemp) in dir[size]; a test fails if it cannot be made. */
static inline void test_temp_dir(char *dir, size_t size, const char *name)
{
    snprintf(dir, size, "/tmp/pp_%s_XXXXXX", name);
    CHECK(mkdtemp(dir) != NULL, "mkdtemp %s", dir);
}

/* Removes dir and everything in it; returns 0 where that worked. */
static inline int test_remove_dir(const char *dir)
{
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

/* calloc'ed (zeroed) memory, at least one byte; a test fails if there is none. */
static inline void *test_xmalloc(size_t bytes)
{
    void *p = calloc(1, bytes ? bytes : 1);
    CHECK(p != NULL, "out of memory (%zu bytes)", bytes);
    return p;
}

/* xorshift64 (13, 7, 17): the next 32 random bits of *state (never 0). */
static inline uint32_t test_rand_u32(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return (uint32_t)(*state >> 32);
}

/* Uniform in [lo, hi) from 24 random bits of *state. */
static inline float test_uniform(uint64_t *state, float lo, float hi)
{
    return lo + (hi - lo) * (float)(test_rand_u32(state) >> 8) * (1.0f / 16777216.0f);
}

/* n values uniform in [lo, hi) (test_xmalloc'ed). */
static inline float *test_rand_floats(uint64_t *state, size_t n, float lo, float hi)
{
    float *p = test_xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = test_uniform(state, lo, hi);
    return p;
}

/* The linear congruential generator (Numerical Recipes' constants) several tests fill
 * their inputs with: the next value of *state, as a float uniform in [-1, 1) (24 bits). */
static inline float test_lcg_signed(uint32_t *state)
{
    *state = *state * 1664525u + 1013904223u;
    return (float)((*state >> 8) * (1.0 / 16777216.0) * 2.0 - 1.0);
}

/* Seconds on the monotonic clock. */
static inline double test_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#endif
