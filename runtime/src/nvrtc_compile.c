/* nvrtc_compile.c - NVRTC compilation of one translation unit to a CUBIN for one real sm_XY,
 * cached on disk together with the ptxas -v log, and the parser of that log.
 *
 * Invariant: a cache entry is keyed by everything that can change the CUBIN or the log
 * (see nvrtc_cache_key), and its payload holds both, so a cache hit gives byte-for-byte
 * the CUBIN and the ptxas report that a fresh compile gave. Payload:
 *   "PPNVRTC1" | u64 cubin size | u64 log size | cubin | log (no NUL) */
#include "nvrtc_compile.h"

#include <nvrtc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char payload_magic[8] = {'P', 'P', 'N', 'V', 'R', 'T', 'C', '1'};
static const char key_tag[] = "poolprop nvrtc cubin+ptxas-log v1";
enum {
    max_options = 64
};

/* The standard options, in order; the arch option is added in front. */
static const char *const standard_options[] = {"--ptxas-options=-v", "--std=c++17", "-lineinfo"};
enum {
    standard_count = sizeof standard_options / sizeof standard_options[0]
};

/* The check macro for NVRTC calls (DESIGN 7): records the call text, file and line and
 * NVRTC's error string, sets st and jumps to the function's cleanup label. */
#define NVRTC_CHECK(ctx, call)                                                                                  \
    do {                                                                                                        \
        nvrtcResult nvrtc_r_ = (call);                                                                          \
        if (nvrtc_r_ != NVRTC_SUCCESS) {                                                                        \
            st = ctx_fail((ctx), PP_ERR_COMPILE, "%s failed (%s:%d): %s", #call, base_name(__FILE__), __LINE__, \
                          nvrtcGetErrorString(nvrtc_r_));                                                       \
            goto done;                                                                                          \
        }                                                                                                       \
    } while (0)

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

pp_status nvrtc_version_string(pp_context *ctx, char *buf, size_t len)
{
    int major = 0, minor = 0;
    nvrtcResult r = nvrtcVersion(&major, &minor);
    if (r != NVRTC_SUCCESS)
        return ctx_fail(ctx, PP_ERR_COMPILE, "nvrtcVersion(&major, &minor) failed (%s:%d): %s", base_name(__FILE__),
                        __LINE__, nvrtcGetErrorString(r));
    snprintf(buf, len, "%d.%d", major, minor);
    return PP_OK;
}

pp_status nvrtc_clamp_arch(pp_context *ctx, int requested, int *out)
{
    pp_status st = PP_OK;
    int n = 0, *archs = NULL, best = -1, oldest = -1;
    char version[32] = "?";
    *out = 0;
    if (requested <= 0)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "NVRTC: invalid target architecture sm_%d", requested);
    NVRTC_CHECK(ctx, nvrtcGetNumSupportedArchs(&n));
    archs = malloc((size_t)(n > 0 ? n : 1) * sizeof *archs);
    if (!archs) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "NVRTC: out of memory");
    NVRTC_CHECK(ctx, nvrtcGetSupportedArchs(archs));
    for (int i = 0; i < n; i++) {
        if (archs[i] <= requested && archs[i] > best) best = archs[i];
        if (oldest < 0 || archs[i] < oldest) oldest = archs[i];
    }
    nvrtc_version_string(NULL, version, sizeof version);
    if (best < 0) {
        st = ctx_fail(ctx, PP_ERR_COMPILE,
                      "NVRTC %s cannot compile for sm_%d: the oldest architecture it supports is sm_%d", version,
                      requested, oldest);
        goto done;
    }
    if (best != requested) {
        if (best / 10 != requested / 10)
            ctx_log(ctx, PP_LOG_WARNING,
                    "NVRTC %s does not support sm_%d; compiling for sm_%d, the newest it supports below it "
                    "(a CUBIN for sm_%d does not load on a sm_%d device: use a newer CUDA toolkit)",
                    version, requested, best, best, requested);
        else
            ctx_log(ctx, PP_LOG_INFO,
                    "NVRTC %s does not support sm_%d; compiling for sm_%d, the newest it supports below it", version,
                    requested, best);
    }
    *out = best;
done:
    free(archs);
    return st;
}

