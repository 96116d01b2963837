/* backend.h - the interface every backend (cuda, host) implements: compiling kernels into
 * loaded modules, device memory, launches; and the functions that attach each backend to a
 * context. */
#ifndef PP_BACKEND_H
#define PP_BACKEND_H

#include "poolprop.h"

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
    const char *source;      /* the full translation unit, one or more extern "C" kernels */
    const char *source_name; /* for compiler messages, e.g. "conv_fwd_....cu" */
    const char *const *kernel_names;
    int kernel_count;
} pp_compile_request;

typedef struct pp_compile_result {
    double compile_ms; /* 0 when served from the cache */
    int cache_hit;
} pp_compile_result;

typedef struct pp_backend_ops {
    const char *name;
    pp_status (*compile)(pp_context *ctx, const pp_compile_request *req, pp_module **out, pp_compile_result *result);
    /* Compiles req into the on-disk cache without loading it, so that a later compile is
     * a cache hit. Runs concurrently on several threads (compile_prefetch), each with its
     * own copy of the context: it may only read the backend state. */
    pp_status (*prepare)(pp_context *ctx, const pp_compile_request *req);
    /* dynamic_shared: bytes of dynamic shared memory every launch of the function gives it
     * (the generator's gen_kernel.dynamic_shared; 0 for static shared memory only). */
    pp_status (*get_function)(pp_context *ctx, pp_module *mod, const char *name, int dynamic_shared, pp_function **out);
    void (*module_destroy)(pp_context *ctx, pp_module *mod);
    pp_status (*alloc)(pp_context *ctx, size_t bytes, pp_devptr *out);
    void (*free)(pp_context *ctx, pp_devptr ptr);
    pp_status (*upload)(pp_context *ctx, pp_devptr dst, const void *src, size_t bytes);
    pp_status (*download)(pp_context *ctx, void *dst, pp_devptr src, size_t bytes);
    pp_status (*memset_zero)(pp_context *ctx, pp_devptr dst, size_t bytes);
    /* Bytes the device can still give, and where that figure comes from ("MemAvailable in
     * /proc/meminfo", "free device memory by cuMemGetInfo, ..."): 0 where it is unknown
     * (source then says why), 1 where known. */
    int (*memory_available)(pp_context *ctx, size_t *bytes, char *source, size_t source_len);
    /* args[i] points at the i-th kernel parameter (pp_devptr for pointer parameters).
     * stream: a CUstream on cuda (NULL: the default stream), ignored on the host, whose
     * launches run to completion before they return. */
    pp_status (*launch)(pp_context *ctx, pp_function *fn, const unsigned grid[3], const unsigned block[3], void **args,
                        void *stream);
    pp_status (*synchronize)(pp_context *ctx);
    /* A stream of its own, which the default stream does not implicitly wait for (cuda:
     * CU_STREAM_NON_BLOCKING; host: NULL, every launch being complete on return). */
    pp_status (*stream_create)(pp_context *ctx, void **stream);
    void (*stream_destroy)(pp_context *ctx, void *stream);
    /* Work submitted to `waiting` after this call starts after everything submitted to
     * `signalling` before it (an event recorded on one, waited for by the other; NULL: the
     * default stream). Host: nothing to order. */
    pp_status (*stream_wait)(pp_context *ctx, void *waiting, void *signalling);
    /* Launches once and measures the kernel's run time in ms: CUDA events on the device,
     * wall clock around the (synchronous) emulated launch on the host. */
    pp_status (*time_launch)(pp_context *ctx, pp_function *fn, const unsigned grid[3], const unsigned block[3],
                             void **args, double *ms);
    void (*destroy)(pp_context *ctx);
} pp_backend_ops;

/* Attach the backend to ctx (ctx->ops, ctx->backend, the device fields), or fail with
 * ctx's message set and nothing attached. */
pp_status backend_host_init(pp_context *ctx);
pp_status backend_cuda_init(pp_context *ctx);

#endif
