/* backend_host.c - the host emulation backend: compiles the generated CUDA source with
 * the host C++ compiler (after the emulation header) into a shared object, loads it, and
 * runs kernels on the CPU through the fiber scheduler (host/scheduler.c).
 *
 * Compile: the translation unit is
 *     #line 1 "emu_abi.h"      <embedded runtime/src/host/emu_abi.h>
 *     #line 1 "pp_cuda_emu.h"  <embedded runtime/src/host/pp_cuda_emu.h>
 *     #line 1 "<source_name>"  <the request's source, unchanged>
 * so the installed library needs no source tree and diagnostics name the kernel source
 * and its lines. The compiler is $POOLPROP_HOST_CXX or PP_HOST_CXX (one program, found
 * on PATH, no arguments), run with posix_spawn, with these flags:
 *   -std=c++17 -O2 -fPIC -shared   required: C++17 header, optimised (the host backend
 *                                  must be fast enough for evidence runs), a module
 *   -fno-strict-aliasing           CUDA code type-puns through pointers (float4 loads of
 *                                  float arrays, __float_as_int) as nvcc tolerates
 *   -fvisibility=hidden            only pp_emu_bind and pp_emu_entry_* are exported, so
 *                                  calls inside the module bind locally
 *   -fno-math-errno                sqrtf and friends inline (CUDA math sets no errno)
 *   -ffp-contract=off              the host result is the plain IEEE evaluation of the
 *                                  source whatever the compiler's default (clang
 *                                  contracts by default): reproducible across compilers
 * Cache: the .so bytes, keyed by a format tag, the compiler path and its --version
 * output, the flags and the whole translation unit. A cached module that fails to load
 * is reported, counted as corrupt and rebuilt.
 * Precompiled header: parsing the two headers is about a third of a kernel's compile, so
 * with a cache directory they are written once to <cache>/host-pch-<hash>/pp_emu_prelude.h
 * (hash: compiler, version, flags, header text) with its precompiled form beside it (.gch,
 * built with the same flags; g++ then reads it instead of the header), and the unit the
 * compiler sees #includes that file instead of holding the headers' text. The module is
 * the same either way, and keyed by the whole unit as above. A compiler that cannot use
 * the .gch (clang) parses the header; one that cannot build it gets the text inline.
 * Memory: device pointers are host pointers, 256-byte aligned. New allocations are filled
 * with 0xFF bytes (NaN as float): like cuMemAlloc they are not zeroed, and a kernel that
 * reads memory nobody wrote shows it instead of silently reading zeros.
 * Invariant: ctx->ops is set only when init succeeded; a context's launches run one at a
 * time (each launch uses the calling thread plus pthreads it joins before returning). */
#define _GNU_SOURCE
#include "cache.h"
#include "context.h"
#include "embedded.h"
#include "host/scheduler.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PP_HOST_CXX
#define PP_HOST_CXX "c++"
#endif

extern char **environ;

static const char *const cxx_flags[] = {"-std=c++17",          "-O2",          "-fPIC",
                                        "-shared",             "-fno-strict-aliasing",
                                        "-fvisibility=hidden", "-fno-math-errno", "-ffp-contract=off"};
enum { n_cxx_flags = sizeof cxx_flags / sizeof cxx_flags[0] };
static const char cache_format_tag[] = "poolprop host module 1";

/* Instruction-set flags for CPUs that have them: with -mfma, the kernels' fmaf() is one
 * instruction instead of a libm call (the same fused result either way; -ffp-contract=off
 * keeps the compiler from fusing anything else). They are part of the cache key, so a
 * cache shared with a CPU without them never serves these modules there. */
static const char *const isa_flags[] = {"-mavx2", "-mfma"};
enum { n_isa_flags = sizeof isa_flags / sizeof isa_flags[0] };

typedef struct host_state {
    int use_isa_flags;
    char cxx[1024];
    char cxx_version[2048]; /* whole --version output; empty if the compiler did not run */
    char cxx_problem[1024]; /* why it did not */
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

static const char *temp_dir(void)
{
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

/* Runs argv (PATH lookup), stdin from /dev/null, stdout+stderr collected into a malloc'ed
 * NUL-terminated *output. *exit_status is the exit code, or -1 if it did not exit
 * normally. Returns 0, or an errno if it could not be started. */
static int run_capture(char *const argv[], char **output, int *exit_status)
{
    *output = NULL;
    *exit_status = -1;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return errno;
    posix_spawn_file_actions_t fa;
    int err = posix_spawn_file_actions_init(&fa);
    if (err) {
        close(fds[0]);
        close(fds[1]);
        return err;
    }
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    pid_t pid;
    err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (err) {
        close(fds[0]);
        return err;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf && n + 1024 > cap) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
            } else {
                buf = bigger;
                cap *= 2;
            }
        }
        char sink[1024];
        char *dst = buf ? buf + n : sink;
        ssize_t got = read(fds[0], dst, 1023);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        if (buf) n += (size_t)got;
    }
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return errno;
    if (WIFEXITED(status)) *exit_status = WEXITSTATUS(status);
    if (buf) buf[n] = '\0';
    *output = buf;
    return 0;
}

