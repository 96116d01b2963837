/* test_nccl.c - NCCL loaded with dlopen (runtime/src/nccl.c) without a GPU: the real
 * libnccl.so.2 where the build found one (it must load and report a version), a missing
 * library named by POOLPROP_NCCL_LIBRARY (the message names the file), and a stand-in
 * library for a world of one rank on host memory (tests/runtime/mock_libnccl.c): unique id,
 * communicator, the three collectives with the datatype, operation, buffers and stream
 * nccl.c passes, NCCL errors turned into messages, ncclAvg refused before 2.10, a missing
 * required entry point, absent optional ones. */
#include "nccl.h"
#include "test_util.h"

#include <dlfcn.h>
#include <stdlib.h>

static pp_context *ctx;

static void real_library(void)
{
    unsetenv("POOLPROP_NCCL_LIBRARY");
    nccl_lib *lib = NULL;
    pp_status st = nccl_load(ctx, &lib);
#ifdef PP_NCCL_EXPECTED
    CHECK(st == PP_OK, "the build found %s, but nccl_load failed: %s", PP_NCCL_EXPECTED, pp_last_error(ctx));
    char v[32];
    nccl_version_string(lib, v, sizeof v);
    printf("  NCCL %s (code %d) from %s; ncclAvg: %s\n", v, nccl_version(lib), nccl_library_path(lib),
           nccl_has_avg(lib) ? "yes" : "no");
    CHECK(nccl_version(lib) >= 2000 && v[0] == '2' && v[1] == '.', "version %d (%s)", nccl_version(lib), v);
    CHECK(nccl_has_avg(lib) == (nccl_version(lib) >= 21000), "ncclAvg availability against version %d",
          nccl_version(lib));
    CHECK(strstr(nccl_library_path(lib), "libnccl.so") != NULL, "path %s", nccl_library_path(lib));
    nccl_unload(lib);
#else
    printf("  the build found no libnccl.so.2; nccl_load: %s\n", pp_last_error(ctx));
    CHECK(st == PP_ERR_NO_DEVICE && !lib && strstr(pp_last_error(ctx), "libnccl.so.2") &&
              strstr(pp_last_error(ctx), "only for multi-GPU"),
          "%s: %s", pp_status_string(st), pp_last_error(ctx));
#endif
}

static void missing_library(void)
{
    const char *path = "/nonexistent/libnccl.so.2";
    setenv("POOLPROP_NCCL_LIBRARY", path, 1);
    nccl_lib *lib = (nccl_lib *)&lib; /* must become NULL */
    pp_status st = nccl_load(ctx, &lib);
    const char *msg = pp_last_error(ctx);
    printf("  %s: %s\n", pp_status_string(st), msg);
    CHECK(st == PP_ERR_NO_DEVICE && lib == NULL, "status %s", pp_status_string(st));
    CHECK(strstr(msg, path) && strstr(msg, "POOLPROP_NCCL_LIBRARY") && strstr(msg, "only for multi-GPU") &&
              strstr(msg, "No such file"),
          "message: %s", msg);
    unsetenv("POOLPROP_NCCL_LIBRARY");
    CHECK(nccl_load(ctx, NULL) == PP_ERR_INVALID_ARGUMENT, "NULL out accepted");
}

#ifdef PP_MOCK_NCCL_DIR
static char mock_path[3][1024];
enum {
    whole,
    no_broadcast,
    no_optional
};

static void init_mock_paths(void)
{
    const char *names[3] = {"whole", "no_broadcast", "no_optional"};
    for (int i = 0; i < 3; i++)
        snprintf(mock_path[i], sizeof mock_path[i], "%s_%s/libnccl.so.2", PP_MOCK_NCCL_DIR, names[i]);
}

static nccl_lib *load_mock(int variant)
{
    setenv("POOLPROP_NCCL_LIBRARY", mock_path[variant], 1);
    nccl_lib *lib = NULL;
    CHECK_OK(ctx, nccl_load(ctx, &lib));
    return lib;
}

typedef struct last_call {
    int op, datatype, live;
    size_t count;
    const void *send, *recv, *stream;
} last_call;

