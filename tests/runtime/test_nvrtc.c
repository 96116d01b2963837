/* test_nvrtc.c - NVRTC compilation to CUBIN (no GPU needed): the ptxas report of a small
 * kernel for sm_80 and sm_90, compile errors with the line number, the cache (hit with an
 * identical report, keys that change with options and arch, a damaged entry rebuilt and
 * reported), architecture clamping, a kernel that spills, and the ptxas log parser on
 * literal logs of the CUDA 13 and the older format. */
#include "nvrtc_compile.h"
#include "test_util.h"

#include <nvrtc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pp_context ctx_storage;
static pp_context *ctx = &ctx_storage;
static char last_log[4096];
static int log_infos, log_warnings;

static void capture_log(void *user, pp_log_level level, const char *message)
{
    (void)user;
    if (level == PP_LOG_WARNING)
        log_warnings++;
    else
        log_infos++;
    snprintf(last_log, sizeof last_log, "%s", message);
}

/* tile: 128 floats + flags: 4 ints = 528 bytes of static shared memory. */
static const char *reduce_src = "extern \"C\" __global__ void reduce128(const float *x, float *y)\n"
                                "{\n"
                                "    __shared__ float tile[128];\n"
                                "    __shared__ int flags[4];\n"
                                "    int t = threadIdx.x;\n"
                                "    tile[t] = x[blockIdx.x * 128 + t];\n"
                                "    if (t < 4) flags[t] = t;\n"
                                "    __syncthreads();\n"
                                "    for (int s = 64; s > 0; s >>= 1) {\n"
                                "        if (t < s) tile[t] += tile[t + s];\n"
                                "        __syncthreads();\n"
                                "    }\n"
                                "    if (t == 0) y[blockIdx.x] = tile[0] + (float)flags[3];\n"
                                "}\n";
enum {
    reduce_shared_bytes = 128 * 4 + 4 * 4
};

static const char *bad_src = "extern \"C\" __global__ void broken(float *y)\n"
                             "{\n"
                             "    y[threadIdx.x] = 1.0f +;\n"
                             "}\n";

/* Two entries and a non-inlined device function with its own stack frame. */
static const char *multi_src =
    "__device__ __noinline__ float helper(const float *p, int i)\n"
    "{\n"
    "    float a[64];\n"
    "    for (int j = 0; j < 64; j++) a[j] = p[j] * (float)j;\n"
    "    return a[i & 63];\n"
    "}\n"
    "extern \"C\" __global__ void first(float *x) { x[threadIdx.x] = helper(x, threadIdx.x); }\n"
    "extern \"C\" __global__ void second(float *x) { x[0] = 1.0f; }\n";

/* 48 loop-carried accumulators cannot live in the 32 registers that
 * __launch_bounds__(1024, 2) allows: ptxas must spill. */
static const char *spill_src =
    "extern \"C\" __global__ void __launch_bounds__(1024, 2) spill(const float *x, float *y, int n)\n"
    "{\n"
    "    float acc[48];\n"
    "#pragma unroll\n"
    "    for (int j = 0; j < 48; j++) acc[j] = x[j * n + threadIdx.x];\n"
    "    for (int it = 0; it < n; it++) {\n"
    "#pragma unroll\n"
    "        for (int j = 0; j < 48; j++) acc[j] = acc[j] * acc[(j + 1) % 48] + x[it * 48 + j];\n"
    "    }\n"
    "    float s = 0;\n"
    "#pragma unroll\n"
    "    for (int j = 0; j < 48; j++) s += acc[j] * (float)(j + 1);\n"
    "    y[threadIdx.x] = s;\n"
    "}\n";

static void print_report(const char *what, const pp_nvrtc_output *o)
{
    for (int i = 0; i < o->kernel_count; i++) {
        const pp_ptxas_info *k = &o->kernels[i].info;
        printf("%s sm_%d %s: %d registers, %d B smem, %d B stack, spill %d/%d B, %s, %.1f ms\n", what, o->arch,
               o->kernels[i].name, k->registers, k->shared_bytes, k->stack_bytes, k->spill_store_bytes,
               k->spill_load_bytes, o->cache_hit ? "cache hit" : "compiled", o->compile_ms);
    }
}

