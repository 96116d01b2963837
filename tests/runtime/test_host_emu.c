/* test_host_emu.c - the host emulation backend: the test kernels of tests/kernels/emu_*.cu
 * compiled with the host compiler and run as fibers, checked against values computed
 * here: block reductions under every schedule, a missing barrier exposed by the
 * schedules, divergent/deadlocked barriers and asserts reported as kernel errors, warp
 * shuffles and votes on full and partial warps, the other intrinsics, atomics across
 * OS threads, compile errors with file:line, the module cache (hit, corrupt entry
 * rebuilt), parallel prefetch into the cache, and the fiber switch rate (printed only).
 * Each check prints what it compared. */
#define _GNU_SOURCE
#include "cache.h"
#include "compile.h"
#include "context.h"
#include "host/fiber.h"
#include "test_util.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char cache_dir[256];

static char *read_kernel(const char *file)
{
    char rel[512];
    snprintf(rel, sizeof rel, "tests/kernels/%s", file);
    return test_read_source(rel);
}

static int warnings;
static void on_log(void *user, pp_log_level level, const char *message)
{
    (void)user;
    if (level == PP_LOG_WARNING) {
        warnings++;
        printf("  (log) %s\n", message);
    }
}

static pp_context *make_ctx(pp_schedule schedule, uint32_t seed, int threads, const char *dir)
{
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_HOST;
    o.host_schedule = schedule;
    o.host_seed = seed;
    o.host_threads = threads;
    o.cache_dir = dir;
    o.log = on_log;
    pp_context *ctx = NULL;
    pp_status st = pp_context_create(&o, &ctx);
    CHECK(st == PP_OK, "pp_context_create: %s: %s", pp_status_string(st), ctx ? pp_last_error(ctx) : "");
    return ctx;
}

static pp_status compile(pp_context *ctx, const char *file, const char *const *names, int count, pp_module **mod,
                         pp_compile_result *res)
{
    char *src = read_kernel(file);
    pp_compile_request req = {src, file, names, count};
    pp_compile_result r = {0, 0};
    pp_status st = ctx->ops->compile(ctx, &req, mod, &r);
    if (res) *res = r;
    free(src);
    return st;
}

static pp_module *compile_ok(pp_context *ctx, const char *file, const char *const *names, int count)
{
    pp_module *mod = NULL;
    pp_compile_result r;
    CHECK_OK(ctx, compile(ctx, file, names, count, &mod, &r));
    printf("  compiled %s: %s, %.0f ms\n", file, r.cache_hit ? "cache hit" : "built", r.compile_ms);
    return mod;
}

static pp_function *fn(pp_context *ctx, pp_module *mod, const char *name)
{
    pp_function *f = NULL;
    CHECK_OK(ctx, ctx->ops->get_function(ctx, mod, name, 0, &f));
    return f;
}

static pp_devptr dev_alloc(pp_context *ctx, size_t bytes)
{
    pp_devptr p = 0;
    CHECK_OK(ctx, ctx->ops->alloc(ctx, bytes, &p));
    CHECK(p % 256 == 0, "alloc is 256-byte aligned");
    return p;
}

static pp_status launch(pp_context *ctx, pp_function *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, void **args)
{
    const unsigned grid[3] = {gx, gy, gz}, block[3] = {bx, by, bz};
    return ctx->ops->launch(ctx, f, grid, block, args, NULL);
}

static const char *schedule_name(pp_schedule s)
{
    return s == PP_SCHEDULE_FORWARD ? "forward" : s == PP_SCHEDULE_REVERSE ? "reverse" : "shuffled";
}