/* The stand-in's record of the last collective and its live communicators. */
static last_call mock_last(int variant)
{
    void *h = dlopen(mock_path[variant], RTLD_NOW | RTLD_NOLOAD);
    CHECK(h != NULL, "the stand-in %s is not loaded", mock_path[variant]);
    void (*fn)(int *, int *, size_t *, const void **, const void **, const void **, int *);
    void *sym = dlsym(h, "pp_mock_nccl_last");
    CHECK(sym != NULL, "pp_mock_nccl_last");
    memcpy(&fn, &sym, sizeof sym);
    last_call c;
    fn(&c.op, &c.datatype, &c.count, &c.send, &c.recv, &c.stream, &c.live);
    dlclose(h);
    return c;
}

static float *filled(size_t n, float base)
{
    float *p = test_xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = base + (float)i * 0.5f;
    return p;
}

static void mock_collectives(void)
{
    nccl_lib *lib = load_mock(whole);
    char v[32];
    nccl_version_string(lib, v, sizeof v);
    printf("  stand-in NCCL %s from %s\n", v, nccl_library_path(lib));
    CHECK(nccl_version(lib) == 21903 && strcmp(v, "2.19.3") == 0 && nccl_has_avg(lib), "version %d", nccl_version(lib));
    CHECK(strcmp(nccl_library_path(lib), mock_path[whole]) == 0, "path %s", nccl_library_path(lib));

    unsigned char id[NCCL_ID_BYTES];
    memset(id, 0xee, sizeof id);
    CHECK_OK(ctx, nccl_unique_id(ctx, lib, id));
    CHECK(memcmp(id, "pp-mock-nccl-id", 16) == 0 && id[NCCL_ID_BYTES - 1] != 0, "the id's bytes did not come through");
    nccl_comm *comm = NULL;
    CHECK_OK(ctx, nccl_comm_init(ctx, lib, id, 0, 1, &comm));
    CHECK(mock_last(whole).live == 1, "live communicators");

    const size_t n = 1000;
    float *buf = filled(n, 1.0f), *want = filled(n, 1.0f);
    void *stream = (void *)(uintptr_t)0x5151;
    for (int average = 0; average < 2; average++) {
        CHECK_OK(ctx, nccl_allreduce(ctx, comm, (pp_devptr)(uintptr_t)buf, n, average, stream));
        last_call c = mock_last(whole);
        CHECK(c.op == (average ? 4 : 0) && c.datatype == 7 && c.count == n && c.send == buf && c.recv == buf &&
                  c.stream == stream,
              "allreduce(average=%d) passed op %d, datatype %d, count %zu, send %p, recv %p, stream %p", average, c.op,
              c.datatype, c.count, c.send, c.recv, c.stream);
        CHECK(memcmp(buf, want, n * sizeof *buf) == 0, "world-1 all-reduce changed the values");
        printf("  allreduce average=%d: ncclFloat32, op %d, in place, %zu floats, stream passed\n", average, c.op, n);
    }
    CHECK_OK(ctx, nccl_broadcast(ctx, comm, (pp_devptr)(uintptr_t)buf, n, 0, NULL));
    last_call c = mock_last(whole);
    CHECK(c.op == -1 && c.datatype == 7 && c.count == n && c.send == buf && c.recv == buf && c.stream == NULL,
          "broadcast passed op %d datatype %d count %zu", c.op, c.datatype, c.count);
    float *recv = test_xmalloc(n * sizeof *recv);
    CHECK_OK(ctx, nccl_allgather(ctx, comm, (pp_devptr)(uintptr_t)buf, (pp_devptr)(uintptr_t)recv, n, stream));
    c = mock_last(whole);
    CHECK(c.op == -2 && c.datatype == 7 && c.count == n && c.send == buf && c.recv == recv && c.stream == stream,
          "allgather passed op %d datatype %d count %zu", c.op, c.datatype, c.count);
    CHECK(memcmp(recv, want, n * sizeof *recv) == 0, "allgather's recv differs from send");
    printf("  broadcast and allgather: ncclFloat32, %zu floats, buffers and stream passed\n", n);
    CHECK_OK(ctx, nccl_async_error(ctx, comm));
    CHECK_OK(ctx, nccl_comm_destroy(ctx, comm));
    CHECK(mock_last(whole).live == 0, "the communicator was not destroyed");
    CHECK_OK(ctx, nccl_comm_destroy(ctx, NULL));
    free(buf), free(want), free(recv);
    nccl_unload(lib);
}

