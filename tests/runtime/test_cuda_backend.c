/* test_cuda_backend.c - the cuda backend.
 *
 *   test_cuda_backend                 no driver or no GPU: creating a cuda context fails with
 *                                     PP_ERR_NO_DEVICE and a clear message, then the test
 *                                     exits 77 (skipped). With a GPU: compiles and runs a
 *                                     kernel, checks its results exactly, compile cache hit,
 *                                     missing kernel, oversized block, 1 PiB allocation
 *                                     (PP_ERR_OUT_OF_MEMORY), bad device ordinal and arch.
 *   test_cuda_backend --no-fallback   selecting cuda never silently falls back to the host
 *                                     backend: where it cannot work it fails (always runs);
 *                                     PP_BACKEND_AUTO, the default, picks cuda where it
 *                                     starts and host otherwise, and says why.
 * The test_cuda_backend_mock CTest entry runs the first form against tests/mock_libcuda.c
 * (a stand-in libcuda.so.1), which also exercises the driver's failure modes. */
#include "context.h"
#include "test_util.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *kernel_src =
    "/* y: (n)  x: (n) */\n"
    "extern \"C\" __global__ void pp_test_saxpb(const float *x, float *y, float a, float b, int n)\n"
    "{\n"
    "    int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
    "    if (i < n) y[i] = a * x[i] + b;\n"
    "}\n"
    "extern \"C\" __global__ void pp_test_fault(float *y)\n"
    "{\n"
    "    if (threadIdx.x == 0) y[0] = 1.0f;\n"
    "}\n";

typedef void (*mock_counts_fn)(int *refs, int *modules, size_t *bytes, int *launches);
static mock_counts_fn mock_counts;         /* non-NULL when running against the mock driver */
static unsigned (*mock_last_shared)(void); /* likewise */
static void *(*mock_last_stream)(void);    /* likewise */
static char cache_dir[64];

static pp_status create(pp_context **ctx, int device, int arch)
{
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_CUDA;
    o.cuda_device = device;
    o.arch = arch;
    o.cache_dir = cache_dir;
    return pp_context_create(&o, ctx);
}

/* A failed creation must leave a context without a backend: never the host one. */
static void check_no_backend(pp_context *ctx, const char *what)
{
    CHECK(ctx != NULL, "%s: a context is returned to read the message", what);
    CHECK(ctx->ops == NULL && ctx->backend == NULL, "%s: no backend attached", what);
    CHECK(pp_context_backend(ctx) == PP_BACKEND_CUDA, "%s: still the cuda backend that was asked for", what);
    CHECK(strstr(pp_context_device_name(ctx), "host") == NULL, "%s: no host device: %s", what,
          pp_context_device_name(ctx));
}

static void expect_create_failure(const char *what, int device, int arch, pp_status status, const char *frag1,
                                  const char *frag2)
{
    pp_context *ctx = NULL;
    pp_status st = create(&ctx, device, arch);
    const char *msg = pp_last_error(ctx);
    CHECK(st == status, "%s: %s, expected %s: %s", what, pp_status_string(st), pp_status_string(status), msg);
    check_no_backend(ctx, what);
    CHECK(strstr(msg, frag1) != NULL, "%s: message mentions \"%s\": %s", what, frag1, msg);
    CHECK(!frag2 || strstr(msg, frag2) != NULL, "%s: message mentions \"%s\": %s", what, frag2, msg);
    printf("%s: %s: %s\n", what, pp_status_string(st), msg);
    pp_context_destroy(ctx);
}

/* PP_BACKEND_AUTO, the default: cuda where it starts (gpu), else host, saying why
 * (cuda_error: the message of the failed cuda creation). */
