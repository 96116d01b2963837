/* context.c - context creation, backend selection, error recording and logging. */
#include "backend.h"
#include "cache.h"
#include "context.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *pp_status_string(pp_status status)
{
    switch (status) {
    case PP_OK: return "ok";
    case PP_ERR_INVALID_ARGUMENT: return "invalid argument";
    case PP_ERR_PARSE: return "parse error";
    case PP_ERR_SHAPE: return "shape error";
    case PP_ERR_IO: return "i/o error";
    case PP_ERR_OUT_OF_MEMORY: return "out of memory";
    case PP_ERR_NO_DEVICE: return "no device";
    case PP_ERR_COMPILE: return "compile error";
    case PP_ERR_DRIVER: return "CUDA driver error";
    case PP_ERR_KERNEL: return "kernel error";
    case PP_ERR_GENERATOR: return "generator error";
    case PP_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

pp_status ctx_failv(pp_context *ctx, pp_status status, const char *fmt, va_list ap)
{
    if (ctx) vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
    return status;
}

pp_status ctx_fail(pp_context *ctx, pp_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ctx_failv(ctx, status, fmt, ap);
    va_end(ap);
    return status;
}

pp_status ctx_wrap(pp_context *ctx, pp_status status, const char *fmt, ...)
{
    if (!ctx) return status;
    char prefix[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[sizeof ctx->error];
    memcpy(old, ctx->error, sizeof old);
    snprintf(ctx->error, sizeof ctx->error, "%.1000s: %.15000s", prefix, old);
    return status;
}

void ctx_clear_error(pp_context *ctx)
{
    if (ctx) ctx->error[0] = '\0';
}

void ctx_log(pp_context *ctx, pp_log_level level, const char *fmt, ...)
{
    if (!ctx || !ctx->options.log) return;
    char message[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    ctx->options.log(ctx->options.log_user, level, message);
}

void pp_context_options_init(pp_context_options *options)
{
    if (!options) return;
    memset(options, 0, sizeof *options);
    options->backend = PP_BACKEND_AUTO;
    options->host_schedule = PP_SCHEDULE_FORWARD;
    options->host_seed = 1;
}

/* PP_BACKEND_AUTO: cuda if it starts, else host; ctx->backend_reason says which and why. */
static pp_status backend_auto_init(pp_context *ctx)
{
    if (backend_cuda_init(ctx) == PP_OK) {
        ctx->options.backend = PP_BACKEND_CUDA;
        snprintf(ctx->backend_reason, sizeof ctx->backend_reason, "a usable GPU");
        return PP_OK;
    }
    snprintf(ctx->backend_reason, sizeof ctx->backend_reason, "no usable GPU: %.900s", ctx->error);
    ctx_clear_error(ctx);
    ctx->options.backend = PP_BACKEND_HOST;
    return backend_host_init(ctx);
}

pp_status pp_context_create(const pp_context_options *options, pp_context **out)
{
    if (!out) return PP_ERR_INVALID_ARGUMENT;
    *out = NULL;
    pp_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return PP_ERR_OUT_OF_MEMORY;
    if (options)
        ctx->options = *options;
    else
        pp_context_options_init(&ctx->options);
    /* The caller's strings may not outlive this call; the resolved copy lives in ctx. */
    ctx->options.cache_dir = NULL;

    pp_status st = PP_OK;
    if (ctx->options.host_schedule < PP_SCHEDULE_FORWARD || ctx->options.host_schedule > PP_SCHEDULE_SHUFFLED)
        st = ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "unknown host schedule %d", (int)ctx->options.host_schedule);
    else if (ctx->options.host_threads < 0)
        st = ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "host_threads must be >= 0, got %d", ctx->options.host_threads);
    else if (ctx->options.arch != 0 && (ctx->options.arch < 50 || ctx->options.arch > 200))
        st = ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "arch sm_%d is not a CUDA architecture", ctx->options.arch);
    if (st == PP_OK && !ctx->options.disable_cache) {
        if (options && options->cache_dir) {
            if (strlen(options->cache_dir) >= sizeof ctx->cache_dir)
                st = ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "cache_dir is too long");
            else
                strcpy(ctx->cache_dir, options->cache_dir);
        }
        /* A cache that cannot be used is not fatal: the context compiles without it and the
         * log says so, naming the directory and why. */
        if (st == PP_OK && cache_open(ctx) != PP_OK) {
            ctx_log(ctx, PP_LOG_WARNING,
                    "the kernel cache directory %s cannot be used (%s): compiling without the on-disk cache; set "
                    "POOLPROP_CACHE_DIR (or pp_context_options.cache_dir) to a writable directory",
                    ctx->cache_dir, ctx->error);
            ctx_clear_error(ctx);
            ctx->options.disable_cache = 1;
            ctx->cache_dir[0] = '\0';
        }
    }
    if (st == PP_OK) {
        const char *tuning = options && options->tuning_dir ? options->tuning_dir : getenv("POOLPROP_TUNING_DIR");
        int n = 0;
        if (tuning && tuning[0])
            n = snprintf(ctx->tuning_dir, sizeof ctx->tuning_dir, "%s", tuning);
        else if (ctx->cache_dir[0])
            n = snprintf(ctx->tuning_dir, sizeof ctx->tuning_dir, "%s/tuning", ctx->cache_dir);
        if (n < 0 || (size_t)n >= sizeof ctx->tuning_dir)
            st = ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "the tuning directory's path is too long");
        ctx->options.tuning_dir = NULL; /* the caller's string need not outlive the call */
    }
    if (st == PP_OK) {
        snprintf(ctx->backend_reason, sizeof ctx->backend_reason, "requested");
        switch (ctx->options.backend) {
        case PP_BACKEND_NONE: snprintf(ctx->device_name, sizeof ctx->device_name, "none (generation only)"); break;
        case PP_BACKEND_HOST: st = backend_host_init(ctx); break;
        case PP_BACKEND_CUDA: st = backend_cuda_init(ctx); break;
        case PP_BACKEND_AUTO: st = backend_auto_init(ctx); break;
        default: st = ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "unknown backend %d", (int)ctx->options.backend);
        }
    }
    if (st != PP_OK) {
        /* Handed back without a backend, only so the caller can read the message. */
        if (ctx->ops && ctx->ops->destroy) ctx->ops->destroy(ctx);
        ctx->ops = NULL;
        *out = ctx;
        return st;
    }
    *out = ctx;
    return PP_OK;
}

