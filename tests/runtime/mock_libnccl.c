/* mock_libnccl.c - a stand-in libnccl.so.2 for testing runtime/src/nccl.c where no GPU
 * exists. Built as <build>/tests/mock_nccl_<variant>/libnccl.so.2 and named to the loader through
 * POOLPROP_NCCL_LIBRARY by test_nccl only.
 *
 * It implements the entry points nccl.c resolves for a world of one rank on host memory:
 * the collectives copy send to recv. It is compiled against NCCL's own <nccl.h>, so the
 * compiler checks its signatures against NCCL's, and it refuses any datatype but
 * ncclFloat32 and any operation but ncclSum and ncclAvg: a wrong value on nccl.c's side
 * fails the test. Variants (compile definitions): PP_MOCK_NCCL_NO_BROADCAST leaves out
 * ncclBroadcast (a required entry point); PP_MOCK_NCCL_NO_OPTIONAL leaves out
 * ncclCommGetAsyncError and ncclGetLastError. Behaviour by environment variables, read at
 * each call:
 *   PP_MOCK_NCCL_VERSION = what ncclGetVersion reports (default 21903, 2.19.3)
 *   PP_MOCK_NCCL_FAIL = NAME:CODE: the entry point NAME returns ncclResult_t CODE
 *   PP_MOCK_NCCL_ASYNC = the ncclResult_t ncclCommGetAsyncError reports (default 0)
 * pp_mock_nccl_last() lets the test see the arguments of the last collective and how many
 * communicators are alive. */
#include <nccl.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

static const char id_tag[] = "pp-mock-nccl-id";
static const uint32_t comm_magic = 0x6e63636cu;

struct ncclComm {
    uint32_t magic;
};

static int live_comms, id_count;
static struct {
    int op, datatype;
    size_t count;
    const void *send, *recv, *stream;
} last;

EXPORT void pp_mock_nccl_last(int *op, int *datatype, size_t *count, const void **send, const void **recv,
                              const void **stream, int *live)
{
    *op = last.op;
    *datatype = last.datatype;
    *count = last.count;
    *send = last.send;
    *recv = last.recv;
    *stream = last.stream;
    *live = live_comms;
}

/* The code PP_MOCK_NCCL_FAIL names for fn, else ncclSuccess. */
static ncclResult_t injected(const char *fn)
{
    const char *e = getenv("PP_MOCK_NCCL_FAIL");
    size_t n = strlen(fn);
    if (!e || strncmp(e, fn, n) != 0 || e[n] != ':') return ncclSuccess;
    return (ncclResult_t)atoi(e + n + 1);
}

static int valid(const ncclComm_t comm) { return comm && comm->magic == comm_magic; }

EXPORT ncclResult_t ncclGetVersion(int *version)
{
    const char *e = getenv("PP_MOCK_NCCL_VERSION");
    *version = e ? atoi(e) : 21903;
    return injected("ncclGetVersion");
}

EXPORT ncclResult_t ncclGetUniqueId(ncclUniqueId *id)
{
    ncclResult_t r = injected("ncclGetUniqueId");
    if (r != ncclSuccess) return r;
    memset(id->internal, 0, sizeof id->internal);
    memcpy(id->internal, id_tag, sizeof id_tag);
    id->internal[NCCL_UNIQUE_ID_BYTES - 1] = (char)++id_count;
    return ncclSuccess;
}

EXPORT ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId commId, int rank)
{
    ncclResult_t r = injected("ncclCommInitRank");
    if (r != ncclSuccess) return r;
    /* One rank only, and an id this library made (passed by value intact). */
    if (nranks != 1 || rank != 0 || memcmp(commId.internal, id_tag, sizeof id_tag) != 0 ||
        commId.internal[NCCL_UNIQUE_ID_BYTES - 1] == 0)
        return ncclInvalidArgument;
    struct ncclComm *c = malloc(sizeof *c);
    if (!c) return ncclSystemError;
    c->magic = comm_magic;
    live_comms++;
    *comm = c;
    return ncclSuccess;
}

static ncclResult_t release(ncclComm_t comm, const char *fn)
{
    if (!valid(comm)) return ncclInvalidArgument;
    comm->magic = 0;
    free(comm);
    live_comms--;
    return injected(fn); /* released either way, as NCCL frees what it can */
}

EXPORT ncclResult_t ncclCommDestroy(ncclComm_t comm) { return release(comm, "ncclCommDestroy"); }

EXPORT ncclResult_t ncclCommAbort(ncclComm_t comm) { return release(comm, "ncclCommAbort"); }

static ncclResult_t collective(const char *fn, const void *send, void *recv, size_t count, ncclDataType_t datatype,
                               int op, ncclComm_t comm, cudaStream_t stream)
{
    last.op = op;
    last.datatype = (int)datatype;
    last.count = count;
    last.send = send;
    last.recv = recv;
    last.stream = (const void *)stream;
    ncclResult_t r = injected(fn);
    if (r != ncclSuccess) return r;
    if (!valid(comm) || datatype != ncclFloat32 || (count && (!send || !recv))) return ncclInvalidArgument;
    if (send != recv) memmove(recv, send, count * sizeof(float));
    return ncclSuccess;
}

EXPORT ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype,
                                  ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream)
{
    if (op != ncclSum && op != ncclAvg) return ncclInvalidArgument;
    return collective("ncclAllReduce", sendbuff, recvbuff, count, datatype, (int)op, comm, stream);
}

#ifndef PP_MOCK_NCCL_NO_BROADCAST
EXPORT ncclResult_t ncclBroadcast(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, int root,
                                  ncclComm_t comm, cudaStream_t stream)
{
    if (root != 0) return ncclInvalidArgument;
    return collective("ncclBroadcast", sendbuff, recvbuff, count, datatype, -1, comm, stream);
}
#endif

EXPORT ncclResult_t ncclAllGather(const void *sendbuff, void *recvbuff, size_t sendcount, ncclDataType_t datatype,
                                  ncclComm_t comm, cudaStream_t stream)
{
    return collective("ncclAllGather", sendbuff, recvbuff, sendcount, datatype, -2, comm, stream);
}

EXPORT const char *ncclGetErrorString(ncclResult_t result)
{
    switch (result) {
    case ncclSuccess: return "mock: no error";
    case ncclSystemError: return "mock: unhandled system error";
    case ncclInvalidArgument: return "mock: invalid argument";
    case ncclRemoteError: return "mock: remote process exited or there was a network error";
    default: return "mock: other error";
    }
}

#ifndef PP_MOCK_NCCL_NO_OPTIONAL
EXPORT const char *ncclGetLastError(ncclComm_t comm)
{
    (void)comm;
    return "mock: detail of the last error";
}

EXPORT ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *asyncError)
{
    if (!valid(comm)) return ncclInvalidArgument;
    const char *e = getenv("PP_MOCK_NCCL_ASYNC");
    *asyncError = e ? (ncclResult_t)atoi(e) : ncclSuccess;
    return ncclSuccess;
}
#endif