static void check_auto(int gpu, const char *cuda_error)
{
    pp_context_options o;
    pp_context_options_init(&o);
    CHECK(o.backend == PP_BACKEND_AUTO, "the default backend is auto, got %d", (int)o.backend);
    o.cache_dir = cache_dir;
    pp_context *ctx = NULL;
    CHECK_OK(ctx, pp_context_create(&o, &ctx));
    const char *reason = pp_context_backend_reason(ctx);
    printf("auto: %s (%s), on %s\n", pp_context_backend(ctx) == PP_BACKEND_CUDA ? "cuda" : "host", reason,
           pp_context_device_name(ctx));
    if (gpu) {
        CHECK(pp_context_backend(ctx) == PP_BACKEND_CUDA && strcmp(ctx->ops->name, "cuda") == 0,
              "auto with a GPU: cuda");
        CHECK(strcmp(reason, "a usable GPU") == 0, "auto with a GPU says so: %s", reason);
    } else {
        CHECK(pp_context_backend(ctx) == PP_BACKEND_HOST && strcmp(ctx->ops->name, "host") == 0,
              "auto without a GPU: host");
        CHECK(strncmp(reason, "no usable GPU: ", 15) == 0 && strncmp(reason + 15, cuda_error, 40) == 0,
              "auto without a GPU says why (the cuda backend's message '%s'): %s", cuda_error, reason);
        CHECK(pp_last_error(ctx)[0] == '\0', "the fallback is not an error: %s", pp_last_error(ctx));
    }
    pp_context_destroy(ctx);
    o.backend = PP_BACKEND_HOST;
    CHECK_OK(ctx, pp_context_create(&o, &ctx));
    CHECK(strcmp(pp_context_backend_reason(ctx), "requested") == 0, "an explicit backend is requested");
    pp_context_destroy(ctx);
}

static void check_balanced(const char *when)
{
    if (!mock_counts) return;
    int refs, modules, launches;
    size_t bytes;
    mock_counts(&refs, &modules, &bytes, &launches);
    CHECK(refs == 0 && modules == 0 && bytes == 0, "%s: everything released: %d context refs, %d modules, %zu bytes",
          when, refs, modules, bytes);
    printf("%s: driver resources balanced (0 context refs, 0 modules, 0 bytes)\n", when);
}

/* What the cases share. Both forms: whether cuda started (have_gpu) and, where it did not,
 * its message (cuda_error). Without --no-fallback: the context (ctx, device_cc) and what
 * saxpb_exact compiled, allocated and launched, which the later GPU cases reuse. */
static int have_gpu;
static pp_status create_status;
static char cuda_error[1024];
static pp_context *ctx;
static int device_cc;
static const char *names[] = {"pp_test_saxpb", "pp_test_fault"};
static pp_compile_request req = {NULL, "pp_test_saxpb.cu", names, 2}; /* source: kernel_src (main) */
static pp_module *mod;
static pp_function *fn;
enum {
    n = 1000,
    cap = 1024
}; /* y = 2x + 3 on n of cap elements */
static float *x, *y;
static pp_devptr dx, dy;
static float a = 2.0f, b = 3.0f;
static int count = n;
static void *args[] = {&dx, &dy, &a, &b, &count};
static unsigned grid[3] = {(n + 255) / 256, 1, 1}, block[3] = {256, 1, 1};

/* ---- --no-fallback ---- */

static void no_fallback_create(void)
{
    pp_context *ctx = NULL;
    pp_status st = create(&ctx, 0, 0);
    if (st != PP_OK) {
        CHECK(st == PP_ERR_NO_DEVICE, "no GPU: PP_ERR_NO_DEVICE, got %s: %s", pp_status_string(st), pp_last_error(ctx));
        check_no_backend(ctx, "cuda without a GPU");
        printf("cuda selected without a usable GPU: fails (%s), no host fallback: %s\n", pp_status_string(st),
               pp_last_error(ctx));
        snprintf(cuda_error, sizeof cuda_error, "%s", pp_last_error(ctx));
        pp_context_destroy(ctx);
        return;
    }
    have_gpu = 1;
    CHECK(ctx->ops && strcmp(ctx->ops->name, "cuda") == 0, "the cuda backend is attached");
    printf("cuda selected with a GPU: %s (backend %s)\n", pp_context_device_name(ctx), ctx->ops->name);
    pp_context_destroy(ctx);
}