/* "g++ 12.2.0" from the compiler's path and the last word of its --version first line. */
static void compiler_label(const host_state *hs, char *out, size_t len)
{
    const char *base = strrchr(hs->cxx, '/');
    base = base ? base + 1 : hs->cxx;
    if (!hs->cxx_version[0]) {
        snprintf(out, len, "%s not runnable", base);
        return;
    }
    size_t first = strcspn(hs->cxx_version, "\n");
    size_t end = first;
    while (end > 0 && (hs->cxx_version[end - 1] == ' ' || hs->cxx_version[end - 1] == '\r')) end--;
    size_t start = end;
    while (start > 0 && hs->cxx_version[start - 1] != ' ') start--;
    snprintf(out, len, "%s %.*s", base, (int)(end - start), hs->cxx_version + start);
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
    const char *dir = in_cache ? ctx->cache_dir : temp_dir();
    snprintf(path, sizeof path, "%s/pp_emu_module_XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0 && in_cache) { /* an unwritable cache dir: fall back */
        dir = temp_dir();
        snprintf(path, sizeof path, "%s/pp_emu_module_XXXXXX", temp_dir());
        fd = mkstemp(path);
    }
    if (fd < 0) return ctx_fail(ctx, PP_ERR_IO, "host backend: cannot create a temporary file in %s: %s", dir, strerror(errno));
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
                                    req->kernel_names[i], req->source_name, req->kernel_names[i],
                                    req->kernel_names[i]);
            module_free(mod);
            return st;
        }
    }
    bind(emu_abi());
    *out = mod;
    return PP_OK;
}

/* ---- compiling ---- */

