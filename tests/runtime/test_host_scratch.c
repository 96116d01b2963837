/* test_host_scratch.c - the host backend's build directories and module files (issue 10,
 * item 7): named <kind>.<host>.<pid>.XXXXXX in the cache directory (else $TMPDIR), removed
 * once the module is loaded, and those of dead processes on this host swept when a host
 * context is created. Checks:
 *   - a process killed by SIGTERM in the middle of a compile (of a module, or of the
 *     precompiled header) leaves its build directory, and the next host context removes it;
 *   - a sweep removes the directories and files of a dead pid (in the cache and in
 *     $TMPDIR), and keeps those of a live process, of another host, and names of other
 *     forms;
 *   - a compile leaves no scratch file behind. */
#include "context.h"
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char root[] = "/tmp/pp_test_host_scratch_XXXXXX";
static char cache_dir[600], tmp_dir[600], host[256];

static const char *kernel_src = "extern \"C\" __global__ void pp_test_copy(const float *x, float *y)\n"
                                "{\n"
                                "    y[threadIdx.x] = x[threadIdx.x];\n"
                                "}\n"
                                "PP_KERNEL_EXPORT(pp_test_copy)\n";

/* As the backend names them: '/' and '.' of the host name become '_'. */
static void this_host(void)
{
    CHECK(gethostname(host, sizeof host) == 0, "gethostname");
    host[sizeof host - 1] = '\0';
    if (!host[0]) strcpy(host, "localhost");
    for (char *c = host; *c; c++)
        if (*c == '/' || *c == '.') *c = '_';
}

static pid_t dead_pid(void)
{
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) _exit(0);
    CHECK(waitpid(pid, NULL, 0) == pid, "waitpid");
    return pid;
}

static int exists(const char *dir, const char *name)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    return lstat(path, &st) == 0;
}

/* A build directory holding a source file, or a module file. */
static void make_scratch(const char *dir, const char *name, int is_dir)
{
    char path[8192], file[8300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (is_dir) {
        CHECK(mkdir(path, 0700) == 0, "mkdir %s", path);
        snprintf(file, sizeof file, "%s/module.cpp", path);
    } else {
        snprintf(file, sizeof file, "%s", path);
    }
    FILE *f = fopen(file, "w");
    CHECK(f && fputs("x", f) >= 0 && fclose(f) == 0, "write %s", file);
}

/* Entries of dir whose names start with prefix. */
static int count_prefixed(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL, "opendir %s", dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) n++;
    closedir(d);
    return n;
}

static pp_context *host_context(void)
{
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_HOST;
    o.host_threads = 1;
    o.cache_dir = cache_dir;
    pp_context *ctx = NULL;
    CHECK_OK(ctx, pp_context_create(&o, &ctx));
    return ctx;
}

/* in_header: the compiler hangs building the precompiled header, else it cannot build that
 * header and hangs on the module. */
static void test_killed_compile(int in_header)
{
    char script[700];
    snprintf(script, sizeof script, "%s/slow-cxx-%d", root, in_header);
    FILE *f = fopen(script, "w");
    CHECK(f &&
              fprintf(f,
                      "#!/bin/sh\n"
                      "if [ \"$1\" = --version ]; then echo 'slow-cxx 1.0'; exit 0; fi\n"
                      "for a in \"$@\"; do [ \"$a\" = c++-header ] && %s; done\n"
                      "exec sleep 60\n",
                      in_header ? "exec sleep 60" : "exit 1") > 0 &&
              fclose(f) == 0 && chmod(script, 0755) == 0,
          "write %s", script);
    pid_t child = fork();
    CHECK(child >= 0, "fork");
    if (child == 0) {
        setpgid(0, 0);
        setenv("POOLPROP_HOST_CXX", script, 1);
        pp_context *ctx = host_context();
        const char *names[] = {"pp_test_copy"};
        pp_compile_request req = {kernel_src, "pp_test_copy.cu", names, 1};
        pp_module *mod;
        ctx->ops->compile(ctx, &req, &mod, NULL);
        _exit(3); /* not reached: the compile never ends */
    }
    setpgid(child, child);
    char prefix[400];
    snprintf(prefix, sizeof prefix, "pp_emu_build.%s.%ld.", host, (long)child);
    int found = 0;
    for (int i = 0; i < 400 && !found; i++) { /* up to 20 s */
        found = count_prefixed(cache_dir, prefix);
        if (!found) nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
    CHECK(found == 1, "the compiling child made its build directory %s* in %s", prefix, cache_dir);
    CHECK(kill(-child, SIGTERM) == 0, "SIGTERM the child's process group");
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM,
          "the child died of SIGTERM");
    printf("%s killed by SIGTERM: %d build directory %s* left in the cache\n",
           in_header ? "precompiled header build" : "module compile", count_prefixed(cache_dir, prefix), prefix);
    CHECK(count_prefixed(cache_dir, prefix) == 1, "left behind by the killed process");
    pp_context_destroy(host_context());
    printf("next host context: %d left\n", count_prefixed(cache_dir, prefix));
    CHECK(count_prefixed(cache_dir, prefix) == 0, "swept by the next host context");
}