static void auto_backend(void) { check_auto(have_gpu, have_gpu ? NULL : cuda_error); }

static void bad_ordinal(void)
{
    if (!have_gpu) return; /* without a GPU, every cuda creation fails (no_fallback_create) */
    expect_create_failure("device ordinal 9999", 9999, 0, PP_ERR_INVALID_ARGUMENT, "out of range", NULL);
}

static const test_case no_fallback_tests[] = {
    TEST_CASE(no_fallback_create, "cuda fails with PP_ERR_NO_DEVICE and no backend where it cannot start, never "
                                  "falling back to host; with a GPU the cuda backend is attached"),
    TEST_CASE_AFTER(auto_backend, no_fallback_create,
                    "auto picks cuda where it starts, else host saying why; an explicit backend is 'requested'"),
    TEST_CASE_AFTER(bad_ordinal, no_fallback_create, "(with a GPU) device ordinal 9999 is out of range"),
};

/* ---- without a GPU ---- */

static void no_gpu(void)
{
    const char *msg = pp_last_error(ctx);
    CHECK(!mock_counts, "the mock driver provides a device: %s", msg);
    CHECK(create_status == PP_ERR_NO_DEVICE, "without a GPU: PP_ERR_NO_DEVICE, got %s: %s",
          pp_status_string(create_status), msg);
    check_no_backend(ctx, "no GPU");
    CHECK(strncmp(msg, "cuda backend: ", 14) == 0 && strstr(msg, "host backend") &&
              (strstr(msg, "libcuda.so.1") || strstr(msg, "CUDA_ERROR_")),
          "the message says what is missing and what to do: %s", msg);
    printf("no usable GPU: %s: %s\n", pp_status_string(create_status), msg);
}

static const test_case no_gpu_tests[] = {
    TEST_CASE(no_gpu, "creating a cuda context fails with PP_ERR_NO_DEVICE, no backend and a message saying what "
                      "is missing and what to do"),
};

/* ---- with a GPU (or the mock driver) ---- */

static void device_name(void)
{
    printf("device: %s, compiling for sm_%d\n", pp_context_device_name(ctx), ctx->arch);
    CHECK(strstr(pp_context_device_name(ctx), "sm_") && strstr(pp_context_device_name(ctx), "SMs") &&
              strstr(pp_context_device_name(ctx), "driver "),
          "device name gives arch, SMs and driver: %s", pp_context_device_name(ctx));
}

static void saxpb_exact(void)
{
    const pp_backend_ops *ops = ctx->ops;
    pp_compile_result res;
    CHECK_OK(ctx, ops->compile(ctx, &req, &mod, &res));
    printf("compiled pp_test_saxpb.cu: %s, %.1f ms\n", res.cache_hit ? "cache hit" : "NVRTC", res.compile_ms);
    CHECK_OK(ctx, ops->get_function(ctx, mod, "pp_test_saxpb", 0, &fn));

    x = malloc(cap * sizeof *x), y = malloc(cap * sizeof *y);
    for (int i = 0; i < cap; i++) x[i] = (float)i;
    CHECK_OK(ctx, ops->alloc(ctx, cap * sizeof *x, &dx));
    CHECK_OK(ctx, ops->alloc(ctx, cap * sizeof *y, &dy));
    CHECK_OK(ctx, ops->upload(ctx, dx, x, cap * sizeof *x));
    CHECK_OK(ctx, ops->memset_zero(ctx, dy, cap * sizeof *y));
    CHECK_OK(ctx, ops->launch(ctx, fn, grid, block, args, NULL));
    CHECK_OK(ctx, ops->synchronize(ctx));
    CHECK_OK(ctx, ops->download(ctx, y, dy, cap * sizeof *y));
    int wrong = 0;
    for (int i = 0; i < cap; i++) {
        float want = i < n ? 2.0f * (float)i + 3.0f : 0.0f; /* exact in float */
        if (y[i] != want) {
            if (wrong++ < 5) fprintf(stderr, "y[%d] = %g, expected %g\n", i, y[i], want);
        }
    }
    CHECK(wrong == 0, "%d of %d elements differ", wrong, cap);
    printf("saxpb: y = 2x + 3 for %d elements (grid %u x block %u) exact; the %d elements past n stay 0 "
           "(memset); max error 0\n",
           n, grid[0], block[0], cap - n);
}

