/* rendezvous.h - hands a small blob (NCCL's 128-byte unique id) from rank 0 to every other
 * rank of a job that has no MPI, through a file all ranks see (rendezvous.c). */
#ifndef PP_RENDEZVOUS_H
#define PP_RENDEZVOUS_H

#include "poolprop.h"

#include <stddef.h>

/* The most bytes rendezvous_exchange carries. */
#define RENDEZVOUS_MAX_BLOB 65536

/* Rank 0 publishes blob[0..len) at path; every other rank waits for it and copies it into
 * blob. Returns only after rank 0 has seen every rank's acknowledgement of this call's blob,
 * so a rank never returns a blob left at path by an earlier job (the protocol is in
 * rendezvous.c). All ranks must pass the same path, world, len and timeout_s; at most one
 * job may use a path at a time. path's directory must exist and be writable by every rank;
 * rank 0 removes the files it made before it returns, on success and on failure.
 * world == 1 returns at once and touches no file.
 * Errors: PP_ERR_INVALID_ARGUMENT (rank outside [0, world), world < 1, len 0 or above
 * RENDEZVOUS_MAX_BLOB, timeout_s not positive, NULL path or blob); PP_ERR_IO (a rank did not
 * come within timeout_s, ranks disagree on world or len, a file at path that is not a
 * rendezvous file, a write failed), each message naming the file. */
pp_status rendezvous_exchange(pp_context *ctx, const char *path, int rank, int world, unsigned char *blob, size_t len,
                              double timeout_s);

#endif
