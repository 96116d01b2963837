/* compiler.c - the host backend's compiler driver (compiler.h): the translation unit of a
 * kernel, its cache key, and the host C++ compiler run on it, with a precompiled header
 * and build directories of its own.
 *
 * The translation unit is
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
 * Cache key: a format tag, the compiler path and its --version output, the flags and the
 * whole translation unit.
 * Precompiled header: parsing the two headers is about a third of a kernel's compile, so
 * with a cache directory they are written once to <cache>/host-pch-<hash>/pp_emu_prelude.h
 * (hash: compiler, version, flags, header text) with its precompiled form beside it (.gch,
 * built with the same flags; g++ then reads it instead of the header), and the unit the
 * compiler sees #includes that file instead of holding the headers' text. The module is
 * the same either way, and keyed by the whole unit as above. A compiler that cannot use
 * the .gch (clang) parses the header; one that cannot build it gets the text inline. */
#define _GNU_SOURCE
#include "host/compiler.h"

#include "context.h"
#include "embedded.h"
#include "file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PP_HOST_CXX
#define PP_HOST_CXX "c++"
#endif

extern char **environ;

static const char *const cxx_flags[] = {
    "-std=c++17",       "-O2", "-fPIC", "-shared", "-fno-strict-aliasing", "-fvisibility=hidden", "-fno-math-errno",
    "-ffp-contract=off"};
enum {
    n_cxx_flags = sizeof cxx_flags / sizeof cxx_flags[0]
};
static const char cache_format_tag[] = "poolprop host module 1";

/* Instruction-set flags for CPUs that have them: with -mfma, the kernels' fmaf() is one
 * instruction instead of a libm call (the same fused result either way; -ffp-contract=off
 * keeps the compiler from fusing anything else). They are part of the cache key, so a
 * cache shared with a CPU without them never serves these modules there. */
static const char *const isa_flags[] = {"-mavx2", "-mfma"};
enum {
    n_isa_flags = sizeof isa_flags / sizeof isa_flags[0]
};

const char *compiler_temp_dir(void)
{
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

/* ---- scratch files ----
 * Build directories and module files live in the cache directory (else $TMPDIR) under
 * names <kind>.<host>.<pid>.XXXXXX, and are removed as soon as the module is loaded. A
 * process killed meanwhile (Ctrl-C, SIGTERM: the library installs no signal handlers)
 * leaves them behind; every host context's creation removes those of this host's dead
 * processes (compiler_sweep). The host name keeps a cache shared between machines safe. */

static const char *const scratch_kinds[] = {"pp_emu_build", "pp_emu_module"};

static void host_name(char *out, size_t len)
{
    if (gethostname(out, len) != 0 || !out[0]) snprintf(out, len, "localhost");
    out[len - 1] = '\0';
    for (char *c = out; *c; c++)
        if (*c == '/' || *c == '.') *c = '_';
}

void compiler_scratch_template(const char *dir, const char *kind, char *out, size_t len)
{
    char host[256];
    host_name(host, sizeof host);
    int n = snprintf(out, len, "%s/%s.%s.%ld.XXXXXX", dir, kind, host, (long)getpid());
    if (n < 0 || (size_t)n >= len) out[0] = '\0'; /* mkstemp and mkdtemp then fail with EINVAL */
}

/* The pid in a scratch name of this host ("<kind>.<host>.<pid>.XXXXXX"), or 0. */
static long scratch_owner(const char *name, const char *host)
{
    for (size_t k = 0; k < sizeof scratch_kinds / sizeof scratch_kinds[0]; k++) {
        size_t n = strlen(scratch_kinds[k]), h = strlen(host);
        if (strncmp(name, scratch_kinds[k], n) != 0 || name[n] != '.') continue;
        const char *rest = name + n + 1;
        if (strncmp(rest, host, h) != 0 || rest[h] != '.') return 0;
        char *end;
        long pid = strtol(rest + h + 1, &end, 10);
        return pid > 0 && *end == '.' && strlen(end) == 7 ? pid : 0;
    }
    return 0;
}

/* Removes dir/name: a file, or a directory of files (what a build directory holds). */
static void remove_scratch(const char *dir, const char *name)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char file[4700];
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        unlink(file);
    }
    closedir(d);
    rmdir(path);
}