static void launch_on_stream(void)
{
    /* A launch goes to the stream the caller names (a framework's current stream), NULL to
     * the default one. Only the mock driver can say which stream a launch used. */
    if (!mock_last_stream) return;
    void *stream = (void *)(uintptr_t)0x5eed0;
    CHECK_OK(ctx, ctx->ops->launch(ctx, fn, grid, block, args, stream));
    CHECK(mock_last_stream() == stream, "the launch went to stream %p, not the caller's %p", mock_last_stream(),
          stream);
    CHECK_OK(ctx, ctx->ops->launch(ctx, fn, grid, block, args, NULL));
    CHECK(mock_last_stream() == NULL, "a launch without a stream went to %p", mock_last_stream());
    /* A stream of the backend's own (the gradient averages'), ordered both ways against the
     * default stream, launched on and released. */
    void *own = NULL;
    CHECK_OK(ctx, ctx->ops->stream_create(ctx, &own));
    CHECK(own != NULL, "stream_create gave no stream");
    CHECK_OK(ctx, ctx->ops->stream_wait(ctx, own, NULL));
    CHECK_OK(ctx, ctx->ops->launch(ctx, fn, grid, block, args, own));
    CHECK(mock_last_stream() == own, "the launch went to %p, not the created stream %p", mock_last_stream(), own);
    CHECK_OK(ctx, ctx->ops->stream_wait(ctx, NULL, own));
    ctx->ops->stream_destroy(ctx, own);
}

static void time_launch(void)
{
    /* The mock's events report 0.25 ms. */
    double ms = -1;
    CHECK_OK(ctx, ctx->ops->time_launch(ctx, fn, grid, block, args, &ms));
    printf("time_launch: %.4f ms by CUDA events%s\n", ms, mock_counts ? " (mock driver: 0.25 expected)" : "");
    CHECK(ms >= 0 && (!mock_counts || ms == 0.25), "event timing");
}

static void compile_cache_hit(void)
{
    pp_module *mod2;
    pp_compile_result res;
    CHECK_OK(ctx, ctx->ops->compile(ctx, &req, &mod2, &res));
    CHECK(res.cache_hit && res.compile_ms == 0, "second compile is a cache hit");
    ctx->ops->module_destroy(ctx, mod2);
    printf("second compile: cache hit\n");
}

static void clear_errors(void)
{
    const pp_backend_ops *ops = ctx->ops;
    pp_module *mod2;
    pp_compile_result res;
    pp_function *missing;
    pp_status st = ops->get_function(ctx, mod, "no_such_kernel", 0, &missing);
    CHECK(st == PP_ERR_DRIVER && strstr(pp_last_error(ctx), "no_such_kernel") &&
              strstr(pp_last_error(ctx), "not found"),
          "missing kernel: %s", pp_last_error(ctx));
    printf("missing kernel: %s\n", pp_last_error(ctx));
    const char *bad_names[] = {"pp_test_saxpb", "not_in_source"};
    pp_compile_request bad_req = {kernel_src, "pp_test_saxpb.cu", bad_names, 2};
    st = ops->compile(ctx, &bad_req, &mod2, &res);
    CHECK(st != PP_OK && mod2 == NULL && strstr(pp_last_error(ctx), "not_in_source"),
          "compile request naming a missing kernel fails: %s", pp_last_error(ctx));

    unsigned big_block[3] = {2048, 1, 1};
    st = ops->launch(ctx, fn, grid, big_block, args, NULL);
    CHECK(st != PP_OK && strstr(pp_last_error(ctx), "pp_test_saxpb") && strstr(pp_last_error(ctx), "2048"),
          "oversized block: %s", pp_last_error(ctx));
    printf("oversized block: %s\n", pp_last_error(ctx));
}

