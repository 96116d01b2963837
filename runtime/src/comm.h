/* comm.h - what the model's training step asks of a communicator (comm.c): the gradient
 * average, the broadcast of rank 0's statistics, and the exchange of synchronised BN's
 * partials, on device buffers of the communicator's context. */
#ifndef PP_COMM_H
#define PP_COMM_H

#include "backend.h"
#include "context.h"

/* The context a communicator belongs to (a model must be built on the same one). */
pp_context *comm_context(const pp_comm *comm);
int comm_world(const pp_comm *comm);
/* Starts buf[0..count) = its mean over the ranks, in place (the same bits on every rank), overlapped with the work that
 * follows on the device (cuda: NCCL on a stream of the communicator's own, after what the
 * default stream holds so far; host: MPI_Iallreduce); comm_allreduce_wait completes every
 * average started, and orders the default stream's later work after them. */
pp_status comm_allreduce_start(pp_comm *comm, pp_devptr buf, size_t count);
pp_status comm_allreduce_wait(pp_comm *comm);
/* buf[0..count) = rank 0's. */
pp_status comm_broadcast(pp_comm *comm, pp_devptr buf, size_t count);
/* Synchronised BN: replaces the partials at buf with their merge over the ranks (the same
 * on every rank, in rank order). stats (kind SYNC_BN_STATS): parts x channels (count, mean,
 * M2) triples merged part by part with Chan's formula, and with shift the per-channel
 * shifts after them, which every rank then takes from rank 0 (means moved to it); sums
 * (SYNC_BN_SUMS): parts x channels x 2 sums added. */
pp_status comm_sync_partials(pp_comm *comm, int kind, pp_devptr buf, int parts, int channels, int shift);

#endif
