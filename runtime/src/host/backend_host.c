/* backend_host.c - the host emulation backend: compiles the generated CUDA source with
 * the host C++ compiler (after the emulation header; host/compiler.c) into a shared
 * object, loads it, and runs kernels on the CPU through the fiber scheduler
 * (host/scheduler.c).
 *
 * Cache: the .so bytes, keyed by compiler_module_key. A cached module that fails to load
 * is reported, counted as corrupt and rebuilt.
 * Memory: device pointers are host pointers, 256-byte aligned. New allocations are filled
 * with 0xFF bytes (NaN as float): like cuMemAlloc they are not zeroed, and a kernel that
 * reads memory nobody wrote shows it instead of silently reading zeros. Models check
 * their planned peak against MemAvailable and the cgroup limit first (host/meminfo.c).
 * Invariant: ctx->ops is set only when init succeeded; a context's launches run one at a
 * time (each launch uses the calling thread plus pthreads it joins before returning). */
#include "backend.h"
#include "cache.h"
#include "context.h"
#include "host/compiler.h"
#include "host/meminfo.h"
#include "host/scheduler.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct host_state {
    compiler_state cc;
    emu_stack_pool *pool;
} host_state;

struct pp_function {
    struct pp_function *next;
    emu_entry_fn entry;
    int plain; /* see emu_launch_desc.plain */
    char name[];
};

struct pp_module {
    void *handle;
    struct pp_function *functions;
    int plain; /* the source names no barrier or warp operation */
};

/* Whether a kernel source can reach a barrier or a warp operation: every way to do so
 * spells one of these names in the source (a macro alias would too), so a source without
 * them is safe to run as plain calls; a mention in a comment only costs speed. */