static void dynamic_shared(void)
{
    const pp_backend_ops *ops = ctx->ops;
    pp_function *wide;
    CHECK_OK(ctx, ops->get_function(ctx, mod, "pp_test_saxpb", 64 * 1024, &wide));
    CHECK_OK(ctx, ops->launch(ctx, wide, grid, block, args, NULL));
    CHECK_OK(ctx, ops->synchronize(ctx));
    if (mock_last_shared) CHECK(mock_last_shared() == 64 * 1024, "launch gave %u bytes", mock_last_shared());
    printf("64 KB of dynamic shared memory: limit raised, launch runs\n");
    pp_status st = ops->get_function(ctx, mod, "pp_test_saxpb", 1 << 20, &wide);
    CHECK(st == PP_ERR_DRIVER && strstr(pp_last_error(ctx), "needs 1048576 bytes of shared memory"),
          "1 MiB of shared memory: %s", pp_last_error(ctx));
    printf("1 MiB of shared memory: %s\n", pp_last_error(ctx));
    CHECK_OK(ctx, ops->get_function(ctx, mod, "pp_test_saxpb", 0, &wide));
}

static void huge_allocation(void)
{
    const pp_backend_ops *ops = ctx->ops;
    pp_devptr huge;
    size_t pib = (size_t)1 << 50;
    pp_status st = ops->alloc(ctx, pib, &huge);
    CHECK(st == PP_ERR_OUT_OF_MEMORY, "1 PiB allocation: %s: %s", pp_status_string(st), pp_last_error(ctx));
    CHECK(huge == 0, "no pointer for a failed allocation");
    CHECK(strstr(pp_last_error(ctx), "1125899906842624 bytes") && strstr(pp_last_error(ctx), "free of"),
          "OOM message has the request and free/total: %s", pp_last_error(ctx));
    printf("1 PiB allocation: %s\n", pp_last_error(ctx));
    pp_devptr zero;
    CHECK_OK(ctx, ops->alloc(ctx, 0, &zero));
    ops->free(ctx, zero);
}

/* Mock only: a real fault would need a deliberately bad kernel and poisons the context. */
static void faulting_kernel(void)
{
    if (!mock_counts) return;
    const pp_backend_ops *ops = ctx->ops;
    pp_function *fault;
    CHECK_OK(ctx, ops->get_function(ctx, mod, "pp_test_fault", 0, &fault));
    void *fargs[] = {&dy};
    unsigned one[3] = {1, 1, 1};
    CHECK_OK(ctx, ops->launch(ctx, fault, one, one, fargs, NULL));
    pp_status st = ops->synchronize(ctx);
    CHECK(st == PP_ERR_DRIVER && strstr(pp_last_error(ctx), "CUDA_ERROR_ILLEGAL_ADDRESS") &&
              strstr(pp_last_error(ctx), "pp_test_fault") && strstr(pp_last_error(ctx), "cuCtxSynchronize"),
          "fault: %s", pp_last_error(ctx));
    printf("faulting kernel: %s\n", pp_last_error(ctx));
}

static void release_all(void)
{
    ctx->ops->free(ctx, dx);
    ctx->ops->free(ctx, dy);
    ctx->ops->module_destroy(ctx, mod);
    free(x);
    free(y);
    pp_context_destroy(ctx);
    ctx = NULL;
}

static void balanced_after_destroy(void) { check_balanced("after destroying the context"); }

