/* backend_cuda.c - the cuda backend: NVRTC-compiled CUBINs loaded and launched through
 * the CUDA driver API on one GPU.
 *
 * Invariant: libcuda.so.1 is opened with dlopen and never linked, so the library builds
 * and its host backend runs where the toolkit exists but no driver does; <cuda.h> is used
 * for types and constants only. Every driver call goes through CU(), which records the
 * call text, file, line and the driver's error name and string in the context's error.
 * ctx->ops is set only when the whole initialisation succeeded. */
#include "backend.h"
#include "context.h"
#include "nvrtc_compile.h"

#include <cuda.h>
#include <dlfcn.h>

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Entry points, named after the driver's API names (the exported symbol may be a
 * versioned one, see the table in load_driver). */
typedef struct driver {
    void *lib;
    CUresult (*fn_cuInit)(unsigned int flags);
    CUresult (*fn_cuDriverGetVersion)(int *version);
    CUresult (*fn_cuDeviceGetCount)(int *count);
    CUresult (*fn_cuDeviceGet)(CUdevice *device, int ordinal);
    CUresult (*fn_cuDeviceGetName)(char *name, int len, CUdevice dev);
    CUresult (*fn_cuDeviceGetAttribute)(int *value, CUdevice_attribute attrib, CUdevice dev);
    CUresult (*fn_cuDevicePrimaryCtxRetain)(CUcontext *pctx, CUdevice dev);
    CUresult (*fn_cuDevicePrimaryCtxRelease)(CUdevice dev);
    CUresult (*fn_cuCtxSetCurrent)(CUcontext ctx);
    CUresult (*fn_cuCtxSynchronize)(void);
    CUresult (*fn_cuModuleLoadData)(CUmodule *module, const void *image);
    CUresult (*fn_cuModuleUnload)(CUmodule module);
    CUresult (*fn_cuModuleGetFunction)(CUfunction *fn, CUmodule module, const char *name);
    CUresult (*fn_cuFuncGetAttribute)(int *value, CUfunction_attribute attrib, CUfunction fn);
    CUresult (*fn_cuFuncSetAttribute)(CUfunction f, CUfunction_attribute a, int value);
    CUresult (*fn_cuMemAlloc)(CUdeviceptr *ptr, size_t bytes);
    CUresult (*fn_cuMemFree)(CUdeviceptr ptr);
    CUresult (*fn_cuMemcpyHtoD)(CUdeviceptr dst, const void *src, size_t bytes);
    CUresult (*fn_cuMemcpyDtoH)(void *dst, CUdeviceptr src, size_t bytes);
    CUresult (*fn_cuMemsetD8)(CUdeviceptr dst, unsigned char value, size_t count);
    CUresult (*fn_cuMemGetInfo)(size_t *free_bytes, size_t *total_bytes);
    CUresult (*fn_cuLaunchKernel)(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                                  unsigned bz, unsigned shared_bytes, CUstream stream, void **params, void **extra);
    CUresult (*fn_cuEventCreate)(CUevent *event, unsigned int flags);
    CUresult (*fn_cuEventRecord)(CUevent event, CUstream stream);
    CUresult (*fn_cuEventSynchronize)(CUevent event);
    CUresult (*fn_cuEventElapsedTime)(float *ms, CUevent start, CUevent end);
    CUresult (*fn_cuEventDestroy)(CUevent event);
    CUresult (*fn_cuStreamCreate)(CUstream *stream, unsigned int flags);
    CUresult (*fn_cuStreamDestroy)(CUstream stream);
    CUresult (*fn_cuStreamWaitEvent)(CUstream stream, CUevent event, unsigned int flags);
    CUresult (*fn_cuGetErrorName)(CUresult error, const char **name);
    CUresult (*fn_cuGetErrorString)(CUresult error, const char **text);
} driver;