/* Same CUBIN and report; with same_log also the same log text (two fresh compiles differ
 * in the "Compile time = ... ms" lines of their logs). */
static int same_result(const pp_nvrtc_output *a, const pp_nvrtc_output *b, int same_log)
{
    return a->kernel_count == b->kernel_count && a->arch == b->arch && a->cubin_size == b->cubin_size &&
           memcmp(a->cubin, b->cubin, a->cubin_size) == 0 && (!same_log || strcmp(a->log, b->log) == 0) &&
           memcmp(a->kernels, b->kernels, (size_t)a->kernel_count * sizeof *a->kernels) == 0;
}

static void check_reduce(const pp_nvrtc_output *o, int arch)
{
    CHECK(o->arch == arch, "compiled for sm_%d, expected sm_%d", o->arch, arch);
    CHECK(o->cubin_size > 4 && memcmp(o->cubin,
                                      "\x7f"
                                      "ELF",
                                      4) == 0,
          "the CUBIN is an ELF file");
    CHECK(o->kernel_count == 1, "one kernel reported, got %d\n%s", o->kernel_count, o->log);
    const pp_ptxas_info *k = &o->kernels[0].info;
    CHECK(strcmp(o->kernels[0].name, "reduce128") == 0, "kernel name %s", o->kernels[0].name);
    CHECK(k->registers > 0, "registers %d", k->registers);
    CHECK(k->spill_store_bytes == 0 && k->spill_load_bytes == 0, "no spills: %d/%d", k->spill_store_bytes,
          k->spill_load_bytes);
    CHECK(k->shared_bytes == reduce_shared_bytes, "shared bytes %d, declared %d", k->shared_bytes, reduce_shared_bytes);
    CHECK(k->stack_bytes == 0, "stack bytes %d", k->stack_bytes);
}

static void entry_path(const pp_hash_value *key, char *out, size_t len)
{
    char hex[33];
    hash_hex(key, hex);
    snprintf(out, len, "%.4095s/%s.bin", ctx->cache_dir, hex); /* the precision: cache_dir[4096] */
}