static void other_major_arch(void)
{
    int other_major = device_cc >= 80 ? (device_cc / 10 - 1) * 10 : device_cc / 10 * 10 + 10;
    expect_create_failure("arch of another major version", 0, other_major, PP_ERR_INVALID_ARGUMENT, "cannot run on",
                          NULL);
}

static void mock_create_failures(void)
{
    if (!mock_counts) return;
    setenv("PP_MOCK_CUDA", "nodevice", 1);
    expect_create_failure("driver without a device", 0, 0, PP_ERR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "host backend");
    setenv("PP_MOCK_CUDA", "stub", 1);
    expect_create_failure("stub driver", 0, 0, PP_ERR_NO_DEVICE, "CUDA_ERROR_STUB_LIBRARY", "cuInit(0)");
    setenv("PP_MOCK_CUDA", "zero", 1);
    expect_create_failure("zero devices", 0, 0, PP_ERR_NO_DEVICE, "found no CUDA device", "driver 13.0");
    setenv("PP_MOCK_CUDA", "gpu", 1);
    check_balanced("after the failed creations");
}

static void mock_load_failure(void)
{
    if (!mock_counts) return;
    /* The driver refuses the image: the message names the arch compiled for and the driver. */
    setenv("PP_MOCK_CUDA_LOAD_ERROR", "222", 1);
    pp_context *ctx;
    CHECK_OK(NULL, create(&ctx, 0, 0));
    const char *names[] = {"pp_test_saxpb"};
    pp_compile_request req = {kernel_src, "pp_test_saxpb.cu", names, 1};
    pp_module *mod;
    pp_status st = ctx->ops->compile(ctx, &req, &mod, NULL);
    char want_arch[32];
    snprintf(want_arch, sizeof want_arch, "sm_%d", device_cc);
    CHECK(st == PP_ERR_DRIVER && strstr(pp_last_error(ctx), "CUDA_ERROR_UNSUPPORTED_PTX_VERSION") &&
              strstr(pp_last_error(ctx), want_arch) && strstr(pp_last_error(ctx), "driver 13.0") &&
              strstr(pp_last_error(ctx), "cuModuleLoadData"),
          "load failure: %s", pp_last_error(ctx));
    printf("module load failure: %s\n", pp_last_error(ctx));
    pp_context_destroy(ctx);
    unsetenv("PP_MOCK_CUDA_LOAD_ERROR");
    check_balanced("after the failed load");
}

static void mock_comm_configuration(void)
{
    if (!mock_counts) return;
    /* Data parallel on a (mock) GPU: a rendezvous that is not file:PATH, and NCCL missing,
     * are errors that say so; nothing is left behind. */
    pp_context *ctx;
    CHECK_OK(NULL, create(&ctx, 0, 0));
    char rendezvous[1100];
    snprintf(rendezvous, sizeof rendezvous, "file:%s/rendezvous", cache_dir);
    pp_comm_options co;
    pp_comm_options_init(&co);
    co.rank = 0, co.world_size = 1, co.rendezvous = "tcp:127.0.0.1:2000";
    pp_comm *comm = NULL;
    CHECK(pp_comm_create(ctx, &co, &comm) == PP_ERR_INVALID_ARGUMENT && strstr(pp_last_error(ctx), "expected file:"),
          "a tcp: rendezvous: %s", pp_last_error(ctx));
    co.rendezvous = rendezvous;
    setenv("POOLPROP_NCCL_LIBRARY", "/nonexistent/libnccl.so.2", 1);
    pp_status st = pp_comm_create(ctx, &co, &comm);
    printf("NCCL missing: %s\n", pp_last_error(ctx));
    CHECK(st == PP_ERR_NO_DEVICE && !comm && strstr(pp_last_error(ctx), "/nonexistent/libnccl.so.2") &&
              strstr(pp_last_error(ctx), "multi-GPU"),
          "a GPU run without NCCL: %s: %s", pp_status_string(st), pp_last_error(ctx));
    unsetenv("POOLPROP_NCCL_LIBRARY");
    co.rank = 2;
    CHECK(pp_comm_create(ctx, &co, &comm) == PP_ERR_INVALID_ARGUMENT && strstr(pp_last_error(ctx), "rank 2 of"),
          "rank 2 of 1: %s", pp_last_error(ctx));
    co.rank = 0, co.world_size = -1;
    CHECK(pp_comm_create(ctx, &co, &comm) == PP_ERR_INVALID_ARGUMENT && strstr(pp_last_error(ctx), "give both"),
          "a rank without a world size: %s", pp_last_error(ctx));
    pp_context_destroy(ctx);
    check_balanced("after the refused communicators");
}