static void remove_dir_files(const char *dir, const char *const *names, int count)
{
    char path[4300];
    for (int i = 0; i < count; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* The compiler's argument list: the flags (without -shared for a precompiled header),
 * then extra (NULL-terminated); argv has room for n_cxx_flags + n_isa_flags + 8. */
static void compiler_argv(const host_state *hs, int header, const char *const *extra, char **argv)
{
    int argc = 0;
    argv[argc++] = (char *)hs->cxx;
    for (int i = 0; i < n_cxx_flags; i++)
        if (!header || strcmp(cxx_flags[i], "-shared") != 0) argv[argc++] = (char *)cxx_flags[i];
    for (int i = 0; hs->use_isa_flags && i < n_isa_flags; i++) argv[argc++] = (char *)isa_flags[i];
    for (int i = 0; extra[i]; i++) argv[argc++] = (char *)extra[i];
    argv[argc] = NULL;
}

/* The emulation headers as one text (the start of every translation unit). */
static pp_status prelude_text(pp_context *ctx, char **out, size_t *out_len)
{
    const pp_embedded_file *abi = embedded_find("runtime/src/host/emu_abi.h");
    const pp_embedded_file *emu = embedded_find("runtime/src/host/pp_cuda_emu.h");
    if (!abi || !emu) return ctx_fail(ctx, PP_ERR_INTERNAL, "host backend: the emulation headers are not embedded");
    size_t cap = abi->size + emu->size + 64;
    char *text = malloc(cap);
    if (!text) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "host backend: out of memory");
    int n = snprintf(text, cap, "#line 1 \"emu_abi.h\"\n%s\n#line 1 \"pp_cuda_emu.h\"\n%s\n", abi->data, emu->data);
    *out = text;
    *out_len = (size_t)n;
    return PP_OK;
}

/* The path of the precompiled prelude (see the top of the file) in out, made if missing;
 * 0 when there is none to use (no cache, or it could not be made: compile without). */
static int prelude_header(pp_context *ctx, const host_state *hs, char *out, size_t len)
{
    if (!ctx->cache_dir[0] || ctx->options.disable_cache || !hs->cxx_version[0]) return 0;
    char *text;
    size_t text_len;
    if (prelude_text(ctx, &text, &text_len) != PP_OK) {
        ctx_clear_error(ctx);
        return 0;
    }
    pp_hash h;
    hash_init(&h);
    hash_str(&h, "poolprop host prelude 1");
    hash_str(&h, hs->cxx);
    hash_str(&h, hs->cxx_version);
    for (int i = 0; i < n_cxx_flags; i++) hash_str(&h, cxx_flags[i]);
    for (int i = 0; hs->use_isa_flags && i < n_isa_flags; i++) hash_str(&h, isa_flags[i]);
    hash_bytes(&h, text, text_len);
    pp_hash_value v = hash_final(&h);
    char hex[33], dir[4200], gch[4400], tmp[4500];
    hash_hex(&v, hex);
    snprintf(dir, sizeof dir, "%s/host-pch-%s", ctx->cache_dir, hex);
    snprintf(out, len, "%s/pp_emu_prelude.h", dir);
    snprintf(gch, sizeof gch, "%s.gch", out);
    if (strpbrk(out, "\"\\\n")) { /* not writable in an #include "..." */
        free(text);
        return 0;
    }
    int ready = access(gch, R_OK) == 0 && access(out, R_OK) == 0;
    if (!ready && (mkdir(dir, 0755) == 0 || errno == EEXIST) && file_write_atomic(ctx, out, text, text_len) == PP_OK) {
        /* Built under a name of its own, then renamed: racing builders each rename a whole file. */
        static _Atomic unsigned serial;
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", gch, (long)getpid(), serial++);
        const char *extra[] = {"-x", "c++-header", out, "-o", tmp, NULL};
        char *argv[n_cxx_flags + n_isa_flags + 8];
        compiler_argv(hs, 1, extra, argv);
        char *log = NULL;
        int code;
        ready = run_capture(argv, &log, &code) == 0 && code == 0 && rename(tmp, gch) == 0;
        free(log);
        unlink(tmp);
    }
    ctx_clear_error(ctx);
    free(text);
    return ready;
}

/* Compiles the translation unit; on success *so is the malloc'ed shared object. */
static pp_status run_compiler(pp_context *ctx, host_state *hs, const char *tu, size_t tu_len, const char *source_name,
                              char **so, size_t *so_len)
{
    *so = NULL;
    *so_len = 0;
    if (!hs->cxx_version[0])
        return ctx_fail(ctx, PP_ERR_COMPILE, "host backend: cannot compile %s: %s", source_name, hs->cxx_problem);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/pp_emu_build_XXXXXX", temp_dir());
    if (!mkdtemp(dir))
        return ctx_fail(ctx, PP_ERR_IO, "host backend: cannot create a build directory in %s: %s", temp_dir(),
                        strerror(errno));
    static const char *const files[] = {"module.cpp", "module.so"};
    char src_path[4300], so_path[4300];
    snprintf(src_path, sizeof src_path, "%s/%s", dir, files[0]);
    snprintf(so_path, sizeof so_path, "%s/%s", dir, files[1]);
    pp_status st = file_write_atomic(ctx, src_path, tu, tu_len);
    if (st != PP_OK) {
        remove_dir_files(dir, files, 2);
        return st;
    }
    const char *extra[] = {src_path, "-o", so_path, NULL};
    char *argv[n_cxx_flags + n_isa_flags + 8];
    compiler_argv(hs, 0, extra, argv);
    char *log = NULL;
    int code;
    int err = run_capture(argv, &log, &code);
    if (err) {
        st = ctx_fail(ctx, PP_ERR_COMPILE, "host backend: cannot run %s: %s", hs->cxx, strerror(err));
    } else if (code != 0) {
        st = ctx_fail(ctx, PP_ERR_COMPILE, "host compiler %s failed on %s (exit status %d):\n%s", hs->cxx,
                      source_name, code, log ? log : "(no output)");
    } else {
        st = file_read_all(ctx, so_path, so, so_len);
    }
    free(log);
    remove_dir_files(dir, files, 2);
    return st;
}

/* The translation unit: the embedded ABI and emulation headers (their text, or with
 * prelude_path an #include of the precompiled prelude), then the source. */
static pp_status build_tu(pp_context *ctx, const pp_compile_request *req, const char *prelude_path, char **out,
                          size_t *out_len)
{
    char *prelude = NULL;
    size_t prelude_len = 0;
    if (!prelude_path) PP_TRY(prelude_text(ctx, &prelude, &prelude_len));
    char name[512];
    snprintf(name, sizeof name, "%s", req->source_name ? req->source_name : "kernel.cu");
    for (char *c = name; *c; c++)
        if (*c == '"' || *c == '\\' || *c == '\n') *c = '_';
    size_t cap = prelude_len + (prelude_path ? strlen(prelude_path) : 0) + strlen(req->source) + strlen(name) + 128;
    char *tu = malloc(cap);
    if (!tu) {
        free(prelude);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "host backend: out of memory");
    }
    int n = prelude_path ? snprintf(tu, cap, "#include \"%s\"\n#line 1 \"%s\"\n%s", prelude_path, name, req->source)
                         : snprintf(tu, cap, "%s#line 1 \"%s\"\n%s", prelude, name, req->source);
    free(prelude);
    *out = tu;
    *out_len = (size_t)n;
    return PP_OK;
}