typedef struct cuda_state {
    driver drv;
    CUdevice device;
    CUcontext context;
    int context_retained;
    int cc; /* compute capability as XY */
    int sm_count;
    int driver_version; /* e.g. 13000 */
    char name[200];
    char last_kernel[256]; /* the last kernel launched, named when a later call reports its fault */
} cuda_state;

struct pp_function {
    CUfunction fn;
    char name[256];
    int max_threads; /* per block, for this kernel's register use */
    int registers;
    int dynamic_shared; /* bytes of dynamic shared memory each launch gives it */
};

struct pp_module {
    CUmodule module;
    char source_name[256];
    int arch;
    pp_function **functions;
    int function_count, function_cap;
};

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static pp_status status_of(CUresult r)
{
    switch (r) {
    case CUDA_ERROR_OUT_OF_MEMORY: return PP_ERR_OUT_OF_MEMORY;
    case CUDA_ERROR_NO_DEVICE:
    case CUDA_ERROR_INVALID_DEVICE:
    case CUDA_ERROR_STUB_LIBRARY:
    case CUDA_ERROR_SYSTEM_DRIVER_MISMATCH:
    case CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE:
    case CUDA_ERROR_DEVICE_UNAVAILABLE:
    case CUDA_ERROR_DEVICE_NOT_LICENSED:
    case CUDA_ERROR_SYSTEM_NOT_READY: return PP_ERR_NO_DEVICE;
    default: return PP_ERR_DRIVER;
    }
}

/* Errors a faulting kernel leaves behind; they surface in whatever call comes next. */
static int is_kernel_fault(CUresult r)
{
    switch (r) {
    case CUDA_ERROR_ILLEGAL_ADDRESS:
    case CUDA_ERROR_LAUNCH_FAILED:
    case CUDA_ERROR_MISALIGNED_ADDRESS:
    case CUDA_ERROR_ILLEGAL_INSTRUCTION:
    case CUDA_ERROR_INVALID_ADDRESS_SPACE:
    case CUDA_ERROR_INVALID_PC:
    case CUDA_ERROR_HARDWARE_STACK_ERROR:
    case CUDA_ERROR_ASSERT:
    case CUDA_ERROR_LAUNCH_TIMEOUT: return 1;
    default: return 0;
    }
}

/* The one check for driver calls (DESIGN 7). */
static pp_status check(pp_context *ctx, cuda_state *s, CUresult r, const char *call, const char *file, int line)
{
    if (r == CUDA_SUCCESS) return PP_OK;
    const char *name = NULL, *text = NULL;
    if (s->drv.fn_cuGetErrorName && s->drv.fn_cuGetErrorName(r, &name) != CUDA_SUCCESS) name = NULL;
    if (s->drv.fn_cuGetErrorString && s->drv.fn_cuGetErrorString(r, &text) != CUDA_SUCCESS) text = NULL;
    char code[32];
    snprintf(code, sizeof code, "CUDA error %d", (int)r);
    char fault[sizeof s->last_kernel + 64] = "";
    if (is_kernel_fault(r) && s->last_kernel[0])
        snprintf(fault, sizeof fault, " (a kernel faulted; the last one launched was %s)", s->last_kernel);
    return ctx_fail(ctx, status_of(r), "%s failed (%s:%d): %s (%s)%s", call, base_name(file), line, name ? name : code,
                    text ? text : "no description", fault);
}

#define CU(ctx, s, name, args) check((ctx), (s), (s)->drv.fn_##name args, #name #args, __FILE__, __LINE__)

/* "1125899906842624 bytes (1024.0 TiB)" */
static void format_bytes(size_t bytes, char *buf, size_t len)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    int u = -1;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u < 0)
        snprintf(buf, len, "%zu bytes", bytes);
    else
        snprintf(buf, len, "%zu bytes (%.1f %s)", bytes, v, units[u]);
}

static const char no_gpu_hint[] = "use the host backend (--backend host) on machines without a GPU";