/* Fills opts with the full option list for arch; arch_buf holds the arch option's text. */
static pp_status build_options(pp_context *ctx, int arch, const char *const *extra, int extra_count, char arch_buf[64],
                               const char *opts[max_options], int *count)
{
    if (extra_count < 0 || extra_count > max_options - 1 - standard_count || (extra_count && !extra))
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "NVRTC: bad extra option list (%d options)", extra_count);
    snprintf(arch_buf, 64, "--gpu-architecture=sm_%d", arch);
    int n = 0;
    opts[n++] = arch_buf;
    for (int i = 0; i < standard_count; i++) opts[n++] = standard_options[i];
    for (int i = 0; i < extra_count; i++) {
        if (!extra[i]) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "NVRTC: extra option %d is NULL", i);
        opts[n++] = extra[i];
    }
    *count = n;
    return PP_OK;
}

static pp_status key_for(pp_context *ctx, const char *source, const char *source_name, int arch, const char **opts,
                         int count, pp_hash_value *key)
{
    int major = 0, minor = 0;
    nvrtcResult r = nvrtcVersion(&major, &minor);
    if (r != NVRTC_SUCCESS)
        return ctx_fail(ctx, PP_ERR_COMPILE, "nvrtcVersion(&major, &minor) failed (%s:%d): %s", base_name(__FILE__),
                        __LINE__, nvrtcGetErrorString(r));
    pp_hash h;
    hash_init(&h);
    hash_str(&h, key_tag);
    hash_u64(&h, (uint64_t)major);
    hash_u64(&h, (uint64_t)minor);
    hash_u64(&h, (uint64_t)count);
    for (int i = 0; i < count; i++) hash_str(&h, opts[i]);
    hash_u64(&h, (uint64_t)arch);
    hash_str(&h, source_name);
    hash_str(&h, source);
    *key = hash_final(&h);
    return PP_OK;
}

pp_status nvrtc_cache_key(pp_context *ctx, const char *source, const char *source_name, int arch,
                          const char *const *extra_options, int extra_count, pp_hash_value *key)
{
    if (!source || !source_name || !key)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "nvrtc_cache_key: NULL argument");
    int target, count;
    char arch_buf[64];
    const char *opts[max_options];
    PP_TRY(nvrtc_clamp_arch(ctx, arch, &target));
    PP_TRY(build_options(ctx, target, extra_options, extra_count, arch_buf, opts, &count));
    return key_for(ctx, source, source_name, target, opts, count, key);
}

/* Splits a cached payload into out->cubin and out->log; 0 if it does not decode. */
static int decode_payload(const unsigned char *p, size_t len, pp_nvrtc_output *out)
{
    if (len < 24 || memcmp(p, payload_magic, 8) != 0) return 0;
    uint64_t cubin_size = cache_load_u64(p + 8), log_size = cache_load_u64(p + 16);
    if (cubin_size == 0 || cubin_size > len || log_size > len || 24 + cubin_size + log_size != len) return 0;
    out->cubin = malloc(cubin_size);
    out->log = malloc(log_size + 1);
    if (!out->cubin || !out->log) return -1;
    memcpy(out->cubin, p + 24, cubin_size);
    memcpy(out->log, p + 24 + cubin_size, log_size);
    out->log[log_size] = '\0';
    out->cubin_size = cubin_size;
    return 1;
}

static pp_status fill_report(pp_context *ctx, pp_nvrtc_output *out)
{
    out->kernel_count = nvrtc_parse_ptxas(out->log, &out->kernels);
    if (out->kernel_count < 0) {
        out->kernel_count = 0;
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "NVRTC: out of memory parsing the ptxas log");
    }
    return PP_OK;
}

/* Looks the key up; on a usable hit fills out and sets *hit. */
static pp_status try_cache(pp_context *ctx, const pp_hash_value *key, const char *source_name, pp_nvrtc_output *out,
                           int *hit)
{
    *hit = 0;
    if (!ctx || ctx->options.disable_cache || !ctx->cache_dir[0]) return PP_OK;
    void *data = NULL;
    size_t len = 0;
    PP_TRY(cache_get(ctx, key, &data, &len));
    if (!data) return PP_OK;
    int ok = decode_payload(data, len, out);
    free(data);
    if (ok <= 0) {
        free(out->cubin);
        free(out->log);
        out->cubin = NULL;
        out->log = NULL;
        out->cubin_size = 0;
    }
    if (ok < 0) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "NVRTC: out of memory reading a cache entry");
    if (ok == 0) {
        /* The entry checked out at the cache level but is not ours: rebuild and say so. */
        ctx->cache_stats.hits--;
        ctx->cache_stats.misses++;
        ctx->cache_stats.corrupt++;
        ctx_log(ctx, PP_LOG_WARNING, "cache entry for %s does not decode as a CUBIN + ptxas log: ignored and rebuilt",
                source_name);
        return PP_OK;
    }
    *hit = 1;
    return PP_OK;
}

