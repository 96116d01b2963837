/* comm.c - communicators for data-parallel training (pp_comm_*): the ranks of one job and
 * the collectives a training step needs. On the host backend MPI carries them, on the
 * host backend's device memory (host memory) directly. On cuda NCCL carries them on device
 * memory (nccl.c), on the default stream the model's launches use; its unique id goes from
 * rank 0 to the others over MPI, or without MPI through a rendezvous file (rendezvous.c).
 * Every collective gives the same bits on every rank: sums are taken in rank order after an
 * all-gather where the order could differ, and the gradient average is one all-reduce,
 * whose result MPI and NCCL hand to every rank alike.
 * Invariant: a communicator belongs to one context; its collectives run on that context's
 * memory. */
#include "comm.h"
#include "nccl.h"
#include "plan.h"
#include "rendezvous.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#ifdef PP_HAVE_MPI
#include <mpi.h>
#endif

struct pp_comm {
    pp_context *ctx;
    int rank, world;
#ifdef PP_HAVE_MPI
    MPI_Comm mpi; /* a duplicate of MPI_COMM_WORLD, errors returned rather than fatal */
    int has_mpi;  /* mpi is set */
    int owns_mpi; /* this library initialised MPI, and finalises it */
#endif
    float *gathered; /* world x the largest partials exchanged so far */
    size_t gathered_floats;
    /* cuda: NCCL, and a device scratch for all-gathers: [0, world*n) gathered, then n sent */
    nccl_lib *nccl;
    nccl_comm *nccl_comm;
    pp_devptr scratch;
    size_t scratch_bytes;
    void *stream; /* cuda: the averages' stream (comm_allreduce_start) */
    /* Averages started and not yet waited for: their ranges (host: scaled by 1/world on
     * completion) and MPI requests. */
    struct pending {
        float *values;
        size_t count;
#ifdef PP_HAVE_MPI
        MPI_Request request;
#endif
    } * pending;
    int pending_count, pending_capacity;
};

void pp_comm_options_init(pp_comm_options *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->rank = -1;
    o->world_size = -1;
}

pp_context *comm_context(const pp_comm *c) { return c->ctx; }
int comm_world(const pp_comm *c) { return c->world; }

#ifdef PP_HAVE_MPI
/* ctx error for a failed MPI call, with MPI's own words. */
static pp_status mpi_fail(pp_comm *c, int code, const char *what)
{
    char text[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(code, text, &len);
    return ctx_fail(c->ctx, PP_ERR_DRIVER, "rank %d of %d: MPI %s failed: %s (did another rank stop?)", c->rank,
                    c->world, what, text);
}
#endif

#ifdef PP_HAVE_MPI
/* Joins MPI_COMM_WORLD (initialising MPI where nobody has): c->rank and c->world from MPI,
 * checked against the options' where given. */
static pp_status mpi_join(pp_comm *c, const pp_comm_options *o)
{
    int initialised = 0, finalised = 0;
    MPI_Initialized(&initialised);
    MPI_Finalized(&finalised);
    if (finalised) return ctx_fail(c->ctx, PP_ERR_INVALID_ARGUMENT, "pp_comm_create: MPI was finalised already");
    if (!initialised) {
        int provided = 0;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return ctx_fail(c->ctx, PP_ERR_DRIVER, "pp_comm_create: MPI_Init_thread failed");
        c->owns_mpi = 1;
    }
    int code = MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi);
    c->has_mpi = code == MPI_SUCCESS;
    if (code == MPI_SUCCESS) code = MPI_Comm_set_errhandler(c->mpi, MPI_ERRORS_RETURN);
    if (code == MPI_SUCCESS) code = MPI_Comm_rank(c->mpi, &c->rank);
    if (code == MPI_SUCCESS) code = MPI_Comm_size(c->mpi, &c->world);
    if (code != MPI_SUCCESS) return mpi_fail(c, code, "setup");
    if (o->rank >= 0 && (o->rank != c->rank || o->world_size != c->world))
        return ctx_fail(c->ctx, PP_ERR_INVALID_ARGUMENT,
                        "pp_comm_create: rank %d of %d was given, but MPI says rank %d of %d", o->rank, o->world_size,
                        c->rank, c->world);
    return PP_OK;
}
#endif