static void mock_model_too_big(void)
{
    if (!mock_counts) return;
    /* A model whose planned peak exceeds the device's free memory (the mock's 1 GiB, from
     * cuMemGetInfo) fails before anything is compiled or allocated, with the plan's figures. */
    pp_context *ctx;
    CHECK_OK(NULL, create(&ctx, 0, 0));
    size_t avail;
    char source[1200];
    CHECK(ctx_memory_available(ctx, &avail, source, sizeof source) && avail == (size_t)1 << 30 &&
              strstr(source, "cuMemGetInfo"),
          "free device memory: %zu bytes (%s)", avail, source);
    pp_model_options mo;
    pp_model_options_init(&mo);
    mo.model = "cifar_resnet8";
    pp_memory_report r;
    for (mo.batch = 256;; mo.batch *= 2) {
        CHECK_OK(ctx, pp_plan_memory(ctx, &mo, &r));
        if (r.peak > (size_t)1 << 30) break;
    }
    pp_model *model = NULL;
    pp_status st = pp_model_create(ctx, &mo, &model);
    const char *msg = pp_last_error(ctx);
    char needs[64];
    snprintf(needs, sizeof needs, "the plan needs %.1f MiB", r.peak / 1048576.0);
    printf("cifar_resnet8 at batch %d on the mock's 1 GiB: %s: %s\n", mo.batch, pp_status_string(st), msg);
    CHECK(st == PP_ERR_OUT_OF_MEMORY && !model && strstr(msg, needs) && strstr(msg, "only 1024.0 MiB") &&
              strstr(msg, "Mock GPU") && strstr(msg, "cuMemGetInfo"),
          "refused with the plan's figures (%s): %s", needs, msg);
    pp_cache_stats cs;
    CHECK_OK(ctx, pp_context_cache_stats(ctx, &cs));
    size_t in_use, held;
    CHECK_OK(ctx, pp_context_memory_stats(ctx, &in_use, &held));
    CHECK(cs.hits == 0 && cs.misses == 0 && held == 0,
          "nothing compiled or allocated first: %d hits, %d misses, %zu bytes", cs.hits, cs.misses, held);
    pp_context_destroy(ctx);
    check_balanced("after the model too big for the device");
}

static void mock_newer_device(void)
{
    if (!mock_counts) return;
    /* A device newer than this NVRTC: compiled for the newest arch it has, with a warning. */
    setenv("PP_MOCK_CUDA_CC", "95", 1);
    pp_context *ctx;
    CHECK_OK(NULL, create(&ctx, 0, 0));
    CHECK(ctx->arch == 90, "sm_95 device: compiles for sm_90, got sm_%d", ctx->arch);
    printf("sm_95 device: %s, compiling for sm_%d\n", pp_context_device_name(ctx), ctx->arch);
    pp_context_destroy(ctx);
    setenv("PP_MOCK_CUDA_CC", "90", 1);
    check_balanced("at the end");
}

