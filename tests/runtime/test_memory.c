/* test_memory.c - a model's planned peak checked against the memory the context may still
 * allocate, before anything is compiled or allocated (issue 10, item 5):
 *   - meminfo_available on made-up /proc/meminfo and cgroup trees (v2 with a parent's
 *     limit, v1, no limit, unreadable or incomplete meminfo);
 *   - pp_context_options.memory_limit: device_alloc refuses beyond it, ctx_memory_available
 *     reports what it leaves;
 *   - pp_model_create on the host backend with a memory limit below the planned peak fails
 *     with PP_ERR_OUT_OF_MEMORY and the plan's figures, having compiled and allocated nothing.
 * The cuda backend's figure (cuMemGetInfo) is checked by test_cuda_backend_mock. */
#include "context.h"
#include "host/meminfo.h"
#include "test_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char root[] = "/tmp/pp_test_memory_XXXXXX";

static void write_text(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    /* Parents first: every '/' after the root. */
    for (char *c = path + strlen(root) + 1; *c; c++) {
        if (*c != '/') continue;
        *c = '\0';
        CHECK(mkdir(path, 0755) == 0 || errno == EEXIST, "mkdir %s", path);
        *c = '/';
    }
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "open %s", path);
    CHECK(fputs(text, f) >= 0 && fclose(f) == 0, "write %s", path);
}

static void check_available(const char *what, const char *self_cgroup, int want_known, size_t want_bytes,
                            const char *source_fragment)
{
    char meminfo[512], cgroup_root[512], self[512], source[1200];
    snprintf(meminfo, sizeof meminfo, "%s/proc/meminfo", root);
    snprintf(cgroup_root, sizeof cgroup_root, "%s/cgroup", root);
    snprintf(self, sizeof self, "%s/proc/%s", root, self_cgroup);
    size_t bytes = 0;
    int known = meminfo_available(meminfo, cgroup_root, self, &bytes, source, sizeof source);
    printf("%s: %s %zu bytes (%s)\n", what, known ? "available" : "unknown,", bytes, source);
    CHECK(known == want_known, "%s: known %d, expected %d (%s)", what, known, want_known, source);
    CHECK(!known || bytes == want_bytes, "%s: %zu bytes, expected %zu", what, bytes, want_bytes);
    CHECK(strstr(source, source_fragment) != NULL, "%s: the source names '%s': %s", what, source_fragment, source);
}

static void test_meminfo(void)
{
    write_text("proc/meminfo", "MemTotal:       8000 kB\nMemFree:        1000 kB\nMemAvailable:   4000 kB\n");
    write_text("proc/none", "");
    check_available("no cgroup", "none", 1, 4000 * 1024, "MemAvailable in");

    /* cgroup v2: the leaf has no limit, its parent's headroom (3000000 - 1000000) is the lower figure. */
    write_text("proc/v2", "0::/a/b\n");
    write_text("cgroup/a/b/memory.max", "max\n");
    write_text("cgroup/a/b/memory.current", "500000\n");
    write_text("cgroup/a/memory.max", "3000000\n");
    write_text("cgroup/a/memory.current", "1000000\n");
    check_available("cgroup v2, the parent's limit", "v2", 1, 2000000, "cgroup/a/memory.max");

    /* cgroup v2, a limit above MemAvailable: MemAvailable stands. */
    write_text("cgroup/a/memory.max", "300000000\n");
    check_available("cgroup v2, a high limit", "v2", 1, 4000 * 1024, "MemAvailable in");

    /* cgroup v1 (hybrid: the v2 line holds no memory limits): usage above the limit leaves 0. */
    write_text("proc/v1", "4:memory:/x\n0::/\n");
    write_text("cgroup/memory/x/memory.limit_in_bytes", "300000\n");
    write_text("cgroup/memory/x/memory.usage_in_bytes", "400000\n");
    check_available("cgroup v1, over its limit", "v1", 1, 0, "memory.limit_in_bytes");

    write_text("proc/meminfo", "MemTotal:       8000 kB\nMemFree:        1000 kB\n");
    check_available("meminfo without MemAvailable", "none", 0, 0, "no MemAvailable");
    char meminfo[512];
    snprintf(meminfo, sizeof meminfo, "%s/proc/meminfo", root);
    CHECK(remove(meminfo) == 0, "remove %s", meminfo);
    check_available("no meminfo", "none", 0, 0, "cannot be read");
}

static pp_context *host_context(size_t memory_limit)
{
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_HOST;
    o.host_threads = 2;
    o.memory_limit = memory_limit;
    pp_context *ctx = NULL;
    CHECK_OK(ctx, pp_context_create(&o, &ctx));
    return ctx;
}