static void ptxas_log_parser(void)
{
    /* CUDA 13 (this machine's NVRTC): stack line prefixed with "ptxas .", barriers and
     * cumulative stack size in the Used line, no cmem for sm_90, a device function's
     * properties after the entries. */
    const char *log13 =
        "ptxas info    : 0 bytes gmem\n"
        "ptxas info    : Compiling entry function 'spill' for 'sm_90'\n"
        "ptxas info    : Function properties for spill\n"
        "ptxas         .     192 bytes stack frame, 348 bytes spill stores, 352 bytes spill loads\n"
        "ptxas info    : Used 32 registers, used 0 barriers, 192 bytes cumulative stack size\n"
        "ptxas info    : Compile time = 18.614 ms\n"
        "ptxas info    : Compiling entry function 'k' for 'sm_90'\n"
        "ptxas info    : Function properties for k\n"
        "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
        "ptxas info    : Used 10 registers, used 1 barriers, 512 bytes smem\n"
        "ptxas info    : Compile time = 8.759 ms\n"
        "ptxas info    : Compiling entry function 'calls' for 'sm_90'\n"
        "ptxas info    : Function properties for calls\n"
        "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
        "ptxas info    : Used 40 registers, used 1 barriers, 256 bytes cumulative stack size, 4096 bytes smem\n"
        "ptxas info    : Compile time = 6.834 ms\n"
        "ptxas info    : Function properties for _Z6helperPfi\n"
        "ptxas         .     256 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads\n";
    pp_nvrtc_kernel_report *r;
    int n = nvrtc_parse_ptxas(log13, &r);
    CHECK(n == 3, "CUDA 13 log: 3 kernels, got %d", n);
    CHECK(strcmp(r[0].name, "spill") == 0 && r[0].info.registers == 32 && r[0].info.spill_store_bytes == 348 &&
              r[0].info.spill_load_bytes == 352 && r[0].info.stack_bytes == 192 && r[0].info.shared_bytes == 0,
          "CUDA 13 log: spill kernel");
    CHECK(strcmp(r[1].name, "k") == 0 && r[1].info.registers == 10 && r[1].info.spill_store_bytes == 0 &&
              r[1].info.spill_load_bytes == 0 && r[1].info.stack_bytes == 0 && r[1].info.shared_bytes == 512,
          "CUDA 13 log: k");
    CHECK(strcmp(r[2].name, "calls") == 0 && r[2].info.registers == 40 && r[2].info.stack_bytes == 256 &&
              r[2].info.shared_bytes == 4096 && r[2].info.spill_store_bytes == 0,
          "CUDA 13 log: the device function's spills are not the entry's (%d)", r[2].info.spill_store_bytes);
    free(r);
    printf("parse CUDA 13 log: 3 entries (spill 32 regs 348/352 B spills 192 B stack; k 10 regs 512 B smem; "
           "calls 40 regs 4096 B smem 256 B stack), device function skipped\n");

    /* Older toolkits: the properties line has no "ptxas ." prefix, cmem in the Used line,
     * no barriers; a device function's properties inside an entry's block. */
    const char *log_old = "ptxas info    : 0 bytes gmem\n"
                          "ptxas info    : Compiling entry function 'conv' for 'sm_80'\n"
                          "ptxas info    : Function properties for _Z4tapsPKf\n"
                          "    24 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n"
                          "ptxas info    : Function properties for conv\n"
                          "    16 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads\n"
                          "ptxas info    : Used 255 registers, 49152 bytes smem, 360 bytes cmem[0]\n"
                          "ptxas info    : Compiling entry function 'k2' for 'sm_80'\n"
                          "ptxas info    : Function properties for k2\n"
                          "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
                          "ptxas info    : Used 10 registers, 360 bytes cmem[0]\r\n";
    n = nvrtc_parse_ptxas(log_old, &r);
    CHECK(n == 2, "old log: 2 kernels, got %d", n);
    CHECK(strcmp(r[0].name, "conv") == 0 && r[0].info.registers == 255 && r[0].info.spill_store_bytes == 8 &&
              r[0].info.spill_load_bytes == 12 && r[0].info.stack_bytes == 16 && r[0].info.shared_bytes == 49152,
          "old log: conv %d %d %d %d %d", r[0].info.registers, r[0].info.spill_store_bytes, r[0].info.spill_load_bytes,
          r[0].info.stack_bytes, r[0].info.shared_bytes);
    CHECK(strcmp(r[1].name, "k2") == 0 && r[1].info.registers == 10 && r[1].info.shared_bytes == 0 &&
              r[1].info.stack_bytes == 0 && r[1].info.spill_store_bytes == 0,
          "old log: k2 (no smem part means 0)");
    free(r);
    printf("parse old-format log: 2 entries (conv 255 regs 49152 B smem 8/12 B spills; k2 10 regs 0 B smem), "
           "device function skipped\n");

    CHECK(nvrtc_parse_ptxas("", &r) == 0 && r == NULL, "empty log");
    CHECK(nvrtc_parse_ptxas("t.cu(3): error: expected an expression\n", &r) == 0 && r == NULL, "error log");
}

static pp_nvrtc_output o80, o90; /* reduce128.cu's first compiles for sm_80 and sm_90 */
static pp_hash_value k_base;     /* the cache key of reduce128.cu for sm_90 */

