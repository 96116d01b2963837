/* nccl.c - NCCL (libnccl.so.2) opened with dlopen at run time: the unique id, communicators
 * and float32 all-reduce, broadcast and all-gather for data-parallel runs on GPUs (nccl.h).
 *
 * Invariant: NCCL is never linked, so the library builds and runs where NCCL is absent;
 * only a multi-GPU run asks for it. NCCL's <nccl.h> is not included: it belongs to the NCCL
 * package, not to every CUDA toolkit, and it pulls in the CUDA runtime API and the fp16,
 * bf16 and fp8 headers. The few types used are declared here from NCCL's ABI, which has not
 * changed since 2.0: ncclResult_t, ncclDataType_t and ncclRedOp_t are C enums (int), a
 * communicator is an opaque pointer, ncclUniqueId is a struct of 128 chars passed by value.
 * The test stand-in (tests/runtime/mock_libnccl.c) is compiled against NCCL's own header,
 * which checks these values and signatures from the other side. Every NCCL call goes
 * through NC(), which records the call, file, line, the library's path and
 * ncclGetErrorString's (and, where present, ncclGetLastError's) text. */
#define _GNU_SOURCE /* dladdr */
#include "nccl.h"

#include "context.h"

#include <dlfcn.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* NCCL's ABI (values as in nccl.h of NCCL 2.x). */
typedef int nccl_result_t; /* ncclResult_t */
enum {
    nccl_success = 0,
    nccl_unhandled_cuda_error = 1,
    nccl_system_error = 2,
    nccl_internal_error = 3,
    nccl_invalid_argument = 4,
    nccl_invalid_usage = 5,
    nccl_remote_error = 6,
    nccl_in_progress = 7
};
enum {
    nccl_float32 = 7, /* ncclDataType_t ncclFloat32 */
    nccl_op_sum = 0,  /* ncclRedOp_t ncclSum */
    nccl_op_avg = 4   /* ncclRedOp_t ncclAvg */
};
typedef void *nccl_handle_t; /* ncclComm_t */
typedef struct nccl_unique_id_t {
    char internal[NCCL_ID_BYTES];
} nccl_unique_id_t; /* ncclUniqueId */

struct nccl_lib {
    void *handle;
    char path[4096]; /* the loaded file, by dladdr; else the name given to dlopen */
    int version;
    nccl_result_t (*fn_ncclGetVersion)(int *version);
    nccl_result_t (*fn_ncclGetUniqueId)(nccl_unique_id_t *id);
    nccl_result_t (*fn_ncclCommInitRank)(nccl_handle_t *comm, int nranks, nccl_unique_id_t id, int rank);
    nccl_result_t (*fn_ncclCommDestroy)(nccl_handle_t comm);
    nccl_result_t (*fn_ncclCommAbort)(nccl_handle_t comm);
    nccl_result_t (*fn_ncclAllReduce)(const void *send, void *recv, size_t count, int datatype, int op,
                                      nccl_handle_t comm, void *stream);
    nccl_result_t (*fn_ncclBroadcast)(const void *send, void *recv, size_t count, int datatype, int root,
                                      nccl_handle_t comm, void *stream);
    nccl_result_t (*fn_ncclAllGather)(const void *send, void *recv, size_t sendcount, int datatype, nccl_handle_t comm,
                                      void *stream);
    const char *(*fn_ncclGetErrorString)(nccl_result_t result);
    /* Optional (NULL where the library predates them): 2.4 and 2.13. */
    nccl_result_t (*fn_ncclCommGetAsyncError)(nccl_handle_t comm, nccl_result_t *async_error);
    const char *(*fn_ncclGetLastError)(nccl_handle_t comm);
};

struct nccl_comm {
    nccl_lib *lib;
    nccl_handle_t handle;
    int rank, world;
};

static const char env_name[] = "POOLPROP_NCCL_LIBRARY";
static const char default_name[] = "libnccl.so.2";