/* Compiles req (whose whole unit is tu), through the precompiled prelude where there is one. */
static pp_status compile_module(pp_context *ctx, host_state *hs, const pp_compile_request *req, const char *tu,
                                size_t tu_len, char **so, size_t *so_len)
{
    const char *source_name = req->source_name ? req->source_name : "kernel.cu";
    char prelude[4300];
    char *short_tu = NULL;
    size_t short_len = 0;
    if (prelude_header(ctx, hs, prelude, sizeof prelude) && build_tu(ctx, req, prelude, &short_tu, &short_len) == PP_OK) {
        pp_status st = run_compiler(ctx, hs, short_tu, short_len, source_name, so, so_len);
        free(short_tu);
        return st;
    }
    ctx_clear_error(ctx);
    return run_compiler(ctx, hs, tu, tu_len, source_name, so, so_len);
}

static pp_hash_value module_key(const host_state *hs, const char *tu, size_t tu_len)
{
    pp_hash h;
    hash_init(&h);
    hash_str(&h, cache_format_tag);
    hash_str(&h, hs->cxx);
    hash_str(&h, hs->cxx_version);
    hash_u64(&h, n_cxx_flags);
    for (int i = 0; i < n_cxx_flags; i++) hash_str(&h, cxx_flags[i]);
    for (int i = 0; hs->use_isa_flags && i < n_isa_flags; i++) hash_str(&h, isa_flags[i]);
    hash_u64(&h, tu_len);
    hash_bytes(&h, tu, tu_len);
    return hash_final(&h);
}

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
    PP_TRY(build_tu(ctx, req, NULL, &tu, &tu_len));
    const char *source_name = req->source_name ? req->source_name : "kernel.cu";
    pp_compile_request named = *req;
    named.source_name = source_name;
    pp_hash_value key = module_key(hs, tu, tu_len);

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
    st = compile_module(ctx, hs, &named, tu, tu_len, &so, &so_len);
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
    host_state *hs = ctx->backend; /* only read: run_compiler takes it non-const */
    char *tu = NULL;
    size_t tu_len = 0;
    PP_TRY(build_tu(ctx, req, NULL, &tu, &tu_len));
    pp_hash_value key = module_key(hs, tu, tu_len);
    void *cached = NULL;
    size_t cached_len = 0;
    pp_status st = cache_get(ctx, &key, &cached, &cached_len);
    if (st == PP_OK && !cached) {
        char *so;
        size_t so_len;
        st = compile_module(ctx, hs, req, tu, tu_len, &so, &so_len);
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
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "host backend: kernel '%s' is not in the module (no pp_emu_entry_%s)",
                        name, name);
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

/* ---- running ---- */

static pp_status host_launch(pp_context *ctx, pp_function *fn, const unsigned grid[3], const unsigned block[3],
                             void **args)
{
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

/* The emulated launch runs to completion before it returns: wall clock around it. */
static pp_status host_time_launch(pp_context *ctx, pp_function *fn, const unsigned grid[3], const unsigned block[3],
                                  void **args, double *ms)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    PP_TRY(host_launch(ctx, fn, grid, block, args));
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
    .launch = host_launch,
    .synchronize = host_synchronize,
    .time_launch = host_time_launch,
    .destroy = host_destroy,
};

pp_status backend_host_init(pp_context *ctx)
{
    host_state *hs = calloc(1, sizeof *hs);
    if (!hs) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "host backend: out of memory");
    const char *env = getenv("POOLPROP_HOST_CXX");
    const char *cxx = env && *env ? env : PP_HOST_CXX;
    if (strlen(cxx) >= sizeof hs->cxx) {
        free(hs);
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "host backend: compiler path is too long");
    }
    strcpy(hs->cxx, cxx);
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    hs->use_isa_flags = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    hs->pool = emu_stack_pool_create();
    if (!hs->pool) {
        free(hs);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "host backend: out of memory");
    }
    /* A missing compiler is reported by compile, so a context without one can still
     * allocate, copy and run modules it already has. */
    char *argv[] = {hs->cxx, "--version", NULL};
    char *out = NULL;
    int code;
    int err = run_capture(argv, &out, &code);
    if (err)
        snprintf(hs->cxx_problem, sizeof hs->cxx_problem,
                 "cannot run the host compiler %.800s: %.100s (set POOLPROP_HOST_CXX)", hs->cxx, strerror(err));
    else if (code != 0 || !out || !out[0])
        snprintf(hs->cxx_problem, sizeof hs->cxx_problem, "%.900s --version failed (exit status %d)", hs->cxx, code);
    else
        snprintf(hs->cxx_version, sizeof hs->cxx_version, "%s", out);
    free(out);

    char label[128];
    compiler_label(hs, label, sizeof label);
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
    return PP_OK;
}