/* The report for sm_80 and sm_90, then cache hits. */
static void report_and_cache_hit(void)
{
    pp_nvrtc_output again;
    CHECK_OK(ctx, nvrtc_compile(ctx, reduce_src, "reduce128.cu", 80, &o80));
    print_report("compile", &o80);
    check_reduce(&o80, 80);
    CHECK(!o80.cache_hit && o80.compile_ms > 0, "first compile is a miss and timed");
    CHECK_OK(ctx, nvrtc_compile(ctx, reduce_src, "reduce128.cu", 90, &o90));
    print_report("compile", &o90);
    check_reduce(&o90, 90);
    CHECK(!o90.cache_hit, "sm_90 is a different entry than sm_80");
    CHECK(ctx->cache_stats.writes == 2 && ctx->cache_stats.misses == 2, "2 misses, 2 writes");

    CHECK_OK(ctx, nvrtc_compile(ctx, reduce_src, "reduce128.cu", 90, &again));
    print_report("again  ", &again);
    CHECK(again.cache_hit && again.compile_ms == 0, "second compile is a cache hit");
    CHECK(same_result(&again, &o90, 1), "cache hit: identical CUBIN, log and report");
    CHECK(ctx->cache_stats.hits == 1, "hits counted");
    printf("cache hit: CUBIN (%zu B), log and report identical to the fresh compile\n", again.cubin_size);
    nvrtc_output_free(&again);
}

/* Keys: options, arch, source and name all count. */
static void cache_keys(void)
{
    pp_nvrtc_output again;
    pp_hash_value k_opt, k_arch, k_src, k_name, k_base2;
    const char *maxreg[] = {"-maxrregcount=32"};
    CHECK_OK(ctx, nvrtc_cache_key(ctx, reduce_src, "reduce128.cu", 90, NULL, 0, &k_base));
    CHECK_OK(ctx, nvrtc_cache_key(ctx, reduce_src, "reduce128.cu", 90, NULL, 0, &k_base2));
    CHECK_OK(ctx, nvrtc_cache_key(ctx, reduce_src, "reduce128.cu", 90, maxreg, 1, &k_opt));
    CHECK_OK(ctx, nvrtc_cache_key(ctx, reduce_src, "reduce128.cu", 80, NULL, 0, &k_arch));
    CHECK_OK(ctx, nvrtc_cache_key(ctx, multi_src, "reduce128.cu", 90, NULL, 0, &k_src));
    CHECK_OK(ctx, nvrtc_cache_key(ctx, reduce_src, "other.cu", 90, NULL, 0, &k_name));
    CHECK(memcmp(&k_base, &k_base2, sizeof k_base) == 0, "key is deterministic");
    CHECK(memcmp(&k_base, &k_opt, sizeof k_base) != 0, "an extra option changes the key");
    CHECK(memcmp(&k_base, &k_arch, sizeof k_base) != 0, "the arch changes the key");
    CHECK(memcmp(&k_base, &k_src, sizeof k_base) != 0, "the source changes the key");
    CHECK(memcmp(&k_base, &k_name, sizeof k_base) != 0, "the source name changes the key");
    int hits_before = ctx->cache_stats.hits;
    CHECK_OK(ctx, nvrtc_compile_opts(ctx, reduce_src, "reduce128.cu", 90, maxreg, 1, &again));
    CHECK(!again.cache_hit, "a different option set is compiled, not served from the sm_90 entry");
    CHECK(ctx->cache_stats.hits == hits_before, "no hit for a new option set");
    CHECK(again.kernels[0].info.registers <= 32, "-maxrregcount=32 took effect (%d)", again.kernels[0].info.registers);
    nvrtc_output_free(&again);
    printf("cache keys: differ by option set, arch, source and source name; same inputs, same key\n");
    fflush(stdout);
}

/* A damaged entry is reported, rebuilt, and gives the same report. */
static void damaged_entry(void)
{
    pp_nvrtc_output again;
    char path[4200];
    entry_path(&k_base, path, sizeof path);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL, "cache entry %s exists", path);
    fseek(f, -10, SEEK_END);
    int c = fgetc(f);
    fseek(f, -10, SEEK_END);
    fputc(c ^ 0x01, f);
    fclose(f);
    int corrupt_before = ctx->cache_stats.corrupt, warnings_before = log_warnings;
    CHECK_OK(ctx, nvrtc_compile(ctx, reduce_src, "reduce128.cu", 90, &again));
    CHECK(!again.cache_hit && again.compile_ms > 0, "damaged entry: a miss, recompiled");
    CHECK(ctx->cache_stats.corrupt == corrupt_before + 1, "damaged entry counted");
    CHECK(log_warnings == warnings_before + 1 && strstr(last_log, "corrupt"), "damaged entry reported: %s", last_log);
    CHECK(same_result(&again, &o90, 0), "rebuilt entry: same CUBIN and report");
    nvrtc_output_free(&again);
    printf("flipped byte in %s: reported (\"%.60s...\"), rebuilt, same report\n", strrchr(path, '/') + 1, last_log);
    CHECK_OK(ctx, nvrtc_compile(ctx, reduce_src, "reduce128.cu", 90, &again));
    CHECK(again.cache_hit && same_result(&again, &o90, 0), "the rebuilt entry is served next time");
    nvrtc_output_free(&again);
}