static pp_status load_driver(pp_context *ctx, cuda_state *s)
{
    /* fallback: the older name of an entry point, for drivers that predate the newer. */
    static const struct {
        const char *symbol;
        size_t offset;
        const char *fallback;
    } table[] = {
#define ENTRY(field, symbol) {symbol, offsetof(driver, fn_##field), NULL}
        ENTRY(cuInit, "cuInit"),
        ENTRY(cuDriverGetVersion, "cuDriverGetVersion"),
        ENTRY(cuDeviceGetCount, "cuDeviceGetCount"),
        ENTRY(cuDeviceGet, "cuDeviceGet"),
        ENTRY(cuDeviceGetName, "cuDeviceGetName"),
        ENTRY(cuDeviceGetAttribute, "cuDeviceGetAttribute"),
        ENTRY(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"),
        ENTRY(cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2"),
        ENTRY(cuCtxSetCurrent, "cuCtxSetCurrent"),
        ENTRY(cuCtxSynchronize, "cuCtxSynchronize"),
        ENTRY(cuModuleLoadData, "cuModuleLoadData"),
        ENTRY(cuModuleUnload, "cuModuleUnload"),
        ENTRY(cuModuleGetFunction, "cuModuleGetFunction"),
        ENTRY(cuFuncGetAttribute, "cuFuncGetAttribute"),
        ENTRY(cuFuncSetAttribute, "cuFuncSetAttribute"),
        ENTRY(cuMemAlloc, "cuMemAlloc_v2"),
        ENTRY(cuMemFree, "cuMemFree_v2"),
        ENTRY(cuMemcpyHtoD, "cuMemcpyHtoD_v2"),
        ENTRY(cuMemcpyDtoH, "cuMemcpyDtoH_v2"),
        ENTRY(cuMemsetD8, "cuMemsetD8_v2"),
        ENTRY(cuMemGetInfo, "cuMemGetInfo_v2"),
        ENTRY(cuLaunchKernel, "cuLaunchKernel"),
        ENTRY(cuEventCreate, "cuEventCreate"),
        ENTRY(cuEventRecord, "cuEventRecord"),
        ENTRY(cuEventSynchronize, "cuEventSynchronize"),
        {"cuEventElapsedTime_v2", offsetof(driver, fn_cuEventElapsedTime), "cuEventElapsedTime"},
        ENTRY(cuEventDestroy, "cuEventDestroy_v2"),
        ENTRY(cuStreamCreate, "cuStreamCreate"),
        ENTRY(cuStreamDestroy, "cuStreamDestroy_v2"),
        ENTRY(cuStreamWaitEvent, "cuStreamWaitEvent"),
        ENTRY(cuGetErrorName, "cuGetErrorName"),
        ENTRY(cuGetErrorString, "cuGetErrorString"),
#undef ENTRY
    };
    dlerror();
    s->drv.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!s->drv.lib) {
        const char *why = dlerror();
        return ctx_fail(ctx, PP_ERR_NO_DEVICE,
                        "cuda backend: the CUDA driver (libcuda.so.1) could not be loaded: %s; %s",
                        why ? why : "unknown reason", no_gpu_hint);
    }
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        dlerror();
        void *sym = dlsym(s->drv.lib, table[i].symbol);
        if (!sym && table[i].fallback) sym = dlsym(s->drv.lib, table[i].fallback);
        if (!sym)
            return ctx_fail(ctx, PP_ERR_NO_DEVICE,
                            "cuda backend: the CUDA driver libcuda.so.1 has no entry point %s (dlsym: %s); the driver "
                            "is too old or not a CUDA driver",
                            table[i].symbol, dlerror());
        /* POSIX: a data pointer from dlsym may be stored into a function pointer. */
        memcpy((char *)&s->drv + table[i].offset, &sym, sizeof sym);
    }
    return PP_OK;
}

static pp_status bind(pp_context *ctx, cuda_state *s)
{
    pp_status st = CU(ctx, s, cuCtxSetCurrent, (s->context));
    return st == PP_OK ? PP_OK : ctx_wrap(ctx, st, "cuda backend: making the device's context current");
}

