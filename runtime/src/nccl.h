/* nccl.h - NCCL (libnccl.so.2), loaded at run time with dlopen, for data-parallel runs on
 * several GPUs: the unique id, communicators and the float32 collectives (nccl.c).
 * Not NCCL's own header: that one is <nccl.h> of the NCCL package and is not used here. */
#ifndef PP_NCCL_H
#define PP_NCCL_H

#include "backend.h"
#include "poolprop.h"

#include <stddef.h>

/* Bytes of NCCL's unique id (ncclUniqueId, NCCL_UNIQUE_ID_BYTES). */
#define NCCL_ID_BYTES 128
/* The first NCCL version with ncclAvg (2.10.0, as ncclGetVersion codes it). */
#define NCCL_AVG_VERSION 21000

typedef struct nccl_lib nccl_lib;   /* the opened library and its entry points */
typedef struct nccl_comm nccl_comm; /* one rank's communicator; refers to its nccl_lib */

/* Opens NCCL: the file named by the environment variable POOLPROP_NCCL_LIBRARY when set,
 * else "libnccl.so.2" through the dynamic loader's search; resolves the entry points and
 * reads the version (no GPU needed). A missing library or entry point is PP_ERR_NO_DEVICE
 * with a message naming the file, dlerror() and that NCCL is needed only for multi-GPU
 * runs; *out is NULL on failure. */
pp_status nccl_load(pp_context *ctx, nccl_lib **out);
/* ncclGetVersion's code: major*10000 + minor*100 + patch from 2.9 on (22809 is 2.28.9),
 * major*1000 + minor*100 + patch before. */
int nccl_version(const nccl_lib *lib);
/* "2.28.9" into out. */
void nccl_version_string(const nccl_lib *lib, char *out, size_t out_len);
/* 1 where the library has ncclAvg (version >= NCCL_AVG_VERSION), so that nccl_allreduce
 * may average; 0 where the caller must sum and scale by 1/world itself. */
int nccl_has_avg(const nccl_lib *lib);
/* The file the library was loaded from (as the dynamic loader reports it). */
const char *nccl_library_path(const nccl_lib *lib);
/* Closes the library; every communicator made from it must be destroyed first. NULL: nothing. */
void nccl_unload(nccl_lib *lib);

/* A new unique id (ncclGetUniqueId) on the rank that will be rank 0; the others get its
 * bytes by rendezvous_exchange or MPI. */
pp_status nccl_unique_id(pp_context *ctx, nccl_lib *lib, unsigned char id[NCCL_ID_BYTES]);
/* Joins the communicator of world ranks named by id as rank (ncclCommInitRank): collective,
 * every rank must call it; the calling thread's current CUDA device is the one the rank
 * uses. 0 <= rank < world and world >= 1, else PP_ERR_INVALID_ARGUMENT. */
pp_status nccl_comm_init(pp_context *ctx, nccl_lib *lib, const unsigned char id[NCCL_ID_BYTES], int rank, int world,
                         nccl_comm **out);
/* ncclCommDestroy (waits for the communicator's pending work), then frees comm, also when
 * NCCL reported an error. NULL: PP_OK. */
pp_status nccl_comm_destroy(pp_context *ctx, nccl_comm *comm);
/* ncclCommAbort (stops pending work: after a peer failed or timed out), then frees comm,
 * also when NCCL reported an error. NULL: PP_OK. */
pp_status nccl_comm_abort(pp_context *ctx, nccl_comm *comm);
/* The communicator's asynchronous error (ncclCommGetAsyncError): an error where a peer
 * failed or the network broke, so that a caller polling it while it waits on the stream
 * can abort instead of hanging. PP_OK where the library lacks the entry point. */
pp_status nccl_async_error(pp_context *ctx, nccl_comm *comm);

/* The collectives, on float32 device memory, enqueued on stream (a CUstream/cudaStream_t;
 * NULL: the default stream); they return once enqueued. Status codes: an NCCL error maps to
 * PP_ERR_INVALID_ARGUMENT (invalid argument or usage), PP_ERR_IO (system or remote error),
 * PP_ERR_DRIVER (CUDA error), PP_ERR_INTERNAL (otherwise).
 *
 * buf: (count_floats) float32, replaced in place by the sum over ranks, or by the mean where
 * average is nonzero. Averaging uses ncclAvg and needs NCCL >= 2.10 (nccl_has_avg): on an
 * older library average != 0 is refused with PP_ERR_INVALID_ARGUMENT rather than handing
 * back sums, and the caller sums and scales. */
pp_status nccl_allreduce(pp_context *ctx, nccl_comm *comm, pp_devptr buf, size_t count_floats, int average,
                         void *stream);
/* buf: (count_floats) float32; rank root's values are copied to every rank's buf. */
pp_status nccl_broadcast(pp_context *ctx, nccl_comm *comm, pp_devptr buf, size_t count_floats, int root, void *stream);
/* send: (count_floats) float32 on every rank; recv: (world, count_floats) float32, row r
 * from rank r. In place where send == recv + rank * count_floats * 4 bytes. */
pp_status nccl_allgather(pp_context *ctx, nccl_comm *comm, pp_devptr send, pp_devptr recv, size_t count_floats,
                         void *stream);

#endif