/* With the cache disabled: always compiled, nothing written. */
static void cache_disabled(void)
{
    pp_nvrtc_output again;
    int writes_before = ctx->cache_stats.writes;
    ctx->options.disable_cache = 1;
    CHECK_OK(ctx, nvrtc_compile(ctx, reduce_src, "reduce128.cu", 90, &again));
    CHECK(!again.cache_hit && ctx->cache_stats.writes == writes_before, "disabled cache: compiled, not written");
    CHECK(same_result(&again, &o90, 0), "disabled cache: same report");
    nvrtc_output_free(&again);
    ctx->options.disable_cache = 0;
    printf("cache disabled: compiled, not written, same report\n");
}

static void compile_errors(void)
{
    pp_nvrtc_output again;
    pp_status st = nvrtc_compile(ctx, bad_src, "broken.cu", 90, &again);
    const char *msg = pp_last_error(ctx);
    CHECK(st == PP_ERR_COMPILE, "syntax error: %s", pp_status_string(st));
    CHECK(strstr(msg, "NVRTC failed to compile broken.cu for sm_90") != NULL, "message names file and arch: %s", msg);
    CHECK(strstr(msg, "broken.cu(3)") != NULL, "message has the line number: %s", msg);
    CHECK(again.cubin == NULL && again.log == NULL && again.kernels == NULL, "nothing left allocated");
    printf("syntax error: %s\n", msg);
    CHECK(ctx->cache_stats.writes == 4, "failed compiles are not cached (%d writes)", ctx->cache_stats.writes);
    const char *bad_opt[] = {"--no-such-option"};
    st = nvrtc_compile_opts(ctx, reduce_src, "reduce128.cu", 90, bad_opt, 1, &again);
    CHECK(st == PP_ERR_COMPILE, "bad option: %s", pp_status_string(st));
    printf("bad option: %s\n", pp_last_error(ctx));
}

/* Clamping to the supported architectures. */
static void arch_clamping(void)
{
    pp_nvrtc_output again;
    int n = 0;
    CHECK(nvrtcGetNumSupportedArchs(&n) == NVRTC_SUCCESS && n > 0, "supported archs");
    int *archs = malloc((size_t)n * sizeof *archs);
    CHECK(nvrtcGetSupportedArchs(archs) == NVRTC_SUCCESS, "supported archs");
    printf("supported:");
    for (int i = 0; i < n; i++) printf(" %d", archs[i]);
    printf("\n");
    int infos_before = log_infos;
    CHECK_OK(ctx, nvrtc_compile(ctx, reduce_src, "reduce128.cu", 95, &again));
    CHECK(again.arch == 90, "sm_95 clamped to sm_90, got %d", again.arch);
    CHECK(log_infos == infos_before + 1 && strstr(last_log, "sm_95") && strstr(last_log, "sm_90"),
          "clamping logged: %s", last_log);
    CHECK(again.cache_hit && same_result(&again, &o90, 0), "clamped request shares the sm_90 entry");
    nvrtc_output_free(&again);
    printf("arch 95 -> sm_90 (served from the sm_90 entry), logged: %s\n", last_log);
    int out = 0;
    CHECK_OK(ctx, nvrtc_clamp_arch(ctx, archs[n - 1] + 9, &out));
    CHECK(out == archs[n - 1], "above all: clamped to the newest %d, got %d", archs[n - 1], out);
    CHECK(strstr(last_log, "does not load"), "a major-version change is a warning: %s", last_log);
    printf("arch %d -> sm_%d, warned: %s\n", archs[n - 1] + 9, out, last_log);
    pp_status st = nvrtc_clamp_arch(ctx, archs[0] - 1, &out);
    CHECK(st == PP_ERR_COMPILE && strstr(pp_last_error(ctx), "oldest"), "below all: %s", pp_last_error(ctx));
    printf("arch %d: %s\n", archs[0] - 1, pp_last_error(ctx));
    for (int i = 0; i < n; i++) {
        CHECK_OK(ctx, nvrtc_clamp_arch(ctx, archs[i], &out));
        CHECK(out == archs[i], "a supported arch is kept: %d -> %d", archs[i], out);
    }
    free(archs);
}