static pp_status attribute(pp_context *ctx, cuda_state *s, CUdevice_attribute a, int *out)
{
    return CU(ctx, s, cuDeviceGetAttribute, (out, a, s->device));
}

/* ---- operations ---- */

/* Gives every later launch of f `bytes` of dynamic shared memory; above the default 48 KB
 * the function's limit is raised first (the driver refuses the launch otherwise). */
static pp_status set_dynamic_shared(pp_context *ctx, cuda_state *s, pp_function *f, int bytes)
{
    if (bytes < 0)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "cuda backend: %s: negative dynamic shared memory", f->name);
    if (bytes > 48 * 1024 && bytes != f->dynamic_shared) {
        pp_status st = CU(ctx, s, cuFuncSetAttribute, (f->fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes));
        if (st != PP_OK)
            return ctx_wrap(ctx, st, "cuda backend: %s needs %d bytes of shared memory, more than %s allows", f->name,
                            bytes, s->name);
    }
    f->dynamic_shared = bytes;
    return PP_OK;
}

static pp_status get_function(pp_context *ctx, pp_module *m, const char *name, int dynamic_shared, pp_function **out)
{
    cuda_state *s = ctx->backend;
    *out = NULL;
    if (!m || !name) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "cuda backend: get_function: NULL argument");
    for (int i = 0; i < m->function_count; i++) {
        if (strcmp(m->functions[i]->name, name) == 0) {
            PP_TRY(bind(ctx, s));
            PP_TRY(set_dynamic_shared(ctx, s, m->functions[i], dynamic_shared));
            *out = m->functions[i];
            return PP_OK;
        }
    }
    if (strlen(name) >= sizeof m->functions[0]->name)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "cuda backend: kernel name too long: %.60s...", name);
    PP_TRY(bind(ctx, s));
    CUfunction fn;
    pp_status st = CU(ctx, s, cuModuleGetFunction, (&fn, m->module, name));
    if (st != PP_OK)
        return ctx_wrap(ctx, st, "cuda backend: kernel '%s' not found in %s (is it declared extern \"C\" __global__?)",
                        name, m->source_name);
    pp_function *f = calloc(1, sizeof *f);
    if (!f) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "cuda backend: out of memory");
    f->fn = fn;
    strcpy(f->name, name);
    st = CU(ctx, s, cuFuncGetAttribute, (&f->max_threads, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, fn));
    if (st == PP_OK) st = CU(ctx, s, cuFuncGetAttribute, (&f->registers, CU_FUNC_ATTRIBUTE_NUM_REGS, fn));
    if (st == PP_OK) st = set_dynamic_shared(ctx, s, f, dynamic_shared);
    if (st == PP_OK && m->function_count == m->function_cap) {
        int cap = m->function_cap ? 2 * m->function_cap : 8;
        pp_function **bigger = realloc(m->functions, (size_t)cap * sizeof *bigger);
        if (!bigger)
            st = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "cuda backend: out of memory");
        else {
            m->functions = bigger;
            m->function_cap = cap;
        }
    }
    if (st != PP_OK) {
        free(f);
        return st;
    }
    m->functions[m->function_count++] = f;
    *out = f;
    return PP_OK;
}

static void module_destroy(pp_context *ctx, pp_module *m)
{
    if (!m) return;
    cuda_state *s = ctx->backend;
    if (m->module && s && bind(ctx, s) == PP_OK) s->drv.fn_cuModuleUnload(m->module);
    for (int i = 0; i < m->function_count; i++) free(m->functions[i]);
    free(m->functions);
    free(m);
}