/* ---- block reduction: exact sums under every schedule and block shape ---- */
static void block_reduction(void)
{
    printf("block reduction (shared memory + __syncthreads):\n");
    const pp_schedule schedules[] = {PP_SCHEDULE_FORWARD, PP_SCHEDULE_REVERSE, PP_SCHEDULE_SHUFFLED};
    const unsigned shapes[][3] = {{256, 1, 1}, {16, 8, 2}, {8, 4, 2}, {32, 32, 1}};
    const unsigned grid[3] = {3, 2, 2}; /* 12 blocks over 2 OS threads */
    const char *names[] = {"emu_block_sum"};
    for (int si = 0; si < 3; si++) {
        pp_context *ctx = make_ctx(schedules[si], 7, 2, cache_dir);
        if (si == 0) printf("  device: %s\n", pp_context_device_name(ctx));
        pp_module *mod = compile_ok(ctx, "emu_reduce.cu", names, 1);
        pp_function *f = fn(ctx, mod, "emu_block_sum");
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            const unsigned n = shapes[k][0] * shapes[k][1] * shapes[k][2], nb = grid[0] * grid[1] * grid[2];
            float *in = malloc(sizeof(float) * n * nb), out[12];
            double expect[12];
            for (unsigned b = 0; b < nb; b++) {
                expect[b] = 0;
                for (unsigned t = 0; t < n; t++) {
                    in[b * n + t] = (float)((b * 131 + t * 7) % 1000); /* integers: exact sums */
                    expect[b] += in[b * n + t];
                }
            }
            pp_devptr d_in = dev_alloc(ctx, sizeof(float) * n * nb), d_out = dev_alloc(ctx, sizeof out);
            CHECK_OK(ctx, ctx->ops->upload(ctx, d_in, in, sizeof(float) * n * nb));
            void *args[] = {&d_in, &d_out};
            CHECK_OK(ctx, launch(ctx, f, grid[0], grid[1], grid[2], shapes[k][0], shapes[k][1], shapes[k][2], args));
            CHECK_OK(ctx, ctx->ops->download(ctx, out, d_out, sizeof out));
            double max_err = 0;
            for (unsigned b = 0; b < nb; b++) {
                double e = out[b] - expect[b];
                if (e < 0) e = -e;
                if (e > max_err) max_err = e;
            }
            printf("  %-8s block (%u,%u,%u) grid (3,2,2): 12 block sums vs exact, max error %g\n",
                   schedule_name(schedules[si]), shapes[k][0], shapes[k][1], shapes[k][2], max_err);
            CHECK(max_err == 0, "block sums must be exact");
            ctx->ops->free(ctx, d_in);
            ctx->ops->free(ctx, d_out);
            free(in);
        }
        ctx->ops->module_destroy(ctx, mod);
        pp_context_destroy(ctx);
    }
}

/* ---- a missing barrier shows up as schedule-dependent results ---- */
static void run_neighbour(pp_schedule schedule, const char *kernel, const float *in, float *out, unsigned n,
                          unsigned nb)
{
    pp_context *ctx = make_ctx(schedule, 1, 2, cache_dir);
    const char *names[] = {"emu_neighbour_racy", "emu_neighbour_synced"};
    pp_module *mod = compile_ok(ctx, "emu_race.cu", names, 2);
    pp_devptr d_in = dev_alloc(ctx, sizeof(float) * n * nb), d_out = dev_alloc(ctx, sizeof(float) * n * nb);
    CHECK_OK(ctx, ctx->ops->upload(ctx, d_in, in, sizeof(float) * n * nb));
    void *args[] = {&d_in, &d_out};
    CHECK_OK(ctx, launch(ctx, fn(ctx, mod, kernel), nb, 1, 1, n, 1, 1, args));
    CHECK_OK(ctx, ctx->ops->download(ctx, out, d_out, sizeof(float) * n * nb));
    ctx->ops->free(ctx, d_in);
    ctx->ops->free(ctx, d_out);
    ctx->ops->module_destroy(ctx, mod);
    pp_context_destroy(ctx);
}

static int count_wrong(const float *out, const float *expect, unsigned count)
{
    int wrong = 0;
    for (unsigned i = 0; i < count; i++) wrong += out[i] != expect[i];
    return wrong;
}

static void missing_barrier(void)
{
    printf("missing __syncthreads (neighbour read):\n");
    enum {
        n = 64,
        nb = 4
    };
    static float in[n * nb], expect[n * nb], fwd[n * nb], rev[n * nb];
    for (unsigned b = 0; b < nb; b++)
        for (unsigned t = 0; t < n; t++) in[b * n + t] = (float)(1000 * (b + 1) + t);
    for (unsigned b = 0; b < nb; b++)
        for (unsigned t = 0; t < n; t++) expect[b * n + t] = in[b * n + (t + 1) % n];

    run_neighbour(PP_SCHEDULE_FORWARD, "emu_neighbour_racy", in, fwd, n, nb);
    run_neighbour(PP_SCHEDULE_REVERSE, "emu_neighbour_racy", in, rev, n, nb);
    int wf = count_wrong(fwd, expect, n * nb), wr = count_wrong(rev, expect, n * nb);
    int differ = count_wrong(fwd, rev, n * nb);
    printf("  racy:   forward %d/%d wrong, reverse %d/%d wrong, forward vs reverse differ in %d\n", wf, n * nb, wr,
           n * nb, differ);
    CHECK(differ > 0, "the missing barrier must give schedule-dependent results");
    CHECK(wf > 0 || wr > 0, "the missing barrier must give a wrong result in some schedule");

    run_neighbour(PP_SCHEDULE_FORWARD, "emu_neighbour_synced", in, fwd, n, nb);
    run_neighbour(PP_SCHEDULE_REVERSE, "emu_neighbour_synced", in, rev, n, nb);
    wf = count_wrong(fwd, expect, n * nb);
    wr = count_wrong(rev, expect, n * nb);
    differ = count_wrong(fwd, rev, n * nb);
    printf("  synced: forward %d/%d wrong, reverse %d/%d wrong, forward vs reverse differ in %d\n", wf, n * nb, wr,
           n * nb, differ);
    CHECK(wf == 0 && wr == 0 && differ == 0, "with the barrier both schedules are correct");
}