static int source_may_synchronize(const char *source)
{
    static const char *const names[] = {"__syncthreads", "__syncwarp", "__shfl", "_sync(", "__activemask"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strstr(source, names[i])) return 1;
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- loading ---- */

static void module_free(pp_module *mod)
{
    if (!mod) return;
    for (struct pp_function *f = mod->functions, *next; f; f = next) {
        next = f->next;
        free(f);
    }
    if (mod->handle) dlclose(mod->handle);
    free(mod);
}

static struct pp_function *find_or_add_function(pp_module *mod, const char *name)
{
    for (struct pp_function *f = mod->functions; f; f = f->next)
        if (strcmp(f->name, name) == 0) return f;
    char sym[600];
    if (snprintf(sym, sizeof sym, "pp_emu_entry_%s", name) >= (int)sizeof sym) return NULL;
    void *entry = dlsym(mod->handle, sym);
    if (!entry) return NULL;
    size_t len = strlen(name);
    struct pp_function *f = malloc(sizeof *f + len + 1);
    if (!f) return NULL;
    memcpy(f->name, name, len + 1);
    f->plain = mod->plain;
    *(void **)&f->entry = entry; /* POSIX: dlsym results convert to function pointers */
    f->next = mod->functions;
    mod->functions = f;
    return f;
}

static void set_plain(pp_module *mod, const char *source)
{
    mod->plain = !source_may_synchronize(source);
    for (struct pp_function *f = mod->functions; f; f = f->next) f->plain = mod->plain;
}

/* Writes the module bytes to a temporary file, dlopens and unlinks it, binds it.
 * *bad_object is set when the bytes are not a loadable module (as opposed to a module
 * that lacks a requested kernel). */
static pp_status load_module(pp_context *ctx, const void *data, size_t len, const pp_compile_request *req,
                             pp_module **out, int *bad_object)
{
    *out = NULL;
    *bad_object = 0;
    char path[4200];
    const int in_cache = ctx->cache_dir[0] && !ctx->options.disable_cache;
    const char *dir = in_cache ? ctx->cache_dir : compiler_temp_dir();
    compiler_scratch_template(dir, "pp_emu_module", path, sizeof path);
    int fd = mkstemp(path);
    if (fd < 0 && in_cache) { /* an unwritable cache dir: fall back */
        dir = compiler_temp_dir();
        compiler_scratch_template(dir, "pp_emu_module", path, sizeof path);
        fd = mkstemp(path);
    }
    if (fd < 0)
        return ctx_fail(ctx, PP_ERR_IO, "host backend: cannot create a temporary file in %s: %s", dir, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(path);
            return ctx_fail(ctx, PP_ERR_IO, "host backend: cannot write %s: %s", path, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    close(fd);
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    const char *dl_error = handle ? NULL : dlerror();
    char why[1024];
    if (dl_error) snprintf(why, sizeof why, "%s", dl_error);
    unlink(path);
    if (!handle) {
        *bad_object = 1;
        return ctx_fail(ctx, PP_ERR_COMPILE, "host backend: cannot load the module of %s: %s", req->source_name, why);
    }
    pp_module *mod = calloc(1, sizeof *mod);
    if (!mod) {
        dlclose(handle);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "host backend: out of memory");
    }
    mod->handle = handle;
    void (*bind)(const pp_emu_abi *);
    *(void **)&bind = dlsym(handle, "pp_emu_bind");
    if (!bind) {
        *bad_object = 1;
        module_free(mod);
        return ctx_fail(ctx, PP_ERR_COMPILE,
                        "host backend: the module of %s has no pp_emu_bind (not built with pp_cuda_emu.h?)",
                        req->source_name);
    }
    for (int i = 0; i < req->kernel_count; i++) {
        if (!find_or_add_function(mod, req->kernel_names[i])) {
            pp_status st = ctx_fail(ctx, PP_ERR_COMPILE,
                                    "host backend: kernel '%s' not found in %s: no pp_emu_entry_%s "
                                    "(is PP_KERNEL_EXPORT(%s) written after the kernel?)",
                                    req->kernel_names[i], req->source_name, req->kernel_names[i], req->kernel_names[i]);
            module_free(mod);
            return st;
        }
    }
    bind(emu_abi());
    *out = mod;
    return PP_OK;
}

/* ---- compiling ---- */

static pp_status host_compile(pp_context *ctx, const pp_compile_request *req, pp_module **out,
                              pp_compile_result *result)
{
    if (!out) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "host compile: no output");
    *out = NULL;
    if (!req || !req->source || (req->kernel_count > 0 && !req->kernel_names) || req->kernel_count < 0)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "host compile: incomplete request");
    host_state *hs = ctx->backend;
    pp_compile_result res = {0, 0};
    double t0 = now_ms();
    char *tu = NULL;
    size_t tu_len = 0;
    PP_TRY(compiler_unit(ctx, req, &tu, &tu_len));
    const char *source_name = req->source_name ? req->source_name : "kernel.cu";
    pp_compile_request named = *req;
    named.source_name = source_name;
    pp_hash_value key = compiler_module_key(&hs->cc, tu, tu_len);

    void *cached = NULL;
    size_t cached_len = 0;
    pp_status st = cache_get(ctx, &key, &cached, &cached_len);
    if (st != PP_OK) {
        free(tu);
        return st;
    }
    if (cached) {
        int bad_object;
        st = load_module(ctx, cached, cached_len, &named, out, &bad_object);
        free(cached);
        if (st == PP_OK) {
            set_plain(*out, req->source);
            free(tu);
            res.cache_hit = 1;
            res.compile_ms = 0;
            if (result) *result = res;
            return PP_OK;
        }
        if (!bad_object) {
            free(tu);
            return st;
        }
        ctx->cache_stats.corrupt++;
        ctx_log(ctx, PP_LOG_WARNING, "cached host module of %s does not load (%s): rebuilt", source_name, ctx->error);
        ctx_clear_error(ctx);
    }

    char *so;
    size_t so_len;
    st = compiler_build(ctx, &hs->cc, &named, tu, tu_len, &so, &so_len);
    free(tu);
    if (st != PP_OK) return st;
    if (cache_put(ctx, &key, so, so_len) != PP_OK) {
        ctx_log(ctx, PP_LOG_WARNING, "host module of %s not cached: %s", source_name, ctx->error);
        ctx_clear_error(ctx);
    }
    int bad_object;
    st = load_module(ctx, so, so_len, &named, out, &bad_object);
    free(so);
    if (st != PP_OK) return st;
    set_plain(*out, req->source);
    res.compile_ms = now_ms() - t0;
    if (result) *result = res;
    return PP_OK;
}