static pp_status compile(pp_context *ctx, const pp_compile_request *req, pp_module **out, pp_compile_result *result)
{
    cuda_state *s = ctx->backend;
    *out = NULL;
    if (result) memset(result, 0, sizeof *result);
    if (!req || !req->source) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "cuda backend: compile: no source");
    const char *source_name = req->source_name ? req->source_name : "kernel.cu";
    pp_nvrtc_output o;
    PP_TRY(nvrtc_compile(ctx, req->source, source_name, ctx->arch, &o));
    pp_module *m = calloc(1, sizeof *m);
    if (!m) {
        nvrtc_output_free(&o);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "cuda backend: out of memory");
    }
    snprintf(m->source_name, sizeof m->source_name, "%s", source_name);
    m->arch = o.arch;
    pp_status st = bind(ctx, s);
    if (st == PP_OK) {
        st = CU(ctx, s, cuModuleLoadData, (&m->module, o.cubin));
        if (st != PP_OK) {
            m->module = NULL;
            ctx_wrap(ctx, st,
                     "cuda backend: loading the CUBIN of %s (compiled for sm_%d by NVRTC) on %s (sm_%d, driver %d.%d)",
                     source_name, o.arch, s->name, s->cc, s->driver_version / 1000, s->driver_version % 1000 / 10);
        }
    }
    if (result) {
        result->compile_ms = o.compile_ms;
        result->cache_hit = o.cache_hit;
    }
    nvrtc_output_free(&o);
    for (int i = 0; st == PP_OK && i < req->kernel_count; i++) {
        pp_function *f;
        st = get_function(ctx, m, req->kernel_names[i], 0, &f);
    }
    if (st != PP_OK) {
        module_destroy(ctx, m);
        return st;
    }
    *out = m;
    return PP_OK;
}

static pp_status prepare(pp_context *ctx, const pp_compile_request *req)
{
    pp_nvrtc_output o;
    PP_TRY(nvrtc_compile(ctx, req->source, req->source_name ? req->source_name : "kernel.cu", ctx->arch, &o));
    nvrtc_output_free(&o);
    return PP_OK;
}

static pp_status alloc(pp_context *ctx, size_t bytes, pp_devptr *out)
{
    cuda_state *s = ctx->backend;
    *out = 0;
    if (bytes == 0) return PP_OK;
    PP_TRY(bind(ctx, s));
    CUdeviceptr p = 0;
    pp_status st = CU(ctx, s, cuMemAlloc, (&p, bytes));
    if (st == PP_ERR_OUT_OF_MEMORY) {
        size_t free_bytes = 0, total_bytes = 0;
        char saved[sizeof ctx->error];
        memcpy(saved, ctx->error, sizeof saved);
        int have_info = CU(ctx, s, cuMemGetInfo, (&free_bytes, &total_bytes)) == PP_OK;
        memcpy(ctx->error, saved, sizeof saved);
        char want[64], have[64], total[64];
        format_bytes(bytes, want, sizeof want);
        format_bytes(free_bytes, have, sizeof have);
        format_bytes(total_bytes, total, sizeof total);
        if (have_info)
            return ctx_wrap(ctx, st, "cuda backend: out of device memory on %s: %s requested, %s free of %s", s->name,
                            want, have, total);
        return ctx_wrap(ctx, st, "cuda backend: out of device memory on %s: %s requested", s->name, want);
    }
    if (st != PP_OK) return ctx_wrap(ctx, st, "cuda backend: allocating %zu bytes", bytes);
    *out = (pp_devptr)p;
    return PP_OK;
}

static int memory_available(pp_context *ctx, size_t *bytes, char *source, size_t source_len)
{
    cuda_state *s = ctx->backend;
    size_t free_bytes = 0, total_bytes = 0;
    char saved[sizeof ctx->error];
    memcpy(saved, ctx->error, sizeof saved);
    int known = bind(ctx, s) == PP_OK && CU(ctx, s, cuMemGetInfo, (&free_bytes, &total_bytes)) == PP_OK;
    if (known)
        snprintf(source, source_len, "free device memory by cuMemGetInfo, of %zu bytes in all", total_bytes);
    else
        snprintf(source, source_len, "%s", ctx->error);
    memcpy(ctx->error, saved, sizeof saved);
    *bytes = free_bytes;
    return known;
}