/* Several kernels and a device function; a kernel that spills. */
static void several_kernels_and_spills(void)
{
    pp_nvrtc_output again;
    CHECK_OK(ctx, nvrtc_compile(ctx, multi_src, "multi.cu", 90, &again));
    print_report("multi  ", &again);
    CHECK(again.kernel_count == 2, "two entries, no entry for the device function (%d)", again.kernel_count);
    int first = strcmp(again.kernels[0].name, "first") == 0 ? 0 : 1;
    CHECK(strcmp(again.kernels[first].name, "first") == 0 && strcmp(again.kernels[1 - first].name, "second") == 0,
          "names");
    CHECK(again.kernels[first].info.stack_bytes > 0, "the call's stack is counted for 'first'");
    CHECK(again.kernels[1 - first].info.stack_bytes == 0, "'second' has no stack");
    nvrtc_output_free(&again);

    CHECK_OK(ctx, nvrtc_compile(ctx, spill_src, "spill.cu", 80, &again));
    print_report("spill  ", &again);
    CHECK(again.kernel_count == 1, "one kernel");
    const pp_ptxas_info *k = &again.kernels[0].info;
    CHECK(k->registers <= 32, "launch bounds limit registers to 32: %d", k->registers);
    CHECK(k->spill_store_bytes > 0 && k->spill_load_bytes > 0 && k->stack_bytes > 0,
          "the spilling kernel reports spills and stack: %d/%d/%d", k->spill_store_bytes, k->spill_load_bytes,
          k->stack_bytes);
    nvrtc_output_free(&again);
}

static const test_case tests[] = {
    TEST_CASE(ptxas_log_parser, "the ptxas log parser on literal logs of CUDA 13 and the older format"),
    TEST_CASE(report_and_cache_hit,
              "reduce128 for sm_80 and sm_90: the ptxas report; a cache hit gives identical bytes"),
    TEST_CASE_AFTER(cache_keys, report_and_cache_hit, "the cache key changes with options, arch, source and its name"),
    TEST_CASE_AFTER(damaged_entry, cache_keys, "a damaged cache entry is counted, logged, rebuilt, then served"),
    TEST_CASE_AFTER(cache_disabled, damaged_entry, "with the cache disabled: compiled, nothing written, same report"),
    TEST_CASE_AFTER(compile_errors, cache_disabled,
                    "a syntax error names file, arch and line; failed compiles are not cached; a bad option fails"),
    TEST_CASE_AFTER(arch_clamping, report_and_cache_hit,
                    "requested arches clamp to NVRTC's supported ones, logged; below the oldest is an error"),
    TEST_CASE(several_kernels_and_spills, "two kernels and a device function: two entries, stack; a spilling kernel"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    char dir[64];
    test_temp_dir(dir, sizeof dir, "test_nvrtc");
    pp_context_options_init(&ctx->options);
    ctx->options.log = capture_log;
    strcpy(ctx->cache_dir, dir);
    CHECK_OK(ctx, cache_open(ctx));
    char version[32];
    CHECK_OK(ctx, nvrtc_version_string(ctx, version, sizeof version));
    printf("NVRTC %s, cache %s\n", version, dir);

    int status = TEST_RUN(tests, only);
    nvrtc_output_free(&o80);
    nvrtc_output_free(&o90);
    CHECK(test_remove_dir(dir) == 0, "remove %s", dir);
    if (!only) printf("test_nvrtc: all checks passed\n");
    return status;
}