/* cuda: loads NCCL, hands rank 0's unique id to every rank (MPI, or the rendezvous file),
 * and makes the NCCL communicator on the context's device. */
static pp_status nccl_join(pp_comm *c, const pp_comm_options *o)
{
    PP_TRY(nccl_load(c->ctx, &c->nccl));
    if (!nccl_has_avg(c->nccl)) {
        char version[32];
        nccl_version_string(c->nccl, version, sizeof version);
        return ctx_fail(c->ctx, PP_ERR_NO_DEVICE,
                        "NCCL %s at %s has no ncclAvg; data-parallel training needs 2.10 or later", version,
                        nccl_library_path(c->nccl));
    }
    unsigned char id[NCCL_ID_BYTES] = {0};
    /* Any backend call makes the context's device current on this thread, which NCCL uses. */
    PP_TRY(c->ctx->ops->synchronize(c->ctx));
    if (c->rank == 0) PP_TRY(nccl_unique_id(c->ctx, c->nccl, id));
    if (o->rendezvous) {
        PP_TRY(rendezvous_exchange(c->ctx, o->rendezvous + 5, c->rank, c->world, id, sizeof id,
                                   o->timeout_seconds > 0 ? o->timeout_seconds : 300));
    } else {
#ifdef PP_HAVE_MPI
        int code = MPI_Bcast(id, (int)sizeof id, MPI_BYTE, 0, c->mpi);
        if (code != MPI_SUCCESS) return mpi_fail(c, code, "broadcast of NCCL's unique id");
#else
        return ctx_fail(c->ctx, PP_ERR_INTERNAL, "no way to hand NCCL's id to the ranks");
#endif
    }
    return nccl_comm_init(c->ctx, c->nccl, id, c->rank, c->world, &c->nccl_comm);
}

pp_status pp_comm_create(pp_context *ctx, const pp_comm_options *o, pp_comm **out)
{
    if (!ctx || !o || !out) return PP_ERR_INVALID_ARGUMENT;
    *out = NULL;
    ctx_clear_error(ctx);
    if (!ctx->ops) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "pp_comm_create: the context has no backend");
    if ((o->rank < 0) != (o->world_size < 0) || o->world_size == 0 || (o->rank >= 0 && o->rank >= o->world_size))
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                        "pp_comm_create: rank %d of world size %d: give both (0 <= rank < world size) or neither",
                        o->rank, o->world_size);
    if (o->rendezvous && (strncmp(o->rendezvous, "file:", 5) != 0 || !o->rendezvous[5]))
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                        "rendezvous '%s': expected file:PATH (a file all ranks see; TCP is not offered)",
                        o->rendezvous);
    const int cuda = pp_context_backend(ctx) == PP_BACKEND_CUDA;
    pp_comm *c = calloc(1, sizeof *c);
    if (!c) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    c->ctx = ctx;
    c->rank = o->rank, c->world = o->world_size;
    pp_status st = PP_OK;
    const int want_mpi = o->rank < 0 || !o->rendezvous;
#ifdef PP_HAVE_MPI
    if (want_mpi) st = mpi_join(c, o);
#else
    if (want_mpi)
        st = ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                      cuda ? "data-parallel training without MPI needs the rank, the world size and a rendezvous "
                             "(file:PATH); this libpoolprop was built without MPI"
                           : "data-parallel training on the host backend runs its reductions over MPI, and this "
                             "libpoolprop was built without MPI (install libopenmpi-dev and openmpi-bin, and rebuild)");