void pp_context_destroy(pp_context *ctx)
{
    if (!ctx) return;
    if (ctx->ops && ctx->ops->destroy) ctx->ops->destroy(ctx);
    free(ctx);
}

const char *pp_last_error(const pp_context *ctx) { return ctx ? ctx->error : "no context"; }

pp_backend pp_context_backend(const pp_context *ctx) { return ctx ? ctx->options.backend : PP_BACKEND_HOST; }

const char *pp_context_backend_reason(const pp_context *ctx) { return ctx ? ctx->backend_reason : ""; }

const char *pp_context_device_name(const pp_context *ctx) { return ctx ? ctx->device_name : ""; }

pp_status pp_context_cache_stats(const pp_context *ctx, pp_cache_stats *out)
{
    if (!ctx || !out) return PP_ERR_INVALID_ARGUMENT;
    *out = ctx->cache_stats;
    return PP_OK;
}

pp_status device_alloc(pp_context *ctx, size_t bytes, pp_devptr *out)
{
    size_t limit = ctx->options.memory_limit;
    if (limit && (bytes > limit || ctx->device_in_use > limit - bytes)) {
        *out = 0;
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY,
                        "allocating %zu bytes would exceed the context's memory_limit of %zu bytes (%zu in use)", bytes,
                        limit, ctx->device_in_use);
    }
    PP_TRY(ctx->ops->alloc(ctx, bytes, out));
    ctx->device_in_use += bytes;
    if (ctx->device_in_use > ctx->device_peak) ctx->device_peak = ctx->device_in_use;
    return PP_OK;
}

int ctx_memory_available(pp_context *ctx, size_t *bytes, char *source, size_t source_len)
{
    int known = ctx->ops && ctx->ops->memory_available && ctx->ops->memory_available(ctx, bytes, source, source_len);
    if (!known && !(ctx->ops && ctx->ops->memory_available))
        snprintf(source, source_len, "the %s backend cannot tell", ctx->ops ? ctx->ops->name : "none");
    size_t limit = ctx->options.memory_limit;
    if (limit) {
        size_t left = ctx->device_in_use < limit ? limit - ctx->device_in_use : 0;
        if (!known || left < *bytes) {
            *bytes = left;
            snprintf(source, source_len, "the context's memory_limit of %zu bytes, %zu of them in use", limit,
                     ctx->device_in_use);
        }
        known = 1;
    }
    return known;
}

void device_free(pp_context *ctx, pp_devptr ptr, size_t bytes)
{
    if (!ptr) return;
    ctx->ops->free(ctx, ptr);
    ctx->device_in_use -= bytes;
}

pp_status pp_context_memory_stats(const pp_context *ctx, size_t *in_use, size_t *peak)
{
    if (!ctx || !in_use || !peak) return PP_ERR_INVALID_ARGUMENT;
    *in_use = ctx->device_in_use;
    *peak = ctx->device_peak;
    return PP_OK;
}