static void release(pp_context *ctx, pp_devptr ptr)
{
    cuda_state *s = ctx->backend;
    if (!ptr || !s || bind(ctx, s) != PP_OK) return;
    s->drv.fn_cuMemFree((CUdeviceptr)ptr);
}

static pp_status upload(pp_context *ctx, pp_devptr dst, const void *src, size_t bytes)
{
    cuda_state *s = ctx->backend;
    if (bytes == 0) return PP_OK;
    PP_TRY(bind(ctx, s));
    pp_status st = CU(ctx, s, cuMemcpyHtoD, ((CUdeviceptr)dst, src, bytes));
    return st == PP_OK ? PP_OK : ctx_wrap(ctx, st, "cuda backend: copying %zu bytes to the device", bytes);
}

static pp_status download(pp_context *ctx, void *dst, pp_devptr src, size_t bytes)
{
    cuda_state *s = ctx->backend;
    if (bytes == 0) return PP_OK;
    PP_TRY(bind(ctx, s));
    pp_status st = CU(ctx, s, cuMemcpyDtoH, (dst, (CUdeviceptr)src, bytes));
    return st == PP_OK ? PP_OK : ctx_wrap(ctx, st, "cuda backend: copying %zu bytes from the device", bytes);
}

static pp_status memset_zero(pp_context *ctx, pp_devptr dst, size_t bytes)
{
    cuda_state *s = ctx->backend;
    if (bytes == 0) return PP_OK;
    PP_TRY(bind(ctx, s));
    pp_status st = CU(ctx, s, cuMemsetD8, ((CUdeviceptr)dst, 0, bytes));
    return st == PP_OK ? PP_OK : ctx_wrap(ctx, st, "cuda backend: zeroing %zu bytes of device memory", bytes);
}

/* Asynchronous on stream (NULL: the default stream); faults surface in the next
 * synchronising call (synchronize, download), whose message names the last kernel launched. */
static pp_status launch(pp_context *ctx, pp_function *fn, const unsigned grid[3], const unsigned block[3], void **args,
                        void *stream)
{
    cuda_state *s = ctx->backend;
    if (!fn || !grid || !block) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "cuda backend: launch: NULL argument");
    unsigned long long threads = (unsigned long long)block[0] * block[1] * block[2];
    if (threads == 0 || (unsigned long long)grid[0] * grid[1] * grid[2] == 0)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                        "cuda backend: launching %s with an empty grid (%u,%u,%u) or block (%u,%u,%u)", fn->name,
                        grid[0], grid[1], grid[2], block[0], block[1], block[2]);
    if (fn->max_threads > 0 && threads > (unsigned long long)fn->max_threads)
        return ctx_fail(ctx, PP_ERR_DRIVER,
                        "cuda backend: launching %s with %llu threads per block (%u,%u,%u), but with its %d registers "
                        "it can run at most %d per block on %s",
                        fn->name, threads, block[0], block[1], block[2], fn->registers, fn->max_threads, s->name);
    PP_TRY(bind(ctx, s));
    pp_status st = CU(ctx, s, cuLaunchKernel,
                      (fn->fn, grid[0], grid[1], grid[2], block[0], block[1], block[2], (unsigned)fn->dynamic_shared,
                       (CUstream)stream, args, NULL));
    if (st != PP_OK)
        return ctx_wrap(ctx, st, "cuda backend: launching %s with grid (%u,%u,%u) block (%u,%u,%u)", fn->name, grid[0],
                        grid[1], grid[2], block[0], block[1], block[2]);
    snprintf(s->last_kernel, sizeof s->last_kernel, "%s", fn->name);
    return PP_OK;
}