void compiler_sweep(pp_context *ctx, const char *dir)
{
    char host[256];
    host_name(host, sizeof host);
    DIR *d = opendir(dir);
    if (!d) return;
    int removed = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        long pid = scratch_owner(e->d_name, host);
        if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        remove_scratch(dir, e->d_name);
        removed++;
    }
    closedir(d);
    if (removed)
        ctx_log(ctx, PP_LOG_INFO, "host backend: removed %d build file%s of dead processes from %s", removed,
                removed == 1 ? "" : "s", dir);
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

void compiler_label(const compiler_state *cs, char *out, size_t len)
{
    const char *base = strrchr(cs->cxx, '/');
    base = base ? base + 1 : cs->cxx;
    if (!cs->cxx_version[0]) {
        snprintf(out, len, "%s not runnable", base);
        return;
    }
    size_t first = strcspn(cs->cxx_version, "\n");
    size_t end = first;
    while (end > 0 && (cs->cxx_version[end - 1] == ' ' || cs->cxx_version[end - 1] == '\r')) end--;
    size_t start = end;
    while (start > 0 && cs->cxx_version[start - 1] != ' ') start--;
    snprintf(out, len, "%s %.*s", base, (int)(end - start), cs->cxx_version + start);
}

pp_status compiler_init(pp_context *ctx, compiler_state *cs)
{
    memset(cs, 0, sizeof *cs);
    const char *env = getenv("POOLPROP_HOST_CXX");
    const char *cxx = env && *env ? env : PP_HOST_CXX;
    if (strlen(cxx) >= sizeof cs->cxx)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "host backend: compiler path is too long");
    strcpy(cs->cxx, cxx);
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    cs->use_isa_flags = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    char *argv[] = {cs->cxx, "--version", NULL};
    char *out = NULL;
    int code;
    int err = run_capture(argv, &out, &code);
    if (err)
        snprintf(cs->cxx_problem, sizeof cs->cxx_problem,
                 "cannot run the host compiler %.800s: %.100s (set POOLPROP_HOST_CXX)", cs->cxx, strerror(err));
    else if (code != 0 || !out || !out[0])
        snprintf(cs->cxx_problem, sizeof cs->cxx_problem, "%.900s --version failed (exit status %d)", cs->cxx, code);
    else
        snprintf(cs->cxx_version, sizeof cs->cxx_version, "%s", out);
    free(out);
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
static void compiler_argv(const compiler_state *cs, int header, const char *const *extra, char **argv)
{
    int argc = 0;
    argv[argc++] = (char *)cs->cxx;
    for (int i = 0; i < n_cxx_flags; i++)
        if (!header || strcmp(cxx_flags[i], "-shared") != 0) argv[argc++] = (char *)cxx_flags[i];
    for (int i = 0; cs->use_isa_flags && i < n_isa_flags; i++) argv[argc++] = (char *)isa_flags[i];
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
static int prelude_header(pp_context *ctx, const compiler_state *cs, char *out, size_t len)
{
    if (!ctx->cache_dir[0] || ctx->options.disable_cache || !cs->cxx_version[0]) return 0;
    char *text;
    size_t text_len;
    if (prelude_text(ctx, &text, &text_len) != PP_OK) {
        ctx_clear_error(ctx);
        return 0;
    }
    pp_hash h;
    hash_init(&h);
    hash_str(&h, "poolprop host prelude 1");
    hash_str(&h, cs->cxx);
    hash_str(&h, cs->cxx_version);
    for (int i = 0; i < n_cxx_flags; i++) hash_str(&h, cxx_flags[i]);
    for (int i = 0; cs->use_isa_flags && i < n_isa_flags; i++) hash_str(&h, isa_flags[i]);
    hash_bytes(&h, text, text_len);
    pp_hash_value v = hash_final(&h);
    char hex[33], dir[4200], gch[4400], build[4200], tmp[4300];
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
        /* Built in a build directory of its own (swept if this process dies meanwhile), then
         * renamed: racing builders each rename a whole file. */
        compiler_scratch_template(ctx->cache_dir, "pp_emu_build", build, sizeof build);
        if (mkdtemp(build)) {
            snprintf(tmp, sizeof tmp, "%s/pp_emu_prelude.h.gch", build);
            const char *extra[] = {"-x", "c++-header", out, "-o", tmp, NULL};
            char *argv[n_cxx_flags + n_isa_flags + 8];
            compiler_argv(cs, 1, extra, argv);
            char *log = NULL;
            int code;
            ready = run_capture(argv, &log, &code) == 0 && code == 0 && rename(tmp, gch) == 0;
            free(log);
            unlink(tmp);
            rmdir(build);
        }
    }
    ctx_clear_error(ctx);
    free(text);
    return ready;
}