/* ---- faults come back as PP_ERR_KERNEL with a useful message ---- */
static void expect_kernel_error(pp_context *ctx, pp_module *mod, const char *kernel, unsigned nb, unsigned n,
                                void **args, const char *const *needles, int count)
{
    pp_status st = launch(ctx, fn(ctx, mod, kernel), nb, 1, 1, n, 1, 1, args);
    const char *msg = pp_last_error(ctx);
    printf("  %-18s -> %s: %s\n", kernel, pp_status_string(st), msg);
    CHECK(st == PP_ERR_KERNEL, "%s must fail with PP_ERR_KERNEL", kernel);
    for (int i = 0; i < count; i++) CHECK(strstr(msg, needles[i]) != NULL, "message must contain '%s'", needles[i]);
}

static void kernel_faults(void)
{
    printf("kernel faults:\n");
    char *src = read_kernel("emu_faults.cu");
    const char *names[] = {"emu_even_barrier", "emu_split_barrier", "emu_early_exit", "emu_checked", "emu_warp_exit"};
    const pp_schedule schedules[] = {PP_SCHEDULE_FORWARD, PP_SCHEDULE_REVERSE};
    for (int si = 0; si < 2; si++) {
        pp_context *ctx = make_ctx(schedules[si], 1, 2, cache_dir);
        printf(" schedule %s:\n", schedule_name(schedules[si]));
        pp_module *mod = compile_ok(ctx, "emu_faults.cu", names, 5);
        pp_devptr d_out = dev_alloc(ctx, 4096), d_in = dev_alloc(ctx, 4096);
        void *args1[] = {&d_out};
        char line_a[64], line_b[64], line_c[64], line_d[64], line_e[64];

        /* only even threads reach the barrier; the odd ones exit */
        const char *even[] = {"kernel emu_even_barrier", "deadlock", "16 threads wait at __syncthreads",
                              "16 threads of the block have exited"};
        expect_kernel_error(ctx, mod, "emu_even_barrier", 2, 32, args1, even, 4);

        snprintf(line_a, sizeof line_a, "line %d", test_line_of(src, "MARK: even barrier"));
        snprintf(line_b, sizeof line_b, "line %d", test_line_of(src, "MARK: odd barrier"));
        const char *split[] = {"divergent __syncthreads", line_a, line_b, "block (0,0,0)"};
        expect_kernel_error(ctx, mod, "emu_split_barrier", 1, 32, args1, split, 4);

        snprintf(line_c, sizeof line_c, "(line %d)", test_line_of(src, "MARK: early exit barrier"));
        const char *early[] = {"deadlock", "8 threads wait at __syncthreads", line_c,
                               "56 threads of the block have exited"};
        expect_kernel_error(ctx, mod, "emu_early_exit", 3, 64, args1, early, 4);

        int vals[128];
        for (int i = 0; i < 128; i++) vals[i] = i % 5; /* all pass ... */
        vals[64 + 37] = 9;                             /* ... except block 1, thread 37 */
        CHECK_OK(ctx, ctx->ops->upload(ctx, d_in, vals, sizeof vals));
        void *args2[] = {&d_in, &d_out};
        snprintf(line_d, sizeof line_d, "emu_faults.cu:%d", test_line_of(src, "MARK: assert"));
        const char *assert_needles[] = {"kernel emu_checked", "block (1,0,0), thread (37,0,0)", line_d, "v < 5"};
        expect_kernel_error(ctx, mod, "emu_checked", 2, 64, args2, assert_needles, 4);

        snprintf(line_e, sizeof line_e, "line %d", test_line_of(src, "MARK: warp exit"));
        const char *warp[] = {"deadlock", "4 lanes of warp 0 wait at a warp operation", line_e,
                              "28 of its lanes have exited"};
        expect_kernel_error(ctx, mod, "emu_warp_exit", 1, 32, args1, warp, 4);

        /* the context still works after faults */
        for (int i = 0; i < 128; i++) vals[i] = i % 5;
        CHECK_OK(ctx, ctx->ops->upload(ctx, d_in, vals, sizeof vals));
        CHECK_OK(ctx, launch(ctx, fn(ctx, mod, "emu_checked"), 2, 1, 1, 64, 1, 1, args2));
        int back[128];
        CHECK_OK(ctx, ctx->ops->download(ctx, back, d_out, sizeof back));
        CHECK(memcmp(back, vals, sizeof back) == 0, "a passing launch after faults copies its input");
        printf("  emu_checked with passing input after the faults: 128 values copied correctly\n");

        const unsigned grid[3] = {1, 1, 1}, big[3] = {2048, 1, 1};
        pp_status st = ctx->ops->launch(ctx, fn(ctx, mod, "emu_checked"), grid, big, args2, NULL);
        printf("  block of 2048 threads -> %s: %s\n", pp_status_string(st), pp_last_error(ctx));
        CHECK(st == PP_ERR_INVALID_ARGUMENT, "more than 1024 threads per block is rejected");
        pp_function *missing = NULL;
        st = ctx->ops->get_function(ctx, mod, "emu_no_such_kernel", 0, &missing);
        printf("  get_function(emu_no_such_kernel) -> %s: %s\n", pp_status_string(st), pp_last_error(ctx));
        CHECK(st != PP_OK && strstr(pp_last_error(ctx), "emu_no_such_kernel"), "unknown kernel name reported");

        ctx->ops->free(ctx, d_out);
        ctx->ops->free(ctx, d_in);
        ctx->ops->module_destroy(ctx, mod);
        pp_context_destroy(ctx);
    }
    free(src);
}