static pp_status synchronize(pp_context *ctx)
{
    cuda_state *s = ctx->backend;
    PP_TRY(bind(ctx, s));
    pp_status st = CU(ctx, s, cuCtxSynchronize, ());
    return st == PP_OK ? PP_OK : ctx_wrap(ctx, st, "cuda backend: waiting for the device");
}

static pp_status stream_create(pp_context *ctx, void **stream)
{
    cuda_state *s = ctx->backend;
    PP_TRY(bind(ctx, s));
    CUstream created = NULL;
    pp_status st = CU(ctx, s, cuStreamCreate, (&created, CU_STREAM_NON_BLOCKING));
    if (st != PP_OK) return ctx_wrap(ctx, st, "cuda backend: creating a stream");
    *stream = created;
    return PP_OK;
}

static void stream_destroy(pp_context *ctx, void *stream)
{
    cuda_state *s = ctx->backend;
    if (stream && bind(ctx, s) == PP_OK) s->drv.fn_cuStreamDestroy((CUstream)stream);
}

/* An event recorded on signalling, waited for by waiting; the event is released at once
 * (the wait holds what it needs). */
static pp_status stream_wait(pp_context *ctx, void *waiting, void *signalling)
{
    cuda_state *s = ctx->backend;
    PP_TRY(bind(ctx, s));
    CUevent event = NULL;
    pp_status st = CU(ctx, s, cuEventCreate, (&event, CU_EVENT_DISABLE_TIMING));
    if (st == PP_OK) st = CU(ctx, s, cuEventRecord, (event, (CUstream)signalling));
    if (st == PP_OK) st = CU(ctx, s, cuStreamWaitEvent, ((CUstream)waiting, event, 0));
    if (event) s->drv.fn_cuEventDestroy(event);
    return st == PP_OK ? PP_OK : ctx_wrap(ctx, st, "cuda backend: ordering two streams");
}

/* One launch timed with CUDA events around it on the default stream: the device's time
 * for the kernel, without the host's launch overhead. */
static pp_status time_launch(pp_context *ctx, pp_function *fn, const unsigned grid[3], const unsigned block[3],
                             void **args, double *ms)
{
    cuda_state *s = ctx->backend;
    PP_TRY(bind(ctx, s));
    CUevent start = NULL, end = NULL;
    pp_status st = CU(ctx, s, cuEventCreate, (&start, 0));
    if (st == PP_OK) st = CU(ctx, s, cuEventCreate, (&end, 0));
    if (st == PP_OK) st = CU(ctx, s, cuEventRecord, (start, NULL));
    if (st == PP_OK) st = launch(ctx, fn, grid, block, args, NULL);
    if (st == PP_OK) st = CU(ctx, s, cuEventRecord, (end, NULL));
    if (st == PP_OK) st = CU(ctx, s, cuEventSynchronize, (end));
    float elapsed = 0;
    if (st == PP_OK) st = CU(ctx, s, cuEventElapsedTime, (&elapsed, start, end));
    if (start) s->drv.fn_cuEventDestroy(start);
    if (end) s->drv.fn_cuEventDestroy(end);
    if (st != PP_OK) return ctx_wrap(ctx, st, "cuda backend: timing %s", fn->name);
    *ms = elapsed;
    return PP_OK;
}

static void shutdown_state(cuda_state *s)
{
    if (!s) return;
    if (s->context_retained) s->drv.fn_cuDevicePrimaryCtxRelease(s->device);
    if (s->drv.lib) dlclose(s->drv.lib);
    free(s);
}

static void destroy(pp_context *ctx)
{
    shutdown_state(ctx->backend);
    ctx->backend = NULL;
}

static const pp_backend_ops cuda_ops = {
    .name = "cuda",
    .compile = compile,
    .prepare = prepare,
    .get_function = get_function,
    .module_destroy = module_destroy,
    .alloc = alloc,
    .free = release,
    .upload = upload,
    .download = download,
    .memset_zero = memset_zero,
    .memory_available = memory_available,
    .launch = launch,
    .synchronize = synchronize,
    .stream_create = stream_create,
    .stream_destroy = stream_destroy,
    .stream_wait = stream_wait,
    .time_launch = time_launch,
    .destroy = destroy,
};