#endif
    if (st == PP_OK && !cuda && !want_mpi)
        st = ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                      "data-parallel training on the host backend runs its reductions over MPI: launch it with mpirun "
                      "(a rendezvous serves NCCL on GPUs only)");
    if (st == PP_OK && cuda) st = nccl_join(c, o);
    if (st != PP_OK) {
        pp_comm_destroy(c);
        return st;
    }
    *out = c;
    return PP_OK;
}

pp_status pp_comm_rank(const pp_comm *c, int *rank, int *world)
{
    if (!c) return PP_ERR_INVALID_ARGUMENT;
    if (rank) *rank = c->rank;
    if (world) *world = c->world;
    return PP_OK;
}

void pp_comm_destroy(pp_comm *c)
{
    if (!c) return;
    /* Averages still in flight (a step that failed half-way) end before their transport. */
    if (c->pending_count) comm_allreduce_wait(c);
    free(c->pending);
    if (c->stream) c->ctx->ops->stream_destroy(c->ctx, c->stream);
    if (c->nccl_comm) nccl_comm_destroy(c->ctx, c->nccl_comm);
    if (c->nccl) nccl_unload(c->nccl);
    if (c->scratch) device_free(c->ctx, c->scratch, c->scratch_bytes);
#ifdef PP_HAVE_MPI
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (!finalised && c->has_mpi) MPI_Comm_free(&c->mpi);
    if (c->owns_mpi && !finalised) MPI_Finalize();
#endif
    free(c->gathered);
    free(c);
}

/* c->gathered holding at least floats floats; 0, or -1 when out of memory. */
static int reserve_gathered(pp_comm *c, size_t floats)
{
    if (floats <= c->gathered_floats) return 0;
    float *grown = realloc(c->gathered, floats * sizeof *grown);
    if (!grown) return -1;
    c->gathered = grown, c->gathered_floats = floats;
    return 0;
}

/* The device scratch holding at least bytes. */
static pp_status reserve_scratch(pp_comm *c, size_t bytes)
{
    if (bytes <= c->scratch_bytes) return PP_OK;
    if (c->scratch) device_free(c->ctx, c->scratch, c->scratch_bytes);
    c->scratch = 0, c->scratch_bytes = 0;
    PP_TRY(device_alloc(c->ctx, bytes, &c->scratch));
    c->scratch_bytes = bytes;
    return PP_OK;
}

/* c->gathered[r*count .. (r+1)*count) = rank r's count floats, which are at device address
 * device (cuda; 0: take them from host) or at host. */
