/* nvrtc.h - NVRTC compilation to CUBIN for one sm_XY, with the on-disk cache and the
 * ptxas -v report. Used by the cuda backend, and by the host backend's and the tests'
 * static checks (every kernel compiles for sm_80 and sm_90 with no spills). */
#ifndef PP_NVRTC_H
#define PP_NVRTC_H

#include "context.h"

typedef struct pp_nvrtc_kernel_report {
    char name[256];
    pp_ptxas_info info;
} pp_nvrtc_kernel_report;

typedef struct pp_nvrtc_output {
    void *cubin;               /* malloc'ed */
    size_t cubin_size;
    char *log;                 /* malloc'ed ptxas/NVRTC log, "" when served from the cache */
    pp_nvrtc_kernel_report *kernels; /* malloc'ed, one per entry function found in the log */
    int kernel_count;
    double compile_ms;
    int cache_hit;
    int arch;                  /* the arch actually compiled for, after clamping */
} pp_nvrtc_output;

/* Compiles source for sm_<arch> (clamped to what this NVRTC supports, reported in
 * out->arch). The ptxas report is cached with the CUBIN. A compile error returns
 * PP_ERR_COMPILE with the NVRTC log in the context's message. */
pp_status nvrtc_compile(pp_context *ctx, const char *source, const char *source_name, int arch,
                        pp_nvrtc_output *out);
void nvrtc_output_free(pp_nvrtc_output *out);
/* Parses a ptxas -v log into per-kernel reports; returns the count (malloc'ed array). */
int nvrtc_parse_ptxas(const char *log, pp_nvrtc_kernel_report **out);
/* "13.0" */
pp_status nvrtc_version_string(pp_context *ctx, char *buf, size_t len);

#endif