/* Compiles the translation unit; on success *so is the malloc'ed shared object. */
static pp_status run_compiler(pp_context *ctx, const compiler_state *cs, const char *tu, size_t tu_len,
                              const char *source_name, char **so, size_t *so_len)
{
    *so = NULL;
    *so_len = 0;
    if (!cs->cxx_version[0])
        return ctx_fail(ctx, PP_ERR_COMPILE, "host backend: cannot compile %s: %s", source_name, cs->cxx_problem);
    char dir[4200];
    const int in_cache = ctx->cache_dir[0] && !ctx->options.disable_cache;
    compiler_scratch_template(in_cache ? ctx->cache_dir : compiler_temp_dir(), "pp_emu_build", dir, sizeof dir);
    int made = mkdtemp(dir) != NULL;
    if (!made && in_cache) { /* an unwritable cache dir: fall back */
        compiler_scratch_template(compiler_temp_dir(), "pp_emu_build", dir, sizeof dir);
        made = mkdtemp(dir) != NULL;
    }
    if (!made)
        return ctx_fail(ctx, PP_ERR_IO, "host backend: cannot create a build directory in %s: %s", compiler_temp_dir(),
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
    compiler_argv(cs, 0, extra, argv);
    char *log = NULL;
    int code;
    int err = run_capture(argv, &log, &code);
    if (err) {
        st = ctx_fail(ctx, PP_ERR_COMPILE, "host backend: cannot run %s: %s", cs->cxx, strerror(err));
    } else if (code != 0) {
        st = ctx_fail(ctx, PP_ERR_COMPILE, "host compiler %s failed on %s (exit status %d):\n%s", cs->cxx, source_name,
                      code, log ? log : "(no output)");
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

pp_status compiler_unit(pp_context *ctx, const pp_compile_request *req, char **out, size_t *out_len)
{
    return build_tu(ctx, req, NULL, out, out_len);
}

pp_status compiler_build(pp_context *ctx, const compiler_state *cs, const pp_compile_request *req, const char *tu,
                         size_t tu_len, char **so, size_t *so_len)
{
    const char *source_name = req->source_name ? req->source_name : "kernel.cu";
    char prelude[4300];
    char *short_tu = NULL;
    size_t short_len = 0;
    if (prelude_header(ctx, cs, prelude, sizeof prelude) &&
        build_tu(ctx, req, prelude, &short_tu, &short_len) == PP_OK) {
        pp_status st = run_compiler(ctx, cs, short_tu, short_len, source_name, so, so_len);
        free(short_tu);
        return st;
    }
    ctx_clear_error(ctx);
    return run_compiler(ctx, cs, tu, tu_len, source_name, so, so_len);
}

pp_hash_value compiler_module_key(const compiler_state *cs, const char *tu, size_t tu_len)
{
    pp_hash h;
    hash_init(&h);
    hash_str(&h, cache_format_tag);
    hash_str(&h, cs->cxx);
    hash_str(&h, cs->cxx_version);
    hash_u64(&h, n_cxx_flags);
    for (int i = 0; i < n_cxx_flags; i++) hash_str(&h, cxx_flags[i]);
    for (int i = 0; cs->use_isa_flags && i < n_isa_flags; i++) hash_str(&h, isa_flags[i]);
    hash_u64(&h, tu_len);
    hash_bytes(&h, tu, tu_len);
    return hash_final(&h);
}