/* ---- warp shuffles and votes ---- */
static int ref_at(const int *v, int base, int lanes, int j) { return j < lanes ? v[base + j] : 0; }

static void warp_ops(void)
{
    printf("warp shuffles and votes:\n");
    const unsigned sizes[] = {96, 40};
    const pp_schedule schedules[] = {PP_SCHEDULE_FORWARD, PP_SCHEDULE_SHUFFLED};
    const char *names[] = {"emu_warp_ops"};
    const char *what[7] = {"shfl_down tree sum", "shfl_xor width 8", "shfl width 16 bcast",
                           "shfl_up 2 width 16", "ballot",           "any/all",
                           "shfl lane 33"};
    for (int si = 0; si < 2; si++) {
        pp_context *ctx = make_ctx(schedules[si], 12345, 2, cache_dir);
        pp_module *mod = compile_ok(ctx, "emu_warp.cu", names, 1);
        pp_function *f = fn(ctx, mod, "emu_warp_ops");
        for (int k = 0; k < 2; k++) {
            const int n = (int)sizes[k], nb = 3, total = n * nb;
            int *in = malloc(sizeof(int) * total), *out = malloc(sizeof(int) * total * 7),
                *ref = malloc(sizeof(int) * total * 7);
            for (int i = 0; i < total; i++) in[i] = (i * 37) % 101;
            for (int b = 0; b < nb; b++) {
                for (int t = 0; t < n; t++) {
                    const int g = b * n + t, lane = t % 32, base = b * n + (t - lane);
                    const int lanes = n - (t - lane) < 32 ? n - (t - lane) : 32;
                    int sum = 0, group = 0, all = 1;
                    unsigned ballot = 0;
                    for (int j = 0; j < lanes; j++) {
                        sum += in[base + j];
                        if (in[base + j] % 3 == 0) ballot |= 1u << j;
                        all &= in[base + j] >= 0;
                    }
                    for (int j = lane & ~7; j < (lane & ~7) + 8; j++) group += ref_at(in, base, lanes, j);
                    ref[0 * total + g] = lane == 0 ? sum : -1; /* only lane 0 holds the whole sum */
                    ref[1 * total + g] = group;
                    ref[2 * total + g] = ref_at(in, base, lanes, (lane & ~15) + 3);
                    ref[3 * total + g] = lane % 16 < 2 ? in[g] : ref_at(in, base, lanes, lane - 2);
                    ref[4 * total + g] = (int)ballot;
                    ref[5 * total + g] = 0 + (all ? 2 : 0); /* no value exceeds 1000 */
                    ref[6 * total + g] = ref_at(in, base, lanes, 1);
                }
            }
            pp_devptr d_in = dev_alloc(ctx, sizeof(int) * total), d_out = dev_alloc(ctx, sizeof(int) * total * 7);
            CHECK_OK(ctx, ctx->ops->upload(ctx, d_in, in, sizeof(int) * total));
            void *args[] = {&d_in, &d_out};
            CHECK_OK(ctx, launch(ctx, f, nb, 1, 1, n, 1, 1, args));
            CHECK_OK(ctx, ctx->ops->download(ctx, out, d_out, sizeof(int) * total * 7));
            printf("  %-8s %d threads/block (%s):", schedule_name(schedules[si]), n,
                   n % 32 ? "partial last warp" : "full warps");
            for (int op = 0; op < 7; op++) {
                int wrong = 0;
                for (int i = 0; i < total; i++) {
                    if (op == 0 && i % n % 32 != 0) continue;
                    wrong += out[op * total + i] != ref[op * total + i];
                }
                printf(" %s %s;", what[op], wrong ? "WRONG" : "ok");
                CHECK(wrong == 0, "%s: %d values differ from the reference", what[op], wrong);
            }
            printf("\n");
            ctx->ops->free(ctx, d_in);
            ctx->ops->free(ctx, d_out);
            free(in);
            free(out);
            free(ref);
        }
        ctx->ops->module_destroy(ctx, mod);
        pp_context_destroy(ctx);
    }
}

