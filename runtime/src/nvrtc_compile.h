/* nvrtc_compile.h - NVRTC compilation to CUBIN for one sm_XY, with the on-disk cache and the
 * ptxas -v report (nvrtc_compile.c; not named nvrtc.h, which is NVRTC's own header). Used
 * by the cuda backend, and by the host backend's and the tests' static checks (every
 * kernel compiles for sm_80 and sm_90 with no spills). */

#ifndef PP_NVRTC_COMPILE_H
#define PP_NVRTC_COMPILE_H

#include "cache.h"
#include "context.h"

typedef struct pp_nvrtc_kernel_report {
    char name[256];
    pp_ptxas_info info;
} pp_nvrtc_kernel_report;

typedef struct pp_nvrtc_output {
    void *cubin; /* malloc'ed */
    size_t cubin_size;
    char *log;                       /* malloc'ed ptxas/NVRTC log; on a cache hit, the log cached with the CUBIN */
    pp_nvrtc_kernel_report *kernels; /* malloc'ed, one per entry function found in the log */
    int kernel_count;
    double compile_ms; /* 0 when served from the cache */
    int cache_hit;
    int arch; /* the arch actually compiled for, after clamping */
} pp_nvrtc_output;

/* Compiles source for sm_<arch> (clamped to what this NVRTC supports, reported in
 * out->arch). The ptxas report is cached with the CUBIN. A compile error returns
 * PP_ERR_COMPILE with the NVRTC log in the context's message. */
pp_status nvrtc_compile(pp_context *ctx, const char *source, const char *source_name, int arch, pp_nvrtc_output *out);
/* The same with extra NVRTC options appended to the standard ones (e.g. "-maxrregcount=64",
 * "-DTILE=32"); they are part of the cache key. */
pp_status nvrtc_compile_opts(pp_context *ctx, const char *source, const char *source_name, int arch,
                             const char *const *extra_options, int extra_count, pp_nvrtc_output *out);
void nvrtc_output_free(pp_nvrtc_output *out);
/* The cache key nvrtc_compile_opts uses: format tag, NVRTC version, every option, the
 * clamped arch, the source name (it is embedded in the CUBIN's line info) and the source. */
pp_status nvrtc_cache_key(pp_context *ctx, const char *source, const char *source_name, int arch,
                          const char *const *extra_options, int extra_count, pp_hash_value *key);
/* The largest architecture this NVRTC supports that is <= requested (PP_ERR_COMPILE if the
 * request is older than all of them). Logs (INFO) when it differs from the request. */
pp_status nvrtc_clamp_arch(pp_context *ctx, int requested, int *out);
/* Parses a ptxas -v log into per-kernel reports; returns the count (malloc'ed array, NULL
 * when 0), or -1 if memory ran out. Device (non-entry) functions produce no entry. */
int nvrtc_parse_ptxas(const char *log, pp_nvrtc_kernel_report **out);
/* "13.0" */
pp_status nvrtc_version_string(pp_context *ctx, char *buf, size_t len);

#endif