static pp_status allgather(pp_comm *c, pp_devptr device, const void *host, size_t count, const char *what)
{
    if (count > (size_t)INT_MAX / (size_t)c->world)
        return ctx_fail(c->ctx, PP_ERR_INVALID_ARGUMENT, "rank %d: %s of %zu floats is too large to gather", c->rank,
                        what, count);
    if (reserve_gathered(c, count * (size_t)c->world)) return ctx_fail(c->ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    if (c->nccl_comm) {
        const size_t bytes = count * sizeof(float);
        PP_TRY(reserve_scratch(c, bytes * ((size_t)c->world + 1)));
        pp_devptr send = device;
        if (!send) {
            send = c->scratch + bytes * (size_t)c->world;
            PP_TRY(c->ctx->ops->upload(c->ctx, send, host, bytes));
        }
        pp_status st = nccl_allgather(c->ctx, c->nccl_comm, send, c->scratch, count, NULL);
        if (st == PP_OK) st = c->ctx->ops->download(c->ctx, c->gathered, c->scratch, bytes * (size_t)c->world);
        return st == PP_OK ? PP_OK : ctx_wrap(c->ctx, st, "rank %d of %d: %s", c->rank, c->world, what);
    }
#ifdef PP_HAVE_MPI
    const void *data = device ? (const void *)(uintptr_t)device : host;
    int code = MPI_Allgather(data, (int)count, MPI_FLOAT, c->gathered, (int)count, MPI_FLOAT, c->mpi);
    return code == MPI_SUCCESS ? PP_OK : mpi_fail(c, code, what);
#else
    (void)host;
    return ctx_fail(c->ctx, PP_ERR_INTERNAL, "%s: no transport", what);
#endif
}

pp_status comm_allreduce_start(pp_comm *c, pp_devptr buf, size_t count)
{
    if (c->nccl_comm) {
        if (!c->stream) PP_TRY(c->ctx->ops->stream_create(c->ctx, &c->stream));
        PP_TRY(c->ctx->ops->stream_wait(c->ctx, c->stream, NULL));
        pp_status st = nccl_allreduce(c->ctx, c->nccl_comm, buf, count, 1, c->stream);
        if (st == PP_OK) c->pending_count++;
        return st == PP_OK ? PP_OK : ctx_wrap(c->ctx, st, "rank %d of %d: all-reduce of gradients", c->rank, c->world);
    }
#ifdef PP_HAVE_MPI
    float *v = (float *)(uintptr_t)buf;
    for (size_t done = 0; done < count;) {
        int n = count - done > (size_t)INT_MAX ? INT_MAX : (int)(count - done);
        if (c->pending_count == c->pending_capacity) {
            int capacity = c->pending_capacity ? 2 * c->pending_capacity : 16;
            struct pending *grown = realloc(c->pending, sizeof *grown * (size_t)capacity);
            if (!grown) return ctx_fail(c->ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
            c->pending = grown, c->pending_capacity = capacity;
        }
        struct pending *p = &c->pending[c->pending_count];
        p->values = v + done, p->count = (size_t)n;
        int code = MPI_Iallreduce(MPI_IN_PLACE, p->values, n, MPI_FLOAT, MPI_SUM, c->mpi, &p->request);
        if (code != MPI_SUCCESS) return mpi_fail(c, code, "all-reduce of gradients");
        c->pending_count++;
        done += (size_t)n;
    }
    return PP_OK;
#else
    (void)buf, (void)count;
    return ctx_fail(c->ctx, PP_ERR_INTERNAL, "all-reduce without a transport");
#endif
}

pp_status comm_allreduce_wait(pp_comm *c)
{
    if (c->pending_count == 0) return PP_OK;
    if (c->nccl_comm) {
        c->pending_count = 0;
        return c->ctx->ops->stream_wait(c->ctx, NULL, c->stream);
    }
    pp_status st = PP_OK;
#ifdef PP_HAVE_MPI
    const float world = (float)c->world;
    for (int i = 0; i < c->pending_count; i++) {
        struct pending *p = &c->pending[i];
        int code = MPI_Wait(&p->request, MPI_STATUS_IGNORE);
        if (code != MPI_SUCCESS && st == PP_OK) st = mpi_fail(c, code, "all-reduce of gradients");
        if (code == MPI_SUCCESS)
            for (size_t j = 0; j < p->count; j++) p->values[j] /= world;
    }
#endif
    c->pending_count = 0;
    return st;
}

pp_status comm_broadcast(pp_comm *c, pp_devptr buf, size_t count)
{
    if (c->nccl_comm) return nccl_broadcast(c->ctx, c->nccl_comm, buf, count, 0, NULL);
#ifdef PP_HAVE_MPI
    float *v = (float *)(uintptr_t)buf;
    for (size_t done = 0; done < count;) {
        int n = count - done > (size_t)INT_MAX ? INT_MAX : (int)(count - done);
        int code = MPI_Bcast(v + done, n, MPI_FLOAT, 0, c->mpi);
        if (code != MPI_SUCCESS) return mpi_fail(c, code, "broadcast of the BN statistics");
        done += (size_t)n;
    }
#else
    (void)buf, (void)count;
#endif
    return PP_OK;
}

/* The merge of comm_sync_partials on the host: v (floats floats, this rank's partials'
 * place) from the gathered ranks' g. */
static void merge_partials(int kind, const float *g, float *v, size_t floats, int world, size_t pc, int channels,
                           int shift);

pp_status comm_sync_partials(pp_comm *c, int kind, pp_devptr buf, int parts, int channels, int shift)
{
    const size_t pc = (size_t)parts * (size_t)channels;
    const size_t floats = kind == SYNC_BN_STATS ? pc * 3 + (shift ? (size_t)channels : 0) : pc * 2;
    PP_TRY(allgather(c, buf, NULL, floats,
                     kind == SYNC_BN_STATS ? "gather of BN statistics" : "gather of BN gradient sums"));
    if (!c->nccl_comm) {
        merge_partials(kind, c->gathered, (float *)(uintptr_t)buf, floats, c->world, pc, channels, shift);
        return PP_OK;
    }
    float *merged = malloc(floats * sizeof *merged);
    if (!merged) return ctx_fail(c->ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    merge_partials(kind, c->gathered, merged, floats, c->world, pc, channels, shift);
    pp_status st = c->ctx->ops->upload(c->ctx, buf, merged, floats * sizeof *merged);
    free(merged);
    return st;
}

static void merge_partials(int kind, const float *g, float *v, size_t floats, int world, size_t pc, int channels,
                           int shift)
{
    if (kind == SYNC_BN_SUMS) {
        for (size_t i = 0; i < floats; i++) {
            double sum = 0;
            for (int r = 0; r < world; r++) sum += g[(size_t)r * floats + i];
            v[i] = (float)sum;
        }
        return;
    }
    /* Chan's merge, part by part, of the ranks' (count, mean, M2) in rank order; with
     * shifts, each rank's means are first moved to rank 0's shift. */
    for (size_t pcx = 0; pcx < pc; pcx++) {
        const size_t c_index = pcx % (size_t)channels;
        double n = 0, mean = 0, m2 = 0;
        for (int r = 0; r < world; r++) {
            const float *q = g + (size_t)r * floats + pcx * 3;
            const double nb = q[0];
            if (nb == 0) continue;
            double mb = q[1];
            if (shift) mb += (double)g[(size_t)r * floats + pc * 3 + c_index] - (double)g[pc * 3 + c_index];
            if (n == 0) {
                n = nb, mean = mb, m2 = q[2];
                continue;
            }
            const double total = n + nb, delta = mb - mean;
            mean += delta * nb / total;
            m2 += q[2] + delta * delta * n * nb / total;
            n = total;
        }
        v[pcx * 3] = (float)n, v[pcx * 3 + 1] = (float)mean, v[pcx * 3 + 2] = (float)m2;
    }
    if (shift)
        for (int ch = 0; ch < channels; ch++) v[pc * 3 + (size_t)ch] = g[pc * 3 + (size_t)ch];
}

pp_status pp_comm_allreduce_sum(pp_comm *c, double *values, int count)
{
    if (!c || (count > 0 && !values) || count < 0) return PP_ERR_INVALID_ARGUMENT;
    /* Doubles travel as pairs of floats (a copy, bit for bit), and are added in rank order. */
    PP_TRY(allgather(c, 0, values, (size_t)count * 2, "sum over the ranks"));
    for (int i = 0; i < count; i++) {
        double sum = 0, part;
        for (int r = 0; r < c->world; r++) {
            memcpy(&part, c->gathered + ((size_t)r * (size_t)count + (size_t)i) * 2, sizeof part);
            sum += part;
        }
        values[i] = sum;
    }
    return PP_OK;
}

pp_status pp_comm_allreduce_max(pp_comm *c, int *values, int count)
{
    if (!c || (count > 0 && !values) || count < 0) return PP_ERR_INVALID_ARGUMENT;
    PP_TRY(allgather(c, 0, values, (size_t)count, "maximum over the ranks"));
    for (int i = 0; i < count; i++) {
        int best = INT_MIN, part;
        for (int r = 0; r < c->world; r++) {
            memcpy(&part, c->gathered + (size_t)r * (size_t)count + (size_t)i, sizeof part);
            if (part > best) best = part;
        }
        values[i] = best;
    }
    return PP_OK;
}