static pp_status status_of(nccl_result_t r)
{
    switch (r) {
    case nccl_invalid_argument:
    case nccl_invalid_usage: return PP_ERR_INVALID_ARGUMENT;
    case nccl_system_error:
    case nccl_remote_error: return PP_ERR_IO;
    case nccl_unhandled_cuda_error: return PP_ERR_DRIVER;
    default: return PP_ERR_INTERNAL;
    }
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static pp_status check(pp_context *ctx, const nccl_lib *lib, nccl_handle_t comm, nccl_result_t r, const char *call,
                       const char *file, int line)
{
    if (r == nccl_success) return PP_OK;
    const char *text = lib->fn_ncclGetErrorString ? lib->fn_ncclGetErrorString(r) : NULL;
    /* NCCL keeps the last error's detail per thread; comm is NULL where it is no longer valid. */
    const char *last = lib->fn_ncclGetLastError ? lib->fn_ncclGetLastError(comm) : NULL;
    return ctx_fail(ctx, status_of(r), "NCCL %s failed (%s:%d): %s (ncclResult_t %d)%s%s; library %s", call,
                    base_name(file), line, text ? text : "no description", (int)r, last && last[0] ? ": " : "",
                    last && last[0] ? last : "", lib->path);
}

#define NC(ctx, lib, comm, name, args) \
    check((ctx), (lib), (comm), (lib)->fn_##name args, #name #args, __FILE__, __LINE__)

static const char where_hint[] =
    "NCCL is needed only for multi-GPU (data-parallel) runs; install NCCL 2 (libnccl2, or the NVIDIA HPC SDK) or "
    "name the file in the environment variable POOLPROP_NCCL_LIBRARY";

pp_status nccl_load(pp_context *ctx, nccl_lib **out)
{
    static const struct {
        const char *symbol;
        size_t offset;
        int optional;
    } table[] = {
#define ENTRY(name, optional) {#name, offsetof(nccl_lib, fn_##name), optional}
        ENTRY(ncclGetVersion, 0),   ENTRY(ncclGetUniqueId, 0),       ENTRY(ncclCommInitRank, 0),
        ENTRY(ncclCommDestroy, 0),  ENTRY(ncclCommAbort, 0),         ENTRY(ncclAllReduce, 0),
        ENTRY(ncclBroadcast, 0),    ENTRY(ncclAllGather, 0),         ENTRY(ncclGetErrorString, 0),
        ENTRY(ncclGetLastError, 1), ENTRY(ncclCommGetAsyncError, 1),
#undef ENTRY
    };
    if (!out) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "nccl_load: NULL out");
    *out = NULL;
    const char *env = getenv(env_name);
    const char *name = env && env[0] ? env : default_name;
    char where[4400];
    if (name == env)
        snprintf(where, sizeof where, "%s (named by %s)", name, env_name);
    else
        snprintf(where, sizeof where,
                 "%s (looked for by the dynamic loader: LD_LIBRARY_PATH, the ld.so cache, /lib, /usr/lib)", name);
    nccl_lib *lib = calloc(1, sizeof *lib);
    if (!lib) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "NCCL: out of memory");
    dlerror();
    lib->handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!lib->handle) {
        const char *why = dlerror();
        free(lib);
        return ctx_fail(ctx, PP_ERR_NO_DEVICE, "NCCL could not be loaded from %s: %s; %s", where,
                        why ? why : "unknown reason", where_hint);
    }
    snprintf(lib->path, sizeof lib->path, "%s", name);
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        dlerror();
        void *sym = dlsym(lib->handle, table[i].symbol);
        if (!sym && table[i].optional) continue;
        if (!sym) {
            const char *why = dlerror();
            pp_status st = ctx_fail(ctx, PP_ERR_NO_DEVICE,
                                    "NCCL at %s has no entry point %s (dlsym: %s): not NCCL 2, or too old; %s", where,
                                    table[i].symbol, why ? why : "not found", where_hint);
            nccl_unload(lib);
            return st;
        }
        /* POSIX: a data pointer from dlsym may be stored into a function pointer. */
        memcpy((char *)lib + table[i].offset, &sym, sizeof sym);
    }
    /* The file the loader chose, for every later message. */
    Dl_info info;
    void *entry = NULL;
    memcpy(&entry, &lib->fn_ncclGetVersion, sizeof entry);
    if (dladdr(entry, &info) && info.dli_fname && info.dli_fname[0])
        snprintf(lib->path, sizeof lib->path, "%s", info.dli_fname);
    pp_status st = NC(ctx, lib, NULL, ncclGetVersion, (&lib->version));
    if (st == PP_OK && lib->version <= 0)
        st = ctx_fail(ctx, PP_ERR_NO_DEVICE, "NCCL at %s reports version %d: not a usable NCCL", lib->path,
                      lib->version);
    if (st != PP_OK) {
        nccl_unload(lib);
        return st;
    }
    *out = lib;
    return PP_OK;
}

int nccl_version(const nccl_lib *lib) { return lib ? lib->version : 0; }

void nccl_version_string(const nccl_lib *lib, char *out, size_t out_len)
{
    int v = nccl_version(lib);
    if (v >= 10000)
        snprintf(out, out_len, "%d.%d.%d", v / 10000, v % 10000 / 100, v % 100);
    else
        snprintf(out, out_len, "%d.%d.%d", v / 1000, v % 1000 / 100, v % 100);
}

int nccl_has_avg(const nccl_lib *lib) { return nccl_version(lib) >= NCCL_AVG_VERSION; }

const char *nccl_library_path(const nccl_lib *lib) { return lib ? lib->path : ""; }

void nccl_unload(nccl_lib *lib)
{
    if (!lib) return;
    if (lib->handle) dlclose(lib->handle);
    free(lib);
}

pp_status nccl_unique_id(pp_context *ctx, nccl_lib *lib, unsigned char id[NCCL_ID_BYTES])
{
    if (!lib || !id) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "nccl_unique_id: NULL %s", lib ? "id" : "library");
    nccl_unique_id_t u;
    memset(&u, 0, sizeof u);
    PP_TRY(NC(ctx, lib, NULL, ncclGetUniqueId, (&u)));
    memcpy(id, u.internal, NCCL_ID_BYTES);
    return PP_OK;
}