static pp_status host_prepare(pp_context *ctx, const pp_compile_request *req)
{
    const host_state *hs = ctx->backend; /* only read: prepare runs on several threads */
    char *tu = NULL;
    size_t tu_len = 0;
    PP_TRY(compiler_unit(ctx, req, &tu, &tu_len));
    pp_hash_value key = compiler_module_key(&hs->cc, tu, tu_len);
    void *cached = NULL;
    size_t cached_len = 0;
    pp_status st = cache_get(ctx, &key, &cached, &cached_len);
    if (st == PP_OK && !cached) {
        char *so;
        size_t so_len;
        st = compiler_build(ctx, &hs->cc, req, tu, tu_len, &so, &so_len);
        if (st == PP_OK) {
            st = cache_put(ctx, &key, so, so_len);
            free(so);
        }
    }
    free(cached);
    free(tu);
    return st;
}

/* dynamic_shared is unused: emulated kernels size their shared memory at compile time
 * (gemm_mainloop.cuh). */
static pp_status host_get_function(pp_context *ctx, pp_module *mod, const char *name, int dynamic_shared,
                                   pp_function **out)
{
    (void)dynamic_shared;
    if (!mod || !name || !out) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "host get_function: NULL argument");
    struct pp_function *f = find_or_add_function(mod, name);
    if (!f)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                        "host backend: kernel '%s' is not in the module (no pp_emu_entry_%s)", name, name);
    *out = f;
    return PP_OK;
}

static void host_module_destroy(pp_context *ctx, pp_module *mod)
{
    (void)ctx;
    module_free(mod);
}

/* ---- memory ---- */

static pp_status host_alloc(pp_context *ctx, size_t bytes, pp_devptr *out)
{
    if (!out) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "host alloc: NULL output");
    *out = 0;
    size_t size = (bytes + 255) / 256 * 256;
    if (size < bytes) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "host alloc: %zu bytes", bytes);
    if (size == 0) size = 256;
    void *p = NULL;
    if (posix_memalign(&p, 256, size) != 0)
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "host alloc: out of memory for %zu bytes", bytes);
    memset(p, 0xFF, size);
    *out = (pp_devptr)(uintptr_t)p;
    return PP_OK;
}

static void host_free(pp_context *ctx, pp_devptr ptr)
{
    (void)ctx;
    free((void *)(uintptr_t)ptr);
}

static pp_status host_upload(pp_context *ctx, pp_devptr dst, const void *src, size_t bytes)
{
    if (bytes == 0) return PP_OK;
    if (!dst || !src) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "host upload: NULL pointer");
    memcpy((void *)(uintptr_t)dst, src, bytes);
    return PP_OK;
}

static pp_status host_download(pp_context *ctx, void *dst, pp_devptr src, size_t bytes)
{
    if (bytes == 0) return PP_OK;
    if (!dst || !src) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "host download: NULL pointer");
    memcpy(dst, (const void *)(uintptr_t)src, bytes);
    return PP_OK;
}

static pp_status host_memset_zero(pp_context *ctx, pp_devptr dst, size_t bytes)
{
    if (bytes == 0) return PP_OK;
    if (!dst) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "host memset: NULL pointer");
    memset((void *)(uintptr_t)dst, 0, bytes);
    return PP_OK;
}

static int host_memory_available(pp_context *ctx, size_t *bytes, char *source, size_t source_len)
{
    (void)ctx;
    return meminfo_available("/proc/meminfo", "/sys/fs/cgroup", "/proc/self/cgroup", bytes, source, source_len);
}

/* ---- running ---- */

