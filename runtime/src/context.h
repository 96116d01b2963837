/* context.h - the context's internals shared by the runtime's C files: error recording,
 * the check macros for foreign APIs, logging, and the backend interface every backend
 * (cuda, host) implements. */
#ifndef PP_CONTEXT_H
#define PP_CONTEXT_H

#include "poolprop.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* A device address: CUdeviceptr on cuda, a host pointer on the host backend. */
typedef uint64_t pp_devptr;

typedef struct pp_module pp_module;     /* backend-specific loaded code */
typedef struct pp_function pp_function; /* backend-specific kernel handle */

/* Per-kernel facts read from ptxas -v. -1 where unknown. */
typedef struct pp_ptxas_info {
    int registers, spill_store_bytes, spill_load_bytes, shared_bytes, stack_bytes;
} pp_ptxas_info;

typedef struct pp_compile_request {
    const char *source;        /* the full translation unit, one or more extern "C" kernels */
    const char *source_name;   /* for compiler messages, e.g. "conv_fwd_....cu" */
    const char *const *kernel_names;
    int kernel_count;
} pp_compile_request;

typedef struct pp_compile_result {
    double compile_ms;          /* 0 when served from the cache */
    int cache_hit;
} pp_compile_result;

typedef struct pp_backend_ops {
    const char *name;
    pp_status (*compile)(pp_context *ctx, const pp_compile_request *req, pp_module **out,
                         pp_compile_result *result);
    /* Compiles req into the on-disk cache without loading it, so that a later compile is
     * a cache hit. Runs concurrently on several threads (compile_prefetch), each with its
     * own copy of the context: it may only read the backend state. */
    pp_status (*prepare)(pp_context *ctx, const pp_compile_request *req);
    /* dynamic_shared: bytes of dynamic shared memory every launch of the function gives it
     * (the generator's gen_kernel.dynamic_shared; 0 for static shared memory only). */
    pp_status (*get_function)(pp_context *ctx, pp_module *mod, const char *name, int dynamic_shared,
                              pp_function **out);
    void (*module_destroy)(pp_context *ctx, pp_module *mod);
    pp_status (*alloc)(pp_context *ctx, size_t bytes, pp_devptr *out);
    void (*free)(pp_context *ctx, pp_devptr ptr);
    pp_status (*upload)(pp_context *ctx, pp_devptr dst, const void *src, size_t bytes);
    pp_status (*download)(pp_context *ctx, void *dst, pp_devptr src, size_t bytes);
    pp_status (*memset_zero)(pp_context *ctx, pp_devptr dst, size_t bytes);
    /* args[i] points at the i-th kernel parameter (pp_devptr for pointer parameters). */
    pp_status (*launch)(pp_context *ctx, pp_function *fn, const unsigned grid[3],
                        const unsigned block[3], void **args);
    pp_status (*synchronize)(pp_context *ctx);
    /* Launches once and measures the kernel's run time in ms: CUDA events on the device,
     * wall clock around the (synchronous) emulated launch on the host. */
    pp_status (*time_launch)(pp_context *ctx, pp_function *fn, const unsigned grid[3], const unsigned block[3],
                             void **args, double *ms);
    void (*destroy)(pp_context *ctx);
} pp_backend_ops;

struct pp_context {
    pp_context_options options;
    char cache_dir[4096];
    char tuning_dir[4096];        /* "" when there is none (cache disabled, no directory given) */
    char device_name[256];
    char backend_reason[1024];    /* pp_context_backend_reason */
    int arch;                     /* sm_XY as XY: compile target */
    /* What the tuning database is keyed by: the device's model name ("NVIDIA H200", "host
     * emulation g++ 12.2.0"), compute capability (the compile target on the host) and
     * parallel units (SMs, or the host's emulation threads). */
    char device_model[200];
    int device_cc, device_units;
    const pp_backend_ops *ops;
    void *backend;                /* backend state */
    pp_cache_stats cache_stats;
    size_t device_in_use, device_peak; /* bytes through device_alloc/device_free */
    char error[16384];
};

/* Backend allocation with the context's accounting (pp_context_memory_stats). */
pp_status device_alloc(pp_context *ctx, size_t bytes, pp_devptr *out);
void device_free(pp_context *ctx, pp_devptr ptr, size_t bytes);

/* Records a formatted error in ctx (may be NULL) and returns status. */
pp_status ctx_fail(pp_context *ctx, pp_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
pp_status ctx_failv(pp_context *ctx, pp_status status, const char *fmt, va_list ap);
/* Prefixes the current error message with a formatted context line. */
pp_status ctx_wrap(pp_context *ctx, pp_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void ctx_log(pp_context *ctx, pp_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void ctx_clear_error(pp_context *ctx);

/* Evaluates a pp_status expression and returns it from the enclosing function on failure. */
#define PP_TRY(expr)                                                                           \
    do {                                                                                       \
        pp_status pp_try_status_ = (expr);                                                     \
        if (pp_try_status_ != PP_OK) return pp_try_status_;                                    \
    } while (0)

/* Fills the on-disk cache with the compiled form of n requests on several threads (at most
 * one per CPU), so that the compiles that follow load from the cache: DESIGN.md section
 * 8, compile independent kernels in parallel. static_check_arch > 0 also runs the NVRTC
 * static check for that arch (what pp_layer_create does). Failures are not
 * reported here: the sequential compile that follows meets them again and reports them.
 * Nothing happens without a cache. */
void compile_prefetch(pp_context *ctx, const pp_compile_request *reqs, int n, int static_check_arch);

pp_status backend_host_init(pp_context *ctx);
pp_status backend_cuda_init(pp_context *ctx);

#endif