static void store_in_cache(pp_context *ctx, const pp_hash_value *key, const pp_nvrtc_output *out,
                           const char *source_name)
{
    if (!ctx || ctx->options.disable_cache || !ctx->cache_dir[0]) return;
    size_t log_size = strlen(out->log);
    size_t len = 24 + out->cubin_size + log_size;
    unsigned char *p = malloc(len);
    if (!p) return; /* not caching is not an error */
    memcpy(p, payload_magic, 8);
    cache_store_u64(p + 8, out->cubin_size);
    cache_store_u64(p + 16, log_size);
    memcpy(p + 24, out->cubin, out->cubin_size);
    memcpy(p + 24 + out->cubin_size, out->log, log_size);
    char saved[sizeof ctx->error];
    memcpy(saved, ctx->error, sizeof saved);
    if (cache_put(ctx, key, p, len) != PP_OK) {
        /* A cache that cannot be written slows the next run down; it does not fail this one. */
        ctx_log(ctx, PP_LOG_WARNING, "could not cache the CUBIN of %s: %s", source_name, ctx->error);
        memcpy(ctx->error, saved, sizeof saved);
    }
    free(p);
}

pp_status nvrtc_compile_opts(pp_context *ctx, const char *source, const char *source_name, int arch,
                             const char *const *extra_options, int extra_count, pp_nvrtc_output *out)
{
    if (!out) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "nvrtc_compile: NULL output");
    memset(out, 0, sizeof *out);
    if (!source) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "nvrtc_compile: NULL source");
    if (!source_name) source_name = "kernel.cu";

    int target, count;
    char arch_buf[64];
    const char *opts[max_options];
    PP_TRY(nvrtc_clamp_arch(ctx, arch, &target));
    PP_TRY(build_options(ctx, target, extra_options, extra_count, arch_buf, opts, &count));
    out->arch = target;
    pp_hash_value key;
    PP_TRY(key_for(ctx, source, source_name, target, opts, count, &key));

    int hit = 0;
    PP_TRY(try_cache(ctx, &key, source_name, out, &hit));
    if (hit) {
        out->cache_hit = 1;
        pp_status st = fill_report(ctx, out);
        if (st != PP_OK) nvrtc_output_free(out);
        return st;
    }

    pp_status st = PP_OK;
    nvrtcProgram prog = NULL;
    nvrtcResult compiled;
    size_t log_size = 0;
    double start = now_ms();
    NVRTC_CHECK(ctx, nvrtcCreateProgram(&prog, source, source_name, 0, NULL, NULL));
    compiled = nvrtcCompileProgram(prog, count, opts);
    NVRTC_CHECK(ctx, nvrtcGetProgramLogSize(prog, &log_size));
    out->log = malloc(log_size + 1);
    if (!out->log) {
        st = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "NVRTC: out of memory for a %zu-byte log", log_size);
        goto done;
    }
    out->log[0] = '\0';
    if (log_size) NVRTC_CHECK(ctx, nvrtcGetProgramLog(prog, out->log));
    out->log[log_size] = '\0';
    if (compiled != NVRTC_SUCCESS) {
        size_t n = strlen(out->log);
        while (n && (out->log[n - 1] == '\n' || out->log[n - 1] == ' ')) out->log[--n] = '\0';
        if (compiled == NVRTC_ERROR_COMPILATION)
            st = ctx_fail(ctx, PP_ERR_COMPILE, "NVRTC failed to compile %s for sm_%d:\n%s", source_name, target,
                          out->log);
        else
            st = ctx_fail(ctx, PP_ERR_COMPILE, "NVRTC failed to compile %s for sm_%d (%s):\n%s", source_name, target,
                          nvrtcGetErrorString(compiled), out->log);
        goto done;
    }
    NVRTC_CHECK(ctx, nvrtcGetCUBINSize(prog, &out->cubin_size));
    if (out->cubin_size == 0) {
        st = ctx_fail(ctx, PP_ERR_COMPILE, "NVRTC produced no CUBIN for %s (sm_%d)", source_name, target);
        goto done;
    }
    out->cubin = malloc(out->cubin_size);
    if (!out->cubin) {
        st = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "NVRTC: out of memory for a %zu-byte CUBIN", out->cubin_size);
        goto done;
    }
    NVRTC_CHECK(ctx, nvrtcGetCUBIN(prog, out->cubin));
    out->compile_ms = now_ms() - start;
    st = fill_report(ctx, out);
    if (st == PP_OK) store_in_cache(ctx, &key, out, source_name);
done:
    if (prog) nvrtcDestroyProgram(&prog);
    if (st != PP_OK) {
        int arch_done = out->arch;
        nvrtc_output_free(out);
        out->arch = arch_done;
    }
    return st;
}