pp_status nccl_comm_init(pp_context *ctx, nccl_lib *lib, const unsigned char id[NCCL_ID_BYTES], int rank, int world,
                         nccl_comm **out)
{
    if (!out) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "nccl_comm_init: NULL out");
    *out = NULL;
    if (!lib || !id)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "nccl_comm_init: NULL %s", lib ? "unique id" : "library");
    if (world < 1 || rank < 0 || rank >= world)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                        "nccl_comm_init: rank %d of world size %d: need 0 <= rank < world", rank, world);
    nccl_comm *c = calloc(1, sizeof *c);
    if (!c) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "NCCL: out of memory");
    nccl_unique_id_t u;
    memcpy(u.internal, id, NCCL_ID_BYTES);
    pp_status st = NC(ctx, lib, NULL, ncclCommInitRank, (&c->handle, world, u, rank));
    if (st != PP_OK) {
        free(c);
        return ctx_wrap(ctx, st, "NCCL: rank %d of %d joining the communicator", rank, world);
    }
    c->lib = lib;
    c->rank = rank;
    c->world = world;
    *out = c;
    return PP_OK;
}

pp_status nccl_comm_destroy(pp_context *ctx, nccl_comm *comm)
{
    if (!comm) return PP_OK;
    pp_status st = NC(ctx, comm->lib, NULL, ncclCommDestroy, (comm->handle));
    free(comm);
    return st;
}

pp_status nccl_comm_abort(pp_context *ctx, nccl_comm *comm)
{
    if (!comm) return PP_OK;
    pp_status st = NC(ctx, comm->lib, NULL, ncclCommAbort, (comm->handle));
    free(comm);
    return st;
}

pp_status nccl_async_error(pp_context *ctx, nccl_comm *comm)
{
    if (!comm) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "nccl_async_error: NULL communicator");
    if (!comm->lib->fn_ncclCommGetAsyncError) return PP_OK;
    nccl_result_t async = nccl_success;
    PP_TRY(NC(ctx, comm->lib, comm->handle, ncclCommGetAsyncError, (comm->handle, &async)));
    if (async == nccl_success || async == nccl_in_progress) return PP_OK;
    return ctx_wrap(ctx, check(ctx, comm->lib, comm->handle, async, "communicator", __FILE__, __LINE__),
                    "NCCL: rank %d of %d: asynchronous error", comm->rank, comm->world);
}

static pp_status check_comm(pp_context *ctx, const nccl_comm *comm, const char *what, pp_devptr buf,
                            size_t count_floats)
{
    if (!comm) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "%s: NULL communicator", what);
    if (!buf && count_floats)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "%s: NULL buffer for %zu floats", what, count_floats);
    return PP_OK;
}

static void *ptr(pp_devptr p) { return (void *)(uintptr_t)p; }

pp_status nccl_allreduce(pp_context *ctx, nccl_comm *comm, pp_devptr buf, size_t count_floats, int average,
                         void *stream)
{
    PP_TRY(check_comm(ctx, comm, "nccl_allreduce", buf, count_floats));
    if (average && !nccl_has_avg(comm->lib)) {
        char v[32];
        nccl_version_string(comm->lib, v, sizeof v);
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                        "nccl_allreduce: NCCL %s at %s has no ncclAvg (2.10 or newer has it): sum (average = 0) and "
                        "scale by 1/%d instead",
                        v, comm->lib->path, comm->world);
    }
    int op = average ? nccl_op_avg : nccl_op_sum;
    return NC(ctx, comm->lib, comm->handle, ncclAllReduce,
              (ptr(buf), ptr(buf), count_floats, nccl_float32, op, comm->handle, stream));
}

pp_status nccl_broadcast(pp_context *ctx, nccl_comm *comm, pp_devptr buf, size_t count_floats, int root, void *stream)
{
    PP_TRY(check_comm(ctx, comm, "nccl_broadcast", buf, count_floats));
    if (root < 0 || root >= comm->world)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "nccl_broadcast: root %d outside the world of %d ranks", root,
                        comm->world);
    return NC(ctx, comm->lib, comm->handle, ncclBroadcast,
              (ptr(buf), ptr(buf), count_floats, nccl_float32, root, comm->handle, stream));
}

pp_status nccl_allgather(pp_context *ctx, nccl_comm *comm, pp_devptr send, pp_devptr recv, size_t count_floats,
                         void *stream)
{
    PP_TRY(check_comm(ctx, comm, "nccl_allgather", send, count_floats));
    PP_TRY(check_comm(ctx, comm, "nccl_allgather", recv, count_floats));
    return NC(ctx, comm->lib, comm->handle, ncclAllGather,
              (ptr(send), ptr(recv), count_floats, nccl_float32, comm->handle, stream));
}
