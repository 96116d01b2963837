/* comm.c - communicators for data-parallel training (pp_comm_*): the ranks of one job and
 * the collectives a training step needs. On the host backend MPI carries them, on the
 * device memory of the host backend (host memory) directly. Every collective gives the same
 * bits on every rank: sums are taken in rank order after an all-gather where the order could
 * differ, and the gradient average is one MPI_Allreduce, whose result MPI hands to all ranks.
 * Invariant: a communicator belongs to one context; its collectives run on that context's
 * memory. */
#include "comm.h"
#include "plan.h"

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
    if (pp_context_backend(ctx) == PP_BACKEND_CUDA)
        return ctx_fail(ctx, PP_ERR_NO_DEVICE,
                        "data-parallel training on the cuda backend needs NCCL, which this build does not load yet");
#ifndef PP_HAVE_MPI
    return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                    "data-parallel training on the host backend runs its reductions over MPI, and this libpoolprop "
                    "was built without MPI (install libopenmpi-dev and openmpi-bin, and rebuild)");
#else
    pp_comm *c = calloc(1, sizeof *c);
    if (!c) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    c->ctx = ctx;
    int initialised = 0, finalised = 0;
    MPI_Initialized(&initialised);
    MPI_Finalized(&finalised);
    if (finalised) {
        free(c);
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "pp_comm_create: MPI was finalised already");
    }
    if (!initialised) {
        int provided = 0;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            free(c);
            return ctx_fail(ctx, PP_ERR_DRIVER, "pp_comm_create: MPI_Init_thread failed");
        }
        c->owns_mpi = 1;
    }
    int code = MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi);
    c->has_mpi = code == MPI_SUCCESS;
    if (code == MPI_SUCCESS) code = MPI_Comm_set_errhandler(c->mpi, MPI_ERRORS_RETURN);
    if (code == MPI_SUCCESS) code = MPI_Comm_rank(c->mpi, &c->rank);
    if (code == MPI_SUCCESS) code = MPI_Comm_size(c->mpi, &c->world);
    if (code != MPI_SUCCESS) {
        pp_status st = mpi_fail(c, code, "setup");
        pp_comm_destroy(c);
        return st;
    }
    if (o->rank >= 0 && (o->rank != c->rank || o->world_size != c->world)) {
        pp_status st = ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                                "pp_comm_create: rank %d of %d was given, but MPI says rank %d of %d", o->rank,
                                o->world_size, c->rank, c->world);
        pp_comm_destroy(c);
        return st;
    }
    *out = c;
    return PP_OK;
#endif
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

/* c->gathered[r*count .. (r+1)*count) = rank r's data[0..count). */
static pp_status allgather(pp_comm *c, const void *data, size_t count, const char *what)
{
    if (count > (size_t)INT_MAX / (size_t)c->world)
        return ctx_fail(c->ctx, PP_ERR_INVALID_ARGUMENT, "rank %d: %s of %zu floats is too large to gather", c->rank,
                        what, count);
    if (reserve_gathered(c, count * (size_t)c->world)) return ctx_fail(c->ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
#ifdef PP_HAVE_MPI
    int code = MPI_Allgather(data, (int)count, MPI_FLOAT, c->gathered, (int)count, MPI_FLOAT, c->mpi);
    return code == MPI_SUCCESS ? PP_OK : mpi_fail(c, code, what);
#else
    (void)data;
    return ctx_fail(c->ctx, PP_ERR_INTERNAL, "%s: no transport", what);
#endif
}

pp_status comm_allreduce_mean(pp_comm *c, pp_devptr buf, size_t count)
{
    float *v = (float *)(uintptr_t)buf;
#ifdef PP_HAVE_MPI
    for (size_t done = 0; done < count;) {
        int n = count - done > (size_t)INT_MAX ? INT_MAX : (int)(count - done);
        int code = MPI_Allreduce(MPI_IN_PLACE, v + done, n, MPI_FLOAT, MPI_SUM, c->mpi);
        if (code != MPI_SUCCESS) return mpi_fail(c, code, "all-reduce of the gradients");
        done += (size_t)n;
    }
#endif
    const float world = (float)c->world;
    for (size_t i = 0; i < count; i++) v[i] /= world;
    return PP_OK;
}

pp_status comm_broadcast(pp_comm *c, pp_devptr buf, size_t count)
{
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

size_t comm_sync_scratch_bytes(int world, size_t floats, int on_device)
{
    return on_device ? (size_t)world * floats * sizeof(float) : 0;
}

pp_status comm_sync_partials(pp_comm *c, int kind, pp_devptr buf, int parts, int channels, int shift)
{
    float *v = (float *)(uintptr_t)buf;
    const size_t pc = (size_t)parts * (size_t)channels;
    const size_t floats = kind == SYNC_BN_STATS ? pc * 3 + (shift ? (size_t)channels : 0) : pc * 2;
    PP_TRY(allgather(c, v, floats, kind == SYNC_BN_STATS ? "gather of BN statistics" : "gather of BN gradient sums"));
    const float *g = c->gathered;
    if (kind == SYNC_BN_SUMS) {
        for (size_t i = 0; i < floats; i++) {
            double sum = 0;
            for (int r = 0; r < c->world; r++) sum += g[(size_t)r * floats + i];
            v[i] = (float)sum;
        }
        return PP_OK;
    }
    /* Chan's merge, part by part, of the ranks' (count, mean, M2) in rank order; with
     * shifts, each rank's means are first moved to rank 0's shift. */
    for (size_t pcx = 0; pcx < pc; pcx++) {
        const size_t c_index = pcx % (size_t)channels;
        double n = 0, mean = 0, m2 = 0;
        for (int r = 0; r < c->world; r++) {
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
    return PP_OK;
}

pp_status pp_comm_allreduce_sum(pp_comm *c, double *values, int count)
{
    if (!c || (count > 0 && !values) || count < 0) return PP_ERR_INVALID_ARGUMENT;
    /* Doubles travel as pairs of floats (a copy, bit for bit), and are added in rank order. */
    PP_TRY(allgather(c, values, (size_t)count * 2, "sum over the ranks"));
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
    PP_TRY(allgather(c, values, (size_t)count, "maximum over the ranks"));
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
