/* dp_check.c - data-parallel training through poolprop.h, the program the data-parallel
 * tests run (tests/network/test_data_parallel.sh): cifar_resnet8 (16x16 images, policy 2)
 * trains STEPS SGD steps on a fixed, deterministic global batch of GLOBAL images, each rank
 * taking its contiguous share (rank r: images [r*G/W, (r+1)*G/W)). Without mpirun it runs as
 * one process on the whole batch, with no communicator.
 *   dp_check [--sync-bn] OUT        rank 0 writes OUT: the global loss of every step, then
 *                                   every parameter and BN statistic after the last step
 *                                   (text, %a, one per line)
 * Each step the ranks compare a hash of all their parameters and statistics, and rank 0
 * writes "identical <step> <0|1>", which the test checks without --sync-bn.
 * DP_CHECK_DIE=R:S makes rank R exit with status 3 before step S (a rank that dies). */
#include "test_util.h"

#include <math.h>
#include <unistd.h>

enum {
    GLOBAL = 32,
    STEPS = 5,
    SIZE = 16
};

/* The global batch: images in [-1, 1) from a fixed LCG, labels i*7 % 10. */
static void global_batch(float *x, int32_t *labels)
{
    uint32_t state = 12345;
    for (size_t i = 0; i < (size_t)GLOBAL * 3 * SIZE * SIZE; i++) x[i] = test_lcg_signed(&state);
    for (int i = 0; i < GLOBAL; i++) labels[i] = (i * 7) % 10;
}

/* Every parameter (and, with statistics, every BN statistic) of m, in state_dict order,
 * into *values (malloc'ed). */
static size_t read_all(pp_context *ctx, pp_model *m, int statistics, float **values)
{
    int count;
    CHECK_OK(ctx, pp_model_param_count(m, &count));
    size_t total = 0;
    for (int i = 0; i < count; i++) {
        pp_param_info info;
        CHECK_OK(ctx, pp_model_param_info(m, i, &info));
        if (statistics || !info.is_statistic) total += info.count;
    }
    *values = test_xmalloc(total * sizeof **values);
    size_t at = 0;
    for (int i = 0; i < count; i++) {
        pp_param_info info;
        CHECK_OK(ctx, pp_model_param_info(m, i, &info));
        if (!statistics && info.is_statistic) continue;
        CHECK_OK(ctx, pp_model_param_read(m, info.key, *values + at, info.count));
        at += info.count;
    }
    return total;
}

int main(int argc, char **argv)
{
    int sync_bn = argc > 2 && strcmp(argv[1], "--sync-bn") == 0;
    const char *out_path = argv[argc - 1];
    CHECK(argc >= 2, "usage: dp_check [--sync-bn] OUT");
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_HOST;
    o.host_threads = 1;
    pp_context *ctx = NULL;
    CHECK_OK(ctx, pp_context_create(&o, &ctx));
    /* Under mpirun (Open MPI sets OMPI_COMM_WORLD_SIZE) a communicator; alone, none. */
    pp_comm *comm = NULL;
    int rank = 0, world = 1;
    if (getenv("OMPI_COMM_WORLD_SIZE")) {
        pp_comm_options co;
        pp_comm_options_init(&co);
        CHECK_OK(ctx, pp_comm_create(ctx, &co, &comm));
        CHECK_OK(ctx, pp_comm_rank(comm, &rank, &world));
    }
    CHECK(GLOBAL % world == 0, "world size %d does not divide %d", world, GLOBAL);
    const int local = GLOBAL / world;
    pp_model_options mo;
    pp_model_options_init(&mo);
    mo.model = "cifar_resnet8", mo.policy = "2", mo.batch = local, mo.height = mo.width = SIZE, mo.classes = 10;
    mo.comm = comm, mo.sync_bn = sync_bn;
    pp_model *m;
    CHECK_OK(ctx, pp_model_create(ctx, &mo, &m));
    CHECK_OK(ctx, pp_model_init_params(m, 7));
    float *x = test_xmalloc((size_t)GLOBAL * 3 * SIZE * SIZE * sizeof *x);
    int32_t labels[GLOBAL];
    global_batch(x, labels);
    const size_t image = (size_t)3 * SIZE * SIZE;
    CHECK_OK(ctx, pp_model_set_batch(m, x + (size_t)rank * local * image, labels + rank * local));
    FILE *out = rank == 0 ? fopen(out_path, "w") : NULL;
    CHECK(rank != 0 || out, "cannot write %s", out_path);
    pp_sgd_options sgd = {0.05f, 0.9f, 5e-4f};
    int die_rank = -1, die_step = -1;
    if (getenv("DP_CHECK_DIE")) sscanf(getenv("DP_CHECK_DIE"), "%d:%d", &die_rank, &die_step);
    for (int step = 0; step < STEPS; step++) {
        if (rank == die_rank && step == die_step) {
            fprintf(stderr, "dp_check: rank %d stops before step %d (DP_CHECK_DIE)\n", rank, step);
            _exit(3);
        }
        float loss;
        CHECK_OK(ctx, pp_model_set_batch(m, x + (size_t)rank * local * image, labels + rank * local));
        CHECK_OK(ctx, pp_model_train_step(m, &sgd, &loss));
        double global_loss = loss;
        if (comm) {
            CHECK_OK(ctx, pp_comm_allreduce_sum(comm, &global_loss, 1));
            global_loss /= world;
        }
        CHECK(isfinite(global_loss), "step %d: loss %g", step, global_loss);
        if (out) fprintf(out, "loss %d %a\n", step, global_loss);
        if (comm) {
            /* The ranks' trainable parameters (without synchronised BN the BN statistics are
             * each rank's own until pp_model_sync_statistics) agree bit for bit when a 62-bit
             * FNV-1a hash of them does:
             * its two 31-bit halves have the same maximum and minimum over the ranks. */
            float *mine;
            size_t n = read_all(ctx, m, 0, &mine);
            uint64_t h = 1469598103934665603ull;
            for (size_t i = 0; i < n; i++) {
                uint32_t bits;
                memcpy(&bits, &mine[i], 4);
                h = (h ^ bits) * 1099511628211ull;
            }
            int halves[4] = {(int)(h & 0x7fffffff), (int)((h >> 31) & 0x7fffffff), 0, 0};
            halves[2] = -halves[0], halves[3] = -halves[1];
            CHECK_OK(ctx, pp_comm_allreduce_max(comm, halves, 4));
            int differs = halves[0] != -halves[2] || halves[1] != -halves[3];
            if (out) fprintf(out, "identical %d %d\n", step, !differs);
            free(mine);
        }
    }
    if (out) {
        float *values;
        size_t n = read_all(ctx, m, 1, &values);
        for (size_t i = 0; i < n; i++) fprintf(out, "%a\n", values[i]);
        free(values);
        CHECK(fclose(out) == 0, "writing %s", out_path);
    }
    free(x);
    pp_model_destroy(m);
    pp_comm_destroy(comm);
    pp_context_destroy(ctx);
    return 0;
}