/* ---- initialisation ---- */

static pp_status init_device(pp_context *ctx, cuda_state *s)
{
    /* Any failure here (no device, a stub or mismatched driver, ...) means no usable GPU. */
    if (CU(ctx, s, cuInit, (0)) != PP_OK) {
        size_t n = strlen(ctx->error);
        snprintf(ctx->error + n, sizeof ctx->error - n, "; %s", no_gpu_hint);
        return ctx_wrap(ctx, PP_ERR_NO_DEVICE, "cuda backend: the CUDA driver could not be initialised");
    }
    PP_TRY(CU(ctx, s, cuDriverGetVersion, (&s->driver_version)));
    int count = 0;
    PP_TRY(CU(ctx, s, cuDeviceGetCount, (&count)));
    int dv_major = s->driver_version / 1000, dv_minor = s->driver_version % 1000 / 10;
    if (count <= 0)
        return ctx_fail(ctx, PP_ERR_NO_DEVICE, "cuda backend: the CUDA driver %d.%d found no CUDA device; %s", dv_major,
                        dv_minor, no_gpu_hint);
    int ordinal = ctx->options.cuda_device;
    if (ordinal < 0 || ordinal >= count)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                        "cuda backend: device ordinal %d is out of range: this machine has %d CUDA device%s (ordinals "
                        "0..%d)",
                        ordinal, count, count == 1 ? "" : "s", count - 1);
    PP_TRY(CU(ctx, s, cuDeviceGet, (&s->device, ordinal)));
    PP_TRY(CU(ctx, s, cuDeviceGetName, (s->name, (int)sizeof s->name - 1, s->device)));
    s->name[sizeof s->name - 1] = '\0';
    int major = 0, minor = 0;
    PP_TRY(attribute(ctx, s, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, &major));
    PP_TRY(attribute(ctx, s, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, &minor));
    PP_TRY(attribute(ctx, s, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, &s->sm_count));
    s->cc = major * 10 + minor;

    /* A CUBIN for sm_XY loads only on devices sm_XZ with Z >= Y. */
    int requested = ctx->options.arch ? ctx->options.arch : s->cc;
    if (requested / 10 != s->cc / 10 || requested > s->cc)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                        "cuda backend: arch sm_%d was requested, but a CUBIN for it cannot run on %s (sm_%d): a CUBIN "
                        "runs only on devices of the same major version and an equal or higher minor version",
                        requested, s->name, s->cc);
    if (nvrtc_clamp_arch(ctx, requested, &ctx->arch) != PP_OK)
        return ctx_wrap(ctx, PP_ERR_NO_DEVICE, "cuda backend: %s (sm_%d) cannot be used", s->name, s->cc);

    PP_TRY(CU(ctx, s, cuDevicePrimaryCtxRetain, (&s->context, s->device)));
    s->context_retained = 1;
    PP_TRY(bind(ctx, s));
    snprintf(ctx->device_name, sizeof ctx->device_name, "%s (sm_%d, %d SMs, driver %d.%d)", s->name, s->cc, s->sm_count,
             dv_major, dv_minor);
    snprintf(ctx->device_model, sizeof ctx->device_model, "%s", s->name);
    ctx->device_cc = s->cc;
    ctx->device_units = s->sm_count;
    return PP_OK;
}

pp_status backend_cuda_init(pp_context *ctx)
{
    cuda_state *s = calloc(1, sizeof *s);
    if (!s) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "cuda backend: out of memory");
    pp_status st = load_driver(ctx, s);
    if (st == PP_OK) st = init_device(ctx, s);
    if (st != PP_OK) {
        shutdown_state(s);
        ctx->arch = 0;
        return st;
    }
    ctx->backend = s;
    ctx->ops = &cuda_ops;
    return PP_OK;
}