static const test_case gpu_tests[] = {
    TEST_CASE(device_name, "the device name gives the arch, the SM count and the driver"),
    TEST_CASE(saxpb_exact, "compile, load, run y = 2x + 3 on 1000 of 1024 elements: exact, the rest stays 0"),
    TEST_CASE_AFTER(launch_on_stream, saxpb_exact, "(mock driver only) a launch runs on the stream it is given"),
    TEST_CASE_AFTER(time_launch, saxpb_exact, "a launch timed with CUDA events (the mock's report 0.25 ms)"),
    TEST_CASE_AFTER(compile_cache_hit, saxpb_exact, "the second compile of the same source is a cache hit"),
    TEST_CASE_AFTER(clear_errors, saxpb_exact,
                    "a missing kernel, a compile request naming one, an oversized block: errors naming them"),
    TEST_CASE_AFTER(dynamic_shared, saxpb_exact, "64 KB of dynamic shared memory raises the limit; 1 MiB is refused"),
    TEST_CASE(huge_allocation,
              "1 PiB is PP_ERR_OUT_OF_MEMORY with the request and free/total, no pointer; 0 bytes works"),
    TEST_CASE_AFTER(faulting_kernel, saxpb_exact,
                    "(mock driver only) a faulting kernel is named by the call reporting it"),
    TEST_CASE_AFTER(release_all, saxpb_exact, "buffers, module and context are released"),
    TEST_CASE(auto_backend, "auto picks cuda where it starts; an explicit backend is 'requested'"),
    TEST_CASE_AFTER(balanced_after_destroy, release_all, "(mock driver) every driver resource is released"),
    TEST_CASE(bad_ordinal, "device ordinal 9999 is out of range"),
    TEST_CASE(other_major_arch, "an arch of another major version cannot run on the device"),
    TEST_CASE_AFTER(mock_create_failures, release_all,
                    "(mock driver only) no device, a stub driver, zero devices: PP_ERR_NO_DEVICE saying so"),
    TEST_CASE_AFTER(mock_load_failure, release_all,
                    "(mock driver only) a refused image names the arch compiled for and the driver"),
    TEST_CASE_AFTER(mock_comm_configuration, release_all,
                    "(mock driver only) a GPU run without NCCL, and bad ranks, are refused by name"),
    TEST_CASE_AFTER(mock_model_too_big, release_all,
                    "(mock driver only) a plan above the free 1 GiB fails first, with the plan's figures"),
    TEST_CASE_AFTER(mock_newer_device, release_all, "(mock driver only) an sm_95 device is compiled for sm_90"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    test_temp_dir(cache_dir, sizeof cache_dir, "test_cuda");
    req.source = kernel_src;
    int result;
    if (argc > 1 && strcmp(argv[1], "--no-fallback") == 0) {
        result = TEST_RUN(no_fallback_tests, only);
    } else {
        /* Against the mock driver (LD_LIBRARY_PATH set by CTest), its counters are visible. */
        void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
        if (lib) *(void **)&mock_counts = dlsym(lib, "pp_mock_cuda_counts");
        if (lib) *(void **)&mock_last_shared = dlsym(lib, "pp_mock_cuda_last_shared_bytes");
        if (lib) *(void **)&mock_last_stream = dlsym(lib, "pp_mock_cuda_last_stream");
        if (mock_counts) printf("running against the mock driver (tests/runtime/mock_libcuda.c)\n");

        create_status = create(&ctx, 0, 0);
        if (create_status != PP_OK) {
            result = TEST_RUN(no_gpu_tests, only);
            if (result == 0) printf("SKIP: the GPU tests need a CUDA device\n"), result = PP_TEST_SKIP;
            pp_context_destroy(ctx);
        } else {
            have_gpu = 1;
            device_cc = ctx->arch;
            result = TEST_RUN(gpu_tests, only);
            if (ctx) pp_context_destroy(ctx); /* release_all did not run (--test) */
            if (result == 0 && !only) printf("test_cuda_backend: all checks passed\n");
        }
        if (lib) dlclose(lib);
    }
    CHECK(test_remove_dir(cache_dir) == 0, "remove %s", cache_dir);
    return result;
}