static void test_sweep(void)
{
    pid_t dead = dead_pid();
    char name[12][400];
    snprintf(name[0], sizeof name[0], "pp_emu_build.%s.%ld.aB3dEf", host, (long)dead);
    snprintf(name[1], sizeof name[1], "pp_emu_module.%s.%ld.gH5jKl", host, (long)dead);
    snprintf(name[2], sizeof name[2], "pp_emu_build.%s.%ld.mN7pQr", host, (long)getppid()); /* alive */
    snprintf(name[3], sizeof name[3], "pp_emu_build.%s.%ld.sT9vWx", host, (long)getpid());  /* alive: this one */
    snprintf(name[4], sizeof name[4], "pp_emu_build.other_host.%ld.yZ1bCd", (long)dead);
    snprintf(name[5], sizeof name[5], "pp_emu_build_eF2gHi");                   /* another form */
    snprintf(name[6], sizeof name[6], "pp_emu_build.%s.%ld", host, (long)dead); /* no suffix */
    const int is_dir[7] = {1, 0, 1, 1, 1, 1, 1};
    const int swept[7] = {1, 1, 0, 0, 0, 0, 0};
    for (int i = 0; i < 7; i++) make_scratch(cache_dir, name[i], is_dir[i]);
    char in_tmp[400];
    snprintf(in_tmp, sizeof in_tmp, "pp_emu_build.%s.%ld.jK4lMn", host, (long)dead);
    make_scratch(tmp_dir, in_tmp, 1);

    pp_context *ctx = host_context();
    for (int i = 0; i < 7; i++) {
        int left = exists(cache_dir, name[i]);
        printf("%-60s %s (expected %s)\n", name[i], left ? "kept" : "removed", swept[i] ? "removed" : "kept");
        CHECK(left == !swept[i], "%s %s", name[i], left ? "kept" : "removed");
    }
    CHECK(!exists(tmp_dir, in_tmp), "%s removed from $TMPDIR", in_tmp);
    printf("%-60s removed from $TMPDIR\n", in_tmp);

    /* A compile leaves no scratch file of its own, in the cache or in $TMPDIR. */
    const char *names[] = {"pp_test_copy"};
    pp_compile_request req = {kernel_src, "pp_test_copy_scratch.cu", names, 1};
    pp_module *mod = NULL;
    pp_compile_result res;
    CHECK_OK(ctx, ctx->ops->compile(ctx, &req, &mod, &res));
    ctx->ops->module_destroy(ctx, mod);
    char mine[2][400];
    snprintf(mine[0], sizeof mine[0], "pp_emu_build.%s.%ld.", host, (long)getpid());
    snprintf(mine[1], sizeof mine[1], "pp_emu_module.%s.%ld.", host, (long)getpid());
    int left = count_prefixed(cache_dir, mine[0]) + count_prefixed(cache_dir, mine[1]) +
               count_prefixed(tmp_dir, mine[0]) + count_prefixed(tmp_dir, mine[1]);
    printf("after a compile (%s): %d scratch entries of this process besides the planted one\n",
           res.cache_hit ? "cache hit" : "compiled", left - 1);
    CHECK(left == 1, "only the planted %s is left: %d", name[3], left);
    pp_context_destroy(ctx);
}

static void killed_compile_module(void) { test_killed_compile(0); }

static void killed_compile_header(void) { test_killed_compile(1); }

static const test_case tests[] = {
    TEST_CASE(killed_compile_module, "a compile killed while building a module leaves its directory; the next host "
                                     "context removes it"),
    TEST_CASE(killed_compile_header, "likewise for a compile killed while building the precompiled header"),
    TEST_CASE(test_sweep, "a sweep removes a dead pid's scratch (cache and $TMPDIR), keeps a live process's, another "
                          "host's and other names; a compile leaves no scratch"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    test_temp_dir(root, sizeof root, "test_host_scratch");
    snprintf(cache_dir, sizeof cache_dir, "%s/cache", root);
    snprintf(tmp_dir, sizeof tmp_dir, "%s/tmp", root);
    CHECK(mkdir(cache_dir, 0755) == 0 && mkdir(tmp_dir, 0755) == 0, "mkdir");
    setenv("TMPDIR", tmp_dir, 1);
    this_host();
    int status = TEST_RUN(tests, only);
    CHECK(test_remove_dir(root) == 0, "remove %s", root);
    if (!only) printf("test_host_scratch: all checks passed\n");
    return status;
}