/* Runs to completion before it returns, so the stream (a CUstream on cuda) has nothing to order. */
static pp_status host_launch(pp_context *ctx, pp_function *fn, const unsigned grid[3], const unsigned block[3],
                             void **args, void *stream)
{
    (void)stream;
    if (!fn || !grid || !block) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "host launch: NULL argument");
    host_state *hs = ctx->backend;
    emu_launch_desc d;
    memset(&d, 0, sizeof d);
    d.kernel_name = fn->name;
    d.entry = fn->entry;
    d.args = args;
    memcpy(d.grid, grid, sizeof d.grid);
    memcpy(d.block, block, sizeof d.block);
    d.schedule = ctx->options.host_schedule;
    d.seed = ctx->options.host_seed;
    d.threads = ctx->options.host_threads;
    d.pool = hs->pool;
    d.plain = fn->plain;
    return emu_launch(ctx, &d);
}

static pp_status host_synchronize(pp_context *ctx)
{
    (void)ctx;
    return PP_OK;
}

static void host_destroy(pp_context *ctx)
{
    host_state *hs = ctx->backend;
    if (!hs) return;
    emu_stack_pool_destroy(hs->pool);
    free(hs);
    ctx->backend = NULL;
}

/* Launches run to completion before they return: no stream has anything to order. */
static pp_status host_stream_create(pp_context *ctx, void **stream)
{
    (void)ctx;
    *stream = NULL;
    return PP_OK;
}

static void host_stream_destroy(pp_context *ctx, void *stream) { (void)ctx, (void)stream; }

static pp_status host_stream_wait(pp_context *ctx, void *waiting, void *signalling)
{
    (void)ctx, (void)waiting, (void)signalling;
    return PP_OK;
}

/* The emulated launch runs to completion before it returns: wall clock around it. */
static pp_status host_time_launch(pp_context *ctx, pp_function *fn, const unsigned grid[3], const unsigned block[3],
                                  void **args, double *ms)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    PP_TRY(host_launch(ctx, fn, grid, block, args, NULL));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    return PP_OK;
}

static const pp_backend_ops host_ops = {
    .name = "host",
    .compile = host_compile,
    .prepare = host_prepare,
    .get_function = host_get_function,
    .module_destroy = host_module_destroy,
    .alloc = host_alloc,
    .free = host_free,
    .upload = host_upload,
    .download = host_download,
    .memset_zero = host_memset_zero,
    .memory_available = host_memory_available,
    .launch = host_launch,
    .synchronize = host_synchronize,
    .stream_create = host_stream_create,
    .stream_destroy = host_stream_destroy,
    .stream_wait = host_stream_wait,
    .time_launch = host_time_launch,
    .destroy = host_destroy,
};

pp_status backend_host_init(pp_context *ctx)
{
    host_state *hs = calloc(1, sizeof *hs);
    if (!hs) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "host backend: out of memory");
    pp_status st = compiler_init(ctx, &hs->cc);
    if (st != PP_OK) {
        free(hs);
        return st;
    }
    hs->pool = emu_stack_pool_create();
    if (!hs->pool) {
        free(hs);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "host backend: out of memory");
    }

    char label[128];
    compiler_label(&hs->cc, label, sizeof label);
    long threads = ctx->options.host_threads > 0 ? ctx->options.host_threads : sysconf(_SC_NPROCESSORS_ONLN);
    static const char *const schedules[] = {"forward", "reverse", "shuffled"};
    char seed[48] = "";
    if (ctx->options.host_schedule == PP_SCHEDULE_SHUFFLED)
        snprintf(seed, sizeof seed, " (seed %u)", (unsigned)ctx->options.host_seed);
    snprintf(ctx->device_name, sizeof ctx->device_name, "host emulation (%s), %ld thread%s, schedule %s%s", label,
             threads, threads == 1 ? "" : "s", schedules[ctx->options.host_schedule], seed);
    snprintf(ctx->device_model, sizeof ctx->device_model, "host emulation %s", label);
    /* The arch of the NVRTC static check that accompanies every host compile. */
    ctx->arch = ctx->options.arch ? ctx->options.arch : 90;
    ctx->device_cc = ctx->arch;
    ctx->device_units = (int)threads;
    ctx->backend = hs;
    ctx->ops = &host_ops;
    if (ctx->cache_dir[0] && !ctx->options.disable_cache) compiler_sweep(ctx, ctx->cache_dir);
    compiler_sweep(ctx, compiler_temp_dir());
    return PP_OK;
}