static void expect(pp_status st, pp_status want, const char *const *parts)
{
    const char *msg = pp_last_error(ctx);
    printf("  %s: %s\n", pp_status_string(st), msg);
    CHECK(st == want, "status %s, expected %s", pp_status_string(st), pp_status_string(want));
    for (int i = 0; parts[i]; i++) CHECK(strstr(msg, parts[i]) != NULL, "'%s' missing from: %s", parts[i], msg);
}

static void mock_errors(void)
{
    nccl_lib *lib = load_mock(whole);
    const char *path = mock_path[whole];
    unsigned char id[NCCL_ID_BYTES];
    CHECK_OK(ctx, nccl_unique_id(ctx, lib, id));
    nccl_comm *comm = (nccl_comm *)&comm;

    /* Refused here, before NCCL. */
    expect(nccl_comm_init(ctx, lib, id, 2, 2, &comm), PP_ERR_INVALID_ARGUMENT,
           (const char *[]){"rank 2 of world size 2", NULL});
    CHECK(comm == NULL, "*out set on failure");
    /* Refused by NCCL (the stand-in takes one rank only): its text and the library's path. */
    expect(nccl_comm_init(ctx, lib, id, 0, 2, &comm), PP_ERR_INVALID_ARGUMENT,
           (const char *[]){"ncclCommInitRank", "mock: invalid argument", "ncclResult_t 4", path, "rank 0 of 2", NULL});
    CHECK(comm == NULL && mock_last(whole).live == 0, "a communicator was left after a failed init");
    setenv("PP_MOCK_NCCL_FAIL", "ncclGetUniqueId:2", 1);
    expect(nccl_unique_id(ctx, lib, id), PP_ERR_IO,
           (const char *[]){"ncclGetUniqueId", "mock: unhandled system error", path, NULL});
    unsetenv("PP_MOCK_NCCL_FAIL");

    CHECK_OK(ctx, nccl_unique_id(ctx, lib, id));
    CHECK_OK(ctx, nccl_comm_init(ctx, lib, id, 0, 1, &comm));
    float buf[4] = {1, 2, 3, 4};
    pp_devptr p = (pp_devptr)(uintptr_t)buf;
    setenv("PP_MOCK_NCCL_FAIL", "ncclAllReduce:6", 1);
    expect(
        nccl_allreduce(ctx, comm, p, 4, 1, NULL), PP_ERR_IO,
        (const char *[]){"ncclAllReduce", "mock: remote process exited", "mock: detail of the last error", path, NULL});
    unsetenv("PP_MOCK_NCCL_FAIL");
    expect(nccl_broadcast(ctx, comm, p, 4, 1, NULL), PP_ERR_INVALID_ARGUMENT,
           (const char *[]){"root 1 outside the world of 1", NULL});
    expect(nccl_allreduce(ctx, comm, 0, 4, 0, NULL), PP_ERR_INVALID_ARGUMENT, (const char *[]){"NULL buffer", NULL});
    expect(nccl_allgather(ctx, NULL, p, p, 4, NULL), PP_ERR_INVALID_ARGUMENT,
           (const char *[]){"NULL communicator", NULL});
    setenv("PP_MOCK_NCCL_ASYNC", "6", 1);
    expect(nccl_async_error(ctx, comm), PP_ERR_IO,
           (const char *[]){"asynchronous error", "rank 0 of 1", "mock: remote process exited", path, NULL});
    unsetenv("PP_MOCK_NCCL_ASYNC");
    setenv("PP_MOCK_NCCL_FAIL", "ncclCommAbort:3", 1);
    expect(nccl_comm_abort(ctx, comm), PP_ERR_INTERNAL, (const char *[]){"ncclCommAbort", path, NULL});
    unsetenv("PP_MOCK_NCCL_FAIL");
    CHECK(mock_last(whole).live == 0, "abort did not release the communicator");
    nccl_unload(lib);

    setenv("PP_MOCK_NCCL_FAIL", "ncclGetVersion:3", 1);
    nccl_lib *none = (nccl_lib *)&none;
    expect(nccl_load(ctx, &none), PP_ERR_INTERNAL, (const char *[]){"ncclGetVersion", path, NULL});
    CHECK(none == NULL, "*out set on failure");
    unsetenv("PP_MOCK_NCCL_FAIL");
}

