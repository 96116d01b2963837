/* context.h - the context's internals shared by the runtime's C files: error recording,
 * the check macros for foreign APIs, logging, and device memory with its accounting. */
#ifndef PP_CONTEXT_H
#define PP_CONTEXT_H

#include "backend.h"
#include "poolprop.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct pp_context {
    pp_context_options options;
    char cache_dir[4096];
    char tuning_dir[4096]; /* "" when there is none (cache disabled, no directory given) */
    char device_name[256];
    char backend_reason[1024]; /* pp_context_backend_reason */
    int arch;                  /* sm_XY as XY: compile target */
    /* What the tuning database is keyed by: the device's model name ("NVIDIA H200", "host
     * emulation g++ 12.2.0"), compute capability (the compile target on the host) and
     * parallel units (SMs, or the host's emulation threads). */
    char device_model[200];
    int device_cc, device_units;
    const pp_backend_ops *ops;
    void *backend; /* backend state */
    pp_cache_stats cache_stats;
    size_t device_in_use, device_peak; /* bytes through device_alloc/device_free */
    char error[16384];
};

/* Backend allocation with the context's accounting (pp_context_memory_stats); refused
 * with PP_ERR_OUT_OF_MEMORY beyond options.memory_limit. */
pp_status device_alloc(pp_context *ctx, size_t bytes, pp_devptr *out);
void device_free(pp_context *ctx, pp_devptr ptr, size_t bytes);
/* What the context may still allocate: the backend's memory_available, lowered to what
 * options.memory_limit leaves; source says where the figure comes from. 0 where neither
 * is known (source then says why), 1 where *bytes is set. */
int ctx_memory_available(pp_context *ctx, size_t *bytes, char *source, size_t source_len);

/* Records a formatted error in ctx (may be NULL) and returns status. */
pp_status ctx_fail(pp_context *ctx, pp_status status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
pp_status ctx_failv(pp_context *ctx, pp_status status, const char *fmt, va_list ap);
/* Prefixes the current error message with a formatted context line. */
pp_status ctx_wrap(pp_context *ctx, pp_status status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void ctx_log(pp_context *ctx, pp_log_level level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void ctx_clear_error(pp_context *ctx);

/* Evaluates a pp_status expression and returns it from the enclosing function on failure. */
#define PP_TRY(expr)                                        \
    do {                                                    \
        pp_status pp_try_status_ = (expr);                  \
        if (pp_try_status_ != PP_OK) return pp_try_status_; \
    } while (0)

#endif