pp_status nvrtc_compile(pp_context *ctx, const char *source, const char *source_name, int arch, pp_nvrtc_output *out)
{
    return nvrtc_compile_opts(ctx, source, source_name, arch, NULL, 0, out);
}

void nvrtc_output_free(pp_nvrtc_output *out)
{
    if (!out) return;
    free(out->cubin);
    free(out->log);
    free(out->kernels);
    memset(out, 0, sizeof *out);
}

/* ---- ptxas -v log ---- */

/* The integer just before the first occurrence of phrase in line, or -1. */
static int number_before(const char *line, const char *phrase)
{
    const char *p = strstr(line, phrase);
    if (!p) return -1;
    while (p > line && p[-1] == ' ') p--;
    const char *end = p;
    while (p > line && p[-1] >= '0' && p[-1] <= '9') p--;
    if (p == end) return -1;
    return atoi(p);
}

/* Log lines understood (CUDA 13 and older spellings):
 *   ptxas info    : Compiling entry function 'k' for 'sm_90'
 *   ptxas info    : Function properties for k
 *   ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
 *       (older: the same without the "ptxas         ." prefix)
 *   ptxas info    : Used 10 registers, used 1 barriers, 256 bytes cumulative stack size, 512 bytes smem
 *       (older: "Used 10 registers, 512 bytes smem, 360 bytes cmem[0]"; no smem part = 0)
 * "Function properties for" a name other than the current entry function belongs to a
 * device function and is skipped. */
int nvrtc_parse_ptxas(const char *log, pp_nvrtc_kernel_report **out)
{
    *out = NULL;
    if (!log) return 0;
    pp_nvrtc_kernel_report *r = NULL;
    int n = 0, cap = 0, cur = -1, props_cur = 0;
    const char *line = log;
    while (*line) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        char buf[1024];
        size_t copy = len < sizeof buf - 1 ? len : sizeof buf - 1;
        memcpy(buf, line, copy);
        buf[copy] = '\0';
        while (copy && (buf[copy - 1] == '\r' || buf[copy - 1] == ' ')) buf[--copy] = '\0';
        const char *p;
        if ((p = strstr(buf, "Compiling entry function '"))) {
            p += strlen("Compiling entry function '");
            const char *q = strchr(p, '\'');
            size_t nlen = q ? (size_t)(q - p) : strlen(p);
            if (n == cap) {
                cap = cap ? 2 * cap : 8;
                pp_nvrtc_kernel_report *bigger = realloc(r, (size_t)cap * sizeof *r);
                if (!bigger) {
                    free(r);
                    return -1;
                }
                r = bigger;
            }
            memset(&r[n], 0, sizeof r[n]);
            if (nlen >= sizeof r[n].name) nlen = sizeof r[n].name - 1;
            memcpy(r[n].name, p, nlen);
            r[n].name[nlen] = '\0';
            r[n].info.registers = r[n].info.spill_store_bytes = r[n].info.spill_load_bytes = -1;
            r[n].info.shared_bytes = r[n].info.stack_bytes = -1;
            cur = n++;
            props_cur = 1; /* until a properties line names another function */
        } else if ((p = strstr(buf, "Function properties for "))) {
            p += strlen("Function properties for ");
            while (*p == ' ') p++;
            props_cur = cur >= 0 && strcmp(p, r[cur].name) == 0;
        } else if (strstr(buf, "bytes stack frame")) {
            if (cur >= 0 && props_cur) {
                pp_ptxas_info *info = &r[cur].info;
                int frame = number_before(buf, "bytes stack frame");
                if (frame > info->stack_bytes) info->stack_bytes = frame;
                info->spill_store_bytes = number_before(buf, "bytes spill stores");
                info->spill_load_bytes = number_before(buf, "bytes spill loads");
            }
        } else if ((p = strstr(buf, "Used ")) && strstr(p, "registers")) {
            /* A device function's line (separate compilation) must not overwrite the entry's. */
            if (cur >= 0 && (props_cur || r[cur].info.registers < 0)) {
                pp_ptxas_info *info = &r[cur].info;
                info->registers = atoi(p + strlen("Used "));
                int smem = number_before(buf, "bytes smem");
                info->shared_bytes = smem < 0 ? 0 : smem;
                int cumulative = number_before(buf, "bytes cumulative stack size");
                if (cumulative > info->stack_bytes) info->stack_bytes = cumulative;
                if (info->stack_bytes < 0) info->stack_bytes = 0;
            }
        }
        line = eol ? eol + 1 : line + len;
    }
    if (n == 0) {
        free(r);
        r = NULL;
    }
    *out = r;
    return n;
}