static void mock_old_version(void)
{
    setenv("PP_MOCK_NCCL_VERSION", "2807", 1); /* 2.8.7, before the 2.9 coding */
    nccl_lib *lib = load_mock(whole);
    unsetenv("PP_MOCK_NCCL_VERSION");
    char v[32];
    nccl_version_string(lib, v, sizeof v);
    CHECK(strcmp(v, "2.8.7") == 0 && !nccl_has_avg(lib), "version %s, ncclAvg %d", v, nccl_has_avg(lib));
    unsigned char id[NCCL_ID_BYTES];
    CHECK_OK(ctx, nccl_unique_id(ctx, lib, id));
    nccl_comm *comm = NULL;
    CHECK_OK(ctx, nccl_comm_init(ctx, lib, id, 0, 1, &comm));
    float buf[3] = {1, 2, 3};
    expect(nccl_allreduce(ctx, comm, (pp_devptr)(uintptr_t)buf, 3, 1, NULL), PP_ERR_INVALID_ARGUMENT,
           (const char *[]){"NCCL 2.8.7", "no ncclAvg", "2.10", mock_path[whole], NULL});
    CHECK_OK(ctx, nccl_allreduce(ctx, comm, (pp_devptr)(uintptr_t)buf, 3, 0, NULL));
    CHECK(mock_last(whole).op == 0, "the sum was not ncclSum");
    CHECK_OK(ctx, nccl_comm_destroy(ctx, comm));
    nccl_unload(lib);
}

static void mock_entry_points(void)
{
    setenv("POOLPROP_NCCL_LIBRARY", mock_path[no_broadcast], 1);
    nccl_lib *lib = (nccl_lib *)&lib;
    expect(nccl_load(ctx, &lib), PP_ERR_NO_DEVICE,
           (const char *[]){"no entry point ncclBroadcast", mock_path[no_broadcast], NULL});
    CHECK(lib == NULL, "*out set on failure");

    lib = load_mock(no_optional);
    unsigned char id[NCCL_ID_BYTES];
    CHECK_OK(ctx, nccl_unique_id(ctx, lib, id));
    nccl_comm *comm = NULL;
    CHECK_OK(ctx, nccl_comm_init(ctx, lib, id, 0, 1, &comm));
    setenv("PP_MOCK_NCCL_ASYNC", "6", 1); /* not consulted: the entry point is absent */
    CHECK_OK(ctx, nccl_async_error(ctx, comm));
    unsetenv("PP_MOCK_NCCL_ASYNC");
    setenv("PP_MOCK_NCCL_FAIL", "ncclAllReduce:2", 1);
    float buf[2] = {1, 2};
    expect(nccl_allreduce(ctx, comm, (pp_devptr)(uintptr_t)buf, 2, 0, NULL), PP_ERR_IO,
           (const char *[]){"ncclAllReduce", "mock: unhandled system error", mock_path[no_optional], NULL});
    unsetenv("PP_MOCK_NCCL_FAIL");
    CHECK(strstr(pp_last_error(ctx), "detail of the last error") == NULL, "ncclGetLastError used where absent");
    CHECK_OK(ctx, nccl_comm_destroy(ctx, comm));
    nccl_unload(lib);
    unsetenv("POOLPROP_NCCL_LIBRARY");
}
#endif

static const test_case tests[] = {
    TEST_CASE(real_library, "the system's libnccl.so.2 loads and reports its version (where the build found it)"),
    TEST_CASE(missing_library, "a missing library is PP_ERR_NO_DEVICE naming the file and why NCCL is needed"),
#ifdef PP_MOCK_NCCL_DIR
    TEST_CASE(mock_collectives, "unique id, communicator and collectives pass the right arguments (stand-in)"),
    TEST_CASE(mock_errors, "NCCL errors become messages with NCCL's text and the library's path (stand-in)"),
    TEST_CASE(mock_old_version, "before 2.10, averaging is refused and summing works (stand-in)"),
    TEST_CASE(mock_entry_points, "a missing required entry point fails the load; absent optional ones do not"),
#endif
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_NONE;
    CHECK_OK(ctx, pp_context_create(&o, &ctx));
#ifdef PP_MOCK_NCCL_DIR
    init_mock_paths();
#else
    printf("NCCL's nccl.h was not found at build time: the stand-in library's cases are not built\n");
#endif
    int rc = TEST_RUN(tests, only);
    pp_context_destroy(ctx);
    return rc;
}