/* ---- the rest of the emulated surface ---- */
static void intrinsics(void)
{
    printf("other intrinsics (one block of 64):\n");
    pp_context *ctx = make_ctx(PP_SCHEDULE_REVERSE, 1, 1, cache_dir);
    const char *names[] = {"emu_intrinsics"};
    pp_module *mod = compile_ok(ctx, "emu_intrinsics.cu", names, 1);
    const float in4[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    pp_devptr d_in = dev_alloc(ctx, sizeof in4), d_out = dev_alloc(ctx, 80 * sizeof(int));
    CHECK_OK(ctx, ctx->ops->upload(ctx, d_in, in4, sizeof in4));
    void *args[] = {&d_in, &d_out};
    CHECK_OK(ctx, launch(ctx, fn(ctx, mod, "emu_intrinsics"), 1, 1, 1, 64, 1, 1, args));
    int out[80], expect[80];
    CHECK_OK(ctx, ctx->ops->download(ctx, out, d_out, sizeof out));
    for (int t = 0; t < 64; t++) expect[t] = 2 * t + (int)(in4[4 * (t % 4)] + in4[4 * (t % 4) + 3]);
    const int tail[16] = {10, 1, 0, 64, 63, 0, 8, 31, 4, (int)0x80000000u, 0x3f800000, 250, 9, 5, 33, 69};
    const char *what[16] = {"__syncthreads_count",
                            "__syncthreads_and",
                            "__syncthreads_or",
                            "atomicAdd/Sub int",
                            "atomicMax",
                            "atomicMin",
                            "__popc",
                            "__clz",
                            "__ffs",
                            "__brev",
                            "__float_as_int",
                            "rsqrtf",
                            "fma+expf+saturate",
                            "max/min",
                            "fdividef/fmaxf/warpSize",
                            "atomicCAS"};
    memcpy(expect + 64, tail, sizeof tail);
    int wrong = 0;
    for (int t = 0; t < 64; t++) wrong += out[t] != expect[t];
    printf("  float4/__ldg/make_float2 per thread: %d/64 wrong\n", wrong);
    CHECK(wrong == 0, "per-thread values");
    for (int i = 0; i < 16; i++) {
        printf("  %-24s %d (expected %d)\n", what[i], out[64 + i], expect[64 + i]);
        CHECK(out[64 + i] == expect[64 + i], "%s", what[i]);
    }
    ctx->ops->free(ctx, d_in);
    ctx->ops->free(ctx, d_out);
    ctx->ops->module_destroy(ctx, mod);
    pp_context_destroy(ctx);
}

/* ---- atomics across OS threads ---- */
static void run_atomic(pp_context *ctx, pp_module *mod, const char *label)
{
    enum {
        n = 64 * 256 + 77
    };
    static float in[n];
    double expect = 0;
    for (int i = 0; i < n; i++) {
        in[i] = (float)(i % 16) * 0.25f; /* multiples of 1/4 below 2^20: every partial sum is exact */
        expect += in[i];
    }
    pp_devptr d_in = dev_alloc(ctx, sizeof in), d_total = dev_alloc(ctx, 4), d_count = dev_alloc(ctx, 4);
    CHECK_OK(ctx, ctx->ops->upload(ctx, d_in, in, sizeof in));
    CHECK_OK(ctx, ctx->ops->memset_zero(ctx, d_total, 4));
    CHECK_OK(ctx, ctx->ops->memset_zero(ctx, d_count, 4));
    int count_n = n;
    void *args[] = {&d_in, &d_total, &d_count, &count_n};
    CHECK_OK(ctx, launch(ctx, fn(ctx, mod, "emu_atomic_sum"), (n + 255) / 256, 1, 1, 256, 1, 1, args));
    float total;
    int count;
    CHECK_OK(ctx, ctx->ops->download(ctx, &total, d_total, 4));
    CHECK_OK(ctx, ctx->ops->download(ctx, &count, d_count, 4));
    printf("  %s: float atomicAdd total %.2f vs exact %.2f, int atomicAdd count %d vs %d\n", label, total, expect,
           count, n);
    CHECK(total == expect && count == n, "atomic sums must be exact");
    ctx->ops->free(ctx, d_in);
    ctx->ops->free(ctx, d_total);
    ctx->ops->free(ctx, d_count);
}

static void atomics(void)
{
    printf("atomicAdd across blocks on 4 OS threads:\n");
    pp_context *ctx = make_ctx(PP_SCHEDULE_SHUFFLED, 3, 4, cache_dir);
    const char *names[] = {"emu_atomic_sum"};
    pp_module *mod = compile_ok(ctx, "emu_atomic.cu", names, 1);
    run_atomic(ctx, mod, "65 blocks x 256");
    ctx->ops->module_destroy(ctx, mod);
    pp_context_destroy(ctx);
}

/* ---- compile errors ---- */
static void compile_errors(void)
{
    printf("compile errors:\n");
    pp_context *ctx = make_ctx(PP_SCHEDULE_FORWARD, 1, 1, cache_dir);
    const char *names[] = {"emu_bad"};
    pp_module *mod = NULL;
    pp_status st = compile(ctx, "emu_bad.cu", names, 1, &mod, NULL);
    char *src = read_kernel("emu_bad.cu");
    char where[64];
    snprintf(where, sizeof where, "emu_bad.cu:%d:", test_line_of(src, "MARK: compile error"));
    free(src);
    const char *msg = pp_last_error(ctx);
    const char *first = strstr(msg, where);
    int first_len = first ? (int)strcspn(first, "\n") : 0;
    printf("  emu_bad.cu -> %s, message names %s: %s (\"%.*s\")\n", pp_status_string(st), where, first ? "yes" : "no",
           first_len, first ? first : "");
    CHECK(st == PP_ERR_COMPILE && mod == NULL, "a kernel that does not compile gives PP_ERR_COMPILE");
    CHECK(first != NULL, "the message names the file and line: %s", msg);

    const char *wrong_names[] = {"emu_block_sum", "emu_not_exported"};
    st = compile(ctx, "emu_reduce.cu", wrong_names, 2, &mod, NULL);
    printf("  emu_reduce.cu asked for emu_not_exported -> %s: %s\n", pp_status_string(st), pp_last_error(ctx));
    CHECK(st == PP_ERR_COMPILE && strstr(pp_last_error(ctx), "emu_not_exported"), "a missing kernel is named");
    pp_context_destroy(ctx);
}

/* ---- the module cache: hit, and a damaged entry rebuilt ---- */
static void newest_file(const char *dir, char *out, size_t len)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL, "opendir %s", dir);
    struct dirent *e;
    struct timespec best = {0, 0};
    out[0] = '\0';
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (st.st_mtim.tv_sec > best.tv_sec ||
            (st.st_mtim.tv_sec == best.tv_sec && st.st_mtim.tv_nsec > best.tv_nsec)) {
            best = st.st_mtim;
            snprintf(out, len, "%s", path);
        }
    }
    closedir(d);
    CHECK(out[0], "no file in %s", dir);
}