static void test_memory_limit(void)
{
    pp_context *ctx = host_context(1 << 20);
    size_t bytes;
    char source[1200];
    CHECK(ctx_memory_available(ctx, &bytes, source, sizeof source) && bytes == 1 << 20,
          "a 1 MiB limit leaves 1 MiB: %zu (%s)", bytes, source);
    pp_devptr a = 0, b = 0;
    CHECK_OK(ctx, device_alloc(ctx, 600 << 10, &a));
    CHECK(ctx_memory_available(ctx, &bytes, source, sizeof source) && bytes == (1 << 20) - (600 << 10) &&
              strstr(source, "memory_limit"),
          "with 600 KiB in use, 424 KiB are left: %zu (%s)", bytes, source);
    pp_status st = device_alloc(ctx, 600 << 10, &b);
    printf("a second 600 KiB under a 1 MiB limit: %s: %s\n", pp_status_string(st), pp_last_error(ctx));
    CHECK(st == PP_ERR_OUT_OF_MEMORY && b == 0 && strstr(pp_last_error(ctx), "memory_limit"),
          "refused beyond the limit: %s: %s", pp_status_string(st), pp_last_error(ctx));
    CHECK_OK(ctx, device_alloc(ctx, 400 << 10, &b));
    device_free(ctx, a, 600 << 10);
    device_free(ctx, b, 400 << 10);
    pp_context_destroy(ctx);

    /* Without a limit the host figure comes from /proc (or says why it does not). */
    ctx = host_context(0);
    int known = ctx_memory_available(ctx, &bytes, source, sizeof source);
    printf("host backend without a limit: %s %.1f MiB (%s)\n", known ? "available" : "unknown,",
           known ? bytes / 1048576.0 : 0.0, source);
    CHECK(!known || strstr(source, "MemAvailable") || strstr(source, "cgroup"), "the source is named: %s", source);
    pp_context_destroy(ctx);
}

static void test_model_too_big(void)
{
    pp_model_options mo;
    pp_model_options_init(&mo);
    mo.model = "cifar_resnet8";
    mo.batch = 4;
    pp_context *ctx = host_context(1 << 20);
    pp_memory_report r;
    CHECK_OK(ctx, pp_plan_memory(ctx, &mo, &r));
    CHECK(r.peak > 1 << 20, "the test needs a planned peak above 1 MiB: %zu", r.peak);
    pp_model *m = NULL;
    pp_status st = pp_model_create(ctx, &mo, &m);
    const char *msg = pp_last_error(ctx);
    printf("cifar_resnet8 at batch 4 under a 1 MiB limit: %s: %s\n", pp_status_string(st), msg);
    char peak[64], arena[64];
    snprintf(peak, sizeof peak, "needs %.1f MiB", r.peak / 1048576.0);
    snprintf(arena, sizeof arena, "workspaces %.1f MiB", r.arena / 1048576.0);
    CHECK(st == PP_ERR_OUT_OF_MEMORY && m == NULL, "refused: %s", pp_status_string(st));
    CHECK(strstr(msg, "cifar_resnet8") && strstr(msg, peak) && strstr(msg, arena) && strstr(msg, "only 1.0 MiB") &&
              strstr(msg, "memory_limit") && strstr(msg, "host emulation"),
          "the message has the plan's figures (%s, %s) and what is available: %s", peak, arena, msg);
    pp_cache_stats cs;
    size_t in_use, held;
    CHECK_OK(ctx, pp_context_cache_stats(ctx, &cs));
    CHECK_OK(ctx, pp_context_memory_stats(ctx, &in_use, &held));
    CHECK(cs.hits == 0 && cs.misses == 0 && held == 0,
          "nothing compiled or allocated first: %d hits, %d misses, peak %zu bytes", cs.hits, cs.misses, held);
    pp_context_destroy(ctx);
}

static const test_case tests[] = {
    TEST_CASE(test_meminfo, "meminfo_available on made-up /proc/meminfo and cgroup v1/v2 trees, no limit, unreadable "
                            "or incomplete files"),
    TEST_CASE(test_memory_limit, "memory_limit: device_alloc refuses beyond it, ctx_memory_available reports the rest"),
    TEST_CASE(test_model_too_big, "a model above the limit fails with PP_ERR_OUT_OF_MEMORY and the plan's figures, "
                                  "having compiled and allocated nothing"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    test_temp_dir(root, sizeof root, "test_memory");
    int status = TEST_RUN(tests, only);
    CHECK(test_remove_dir(root) == 0, "remove %s", root);
    if (!only) printf("test_memory: all checks passed\n");
    return status;
}