static void module_cache(void)
{
    printf("module cache:\n");
    char dir[300];
    snprintf(dir, sizeof dir, "%s/fresh", cache_dir);
    pp_context *ctx = make_ctx(PP_SCHEDULE_FORWARD, 1, 2, dir);
    const char *names[] = {"emu_atomic_sum"};
    pp_module *mod = NULL;
    pp_compile_result r;
    pp_cache_stats s0, s1, s2, s3;
    CHECK_OK(ctx, pp_context_cache_stats(ctx, &s0));
    CHECK_OK(ctx, compile(ctx, "emu_atomic.cu", names, 1, &mod, &r));
    CHECK_OK(ctx, pp_context_cache_stats(ctx, &s1));
    printf("  first compile: cache_hit %d, %.0f ms; stats hits %d misses %d writes %d\n", r.cache_hit, r.compile_ms,
           s1.hits, s1.misses, s1.writes);
    CHECK(!r.cache_hit && s1.misses == s0.misses + 1 && s1.writes == s0.writes + 1, "first compile misses and writes");
    ctx->ops->module_destroy(ctx, mod);

    CHECK_OK(ctx, compile(ctx, "emu_atomic.cu", names, 1, &mod, &r));
    CHECK_OK(ctx, pp_context_cache_stats(ctx, &s2));
    printf("  second compile: cache_hit %d, %.0f ms; stats hits %d\n", r.cache_hit, r.compile_ms, s2.hits);
    CHECK(r.cache_hit && s2.hits == s1.hits + 1 && r.compile_ms == 0, "second compile is a cache hit");
    run_atomic(ctx, mod, "module from the cache");
    ctx->ops->module_destroy(ctx, mod);

    char path[1024];
    newest_file(dir, path, sizeof path);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL, "open %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size / 2, SEEK_SET);
    int c = fgetc(f);
    fseek(f, size / 2, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
    printf("  flipped a byte at offset %ld of %s (%ld bytes)\n", size / 2, path, size);
    int warnings_before = warnings;
    CHECK_OK(ctx, compile(ctx, "emu_atomic.cu", names, 1, &mod, &r));
    CHECK_OK(ctx, pp_context_cache_stats(ctx, &s3));
    printf("  compile after damage: cache_hit %d; stats corrupt %d, writes %d, warnings %d\n", r.cache_hit, s3.corrupt,
           s3.writes, warnings - warnings_before);
    CHECK(!r.cache_hit && s3.corrupt == s2.corrupt + 1 && s3.writes == s2.writes + 1,
          "damaged entry detected, rebuilt");
    CHECK(warnings > warnings_before, "damage reported through the log");
    run_atomic(ctx, mod, "rebuilt module");
    ctx->ops->module_destroy(ctx, mod);

    CHECK_OK(ctx, compile(ctx, "emu_atomic.cu", names, 1, &mod, &r));
    printf("  compile after rebuild: cache_hit %d\n", r.cache_hit);
    CHECK(r.cache_hit, "rebuilt entry is served from the cache");
    ctx->ops->module_destroy(ctx, mod);
    pp_context_destroy(ctx);
}

/* ---- fiber switch rate ---- */
typedef struct ping {
    fiber main, other;
    long count;
} ping;

static void ping_fn(void *arg)
{
    ping *p = arg;
    for (;;) {
        p->count++;
        fiber_switch(&p->other, &p->main);
    }
}

static void fiber_switch_rate(void)
{
    ping p;
    memset(&p, 0, sizeof p);
    fiber_stack stack;
    CHECK(fiber_stack_alloc(&stack, 64 * 1024) == 0, "fiber_stack_alloc");
    fiber_init_current(&p.main);
    fiber_init(&p.other, &stack, ping_fn, &p);
    const long rounds = 500000; /* two switches per round */
    double t0 = test_now_s();
    for (long i = 0; i < rounds; i++) fiber_switch(&p.main, &p.other);
    double dt = test_now_s() - t0;
    CHECK(p.count == rounds, "the fiber ran %ld times, expected %ld", p.count, rounds);
    printf("fiber switches: %ld in %.3f s = %.1f M switches/s (%.1f ns per switch)\n", 2 * rounds, dt,
           2 * rounds / dt / 1e6, dt / (2 * rounds) * 1e9);
    fiber_stack_free(&stack);
}

/* compile_prefetch: four distinct modules (one listed twice, one that does not compile)
 * compiled on several threads; the compiles that follow load the good ones from the cache,
 * the entries are whole, and the bad one still reports its error. */
static void parallel_prefetch(void)
{
    printf("parallel prefetch into the cache:\n");
    char dir[300];
    snprintf(dir, sizeof dir, "%s/prefetch", cache_dir);
    pp_context *ctx = make_ctx(PP_SCHEDULE_FORWARD, 1, 2, dir);
    char *base = read_kernel("emu_atomic.cu");
    enum {
        good = 4
    };
    char *src[good + 2];
    char names[good + 2][32];
    pp_compile_request reqs[good + 2];
    for (int i = 0; i < good; i++) {
        size_t n = strlen(base) + 64;
        src[i] = malloc(n);
        snprintf(src[i], n, "%s\n// variant %d\n", base, i); /* distinct sources, distinct entries */
        snprintf(names[i], sizeof names[i], "emu_atomic_%d.cu", i);
        reqs[i] = (pp_compile_request){src[i], names[i], NULL, 0};
    }
    reqs[good] = reqs[0]; /* the same entry written by two threads */
    src[good + 1] = strdup("extern \"C\" __global__ void broken() { this does not compile; }\n");
    snprintf(names[good + 1], sizeof names[good + 1], "broken.cu");
    reqs[good + 1] = (pp_compile_request){src[good + 1], names[good + 1], NULL, 0};
    double t0 = test_now_s();
    compile_prefetch(ctx, reqs, good + 2, 0);
    double t1 = test_now_s();
    pp_cache_stats s0, s1;
    CHECK_OK(ctx, pp_context_cache_stats(ctx, &s0));
    const char *kernel[] = {"emu_atomic_sum"};
    for (int i = 0; i < good; i++) {
        pp_module *mod;
        pp_compile_result r;
        pp_compile_request req = {src[i], names[i], kernel, 1};
        CHECK_OK(ctx, ctx->ops->compile(ctx, &req, &mod, &r));
        CHECK(r.cache_hit, "%s was prefetched", names[i]);
        if (i == 0) run_atomic(ctx, mod, "module prefetched by two threads at once");
        ctx->ops->module_destroy(ctx, mod);
    }
    CHECK_OK(ctx, pp_context_cache_stats(ctx, &s1));
    pp_module *bad = NULL;
    pp_status st = ctx->ops->compile(ctx, &reqs[good + 1], &bad, NULL);
    printf("  %d modules prefetched in %.1f s on several threads; then %d cache hits, %d misses, %d corrupt; the "
           "broken source: %s\n",
           good, t1 - t0, s1.hits - s0.hits, s1.misses - s0.misses, s1.corrupt - s0.corrupt, pp_status_string(st));
    CHECK(s1.hits - s0.hits == good && s1.misses == s0.misses && s1.corrupt == 0, "all loads from the cache");
    CHECK(st == PP_ERR_COMPILE && strstr(pp_last_error(ctx), "broken.cu"), "the broken source's error is reported");
    for (int i = 0; i < good; i++) free(src[i]);
    free(src[good + 1]);
    free(base);
    pp_context_destroy(ctx);
}

static const test_case tests[] = {
    TEST_CASE(fiber_switch_rate, "500000 fiber round trips complete (the rate is printed, not checked)"),
    TEST_CASE(block_reduction, "block sums are exact under every schedule and block shape"),
    TEST_CASE(missing_barrier, "a missing __syncthreads gives schedule-dependent results; with it both are right"),
    TEST_CASE(kernel_faults,
              "deadlocks, divergent barriers and asserts are PP_ERR_KERNEL naming kernel, block and line"),
    TEST_CASE(warp_ops, "warp shuffles and votes on full and partial warps match the reference"),
    TEST_CASE(intrinsics, "the other intrinsics (syncthreads_count, atomics, bit operations, math) give exact values"),
    TEST_CASE(atomics, "atomicAdd across blocks on 4 OS threads gives exact sums"),
    TEST_CASE(compile_errors,
              "a kernel that does not compile is PP_ERR_COMPILE naming file:line; a missing kernel named"),
    TEST_CASE(module_cache, "the module cache: miss, hit, a damaged entry detected, reported, rebuilt and served"),
    TEST_CASE(parallel_prefetch,
              "compile_prefetch fills the cache on several threads; a broken source keeps its error"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    test_temp_dir(cache_dir, sizeof cache_dir, "test_host_emu");
    double t0 = test_now_s();
    int status = TEST_RUN(tests, only);
    if (test_remove_dir(cache_dir) != 0) printf("note: could not remove %s\n", cache_dir);
    if (!only) printf("test_host_emu: all checks passed in %.1f s\n", test_now_s() - t0);
    return status;
}
