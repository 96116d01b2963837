/* train.c - `poolprop train`: SGD training of a model on a dataset (cli/data.c) with a
 * pooling policy, progress on the terminal, a CSV log of every epoch, checkpoints that
 * resume exactly, and a clean stop on Ctrl-C (after writing a checkpoint).
 * Exactness of resume: the data order and augmentation are functions of (seed, epoch,
 * index) alone, and a checkpoint holds the parameters, BN statistics, momentum and the
 * position (epoch, next batch, the epoch's running sums as hex floats), so a resumed run
 * computes the same numbers as an uninterrupted one. A checkpoint also holds the FNV-1a-64
 * of the model and policy files it was made with: --resume with a changed file is an error.
 * The CSV log is held in memory and rewritten whole (a temporary renamed over it, outfile.h)
 * after every epoch, so it is never left truncated; a failed write stops the run with an
 * error and leaves the log of the epochs before.
 * Data parallel (under mpirun, or --rank/--world-size/--rendezvous on GPUs): --batch is the
 * global batch; rank r trains on images [r*B/W, (r+1)*B/W) of every global batch (the same
 * batches as one process, so the union of the ranks' is the global batch), the runtime
 * averages the gradients, and the ranks agree on the loss, the accuracy and when to stop
 * (one small all-reduce per step). Rank 0 alone prints, logs and writes checkpoints; at the
 * end of every epoch the ranks take rank 0's BN statistics (PyTorch DDP's buffer broadcast)
 * before validation, which each rank runs on its share of every batch. */
#include "train.h"

#include "checkpoint.h"
#include "data.h"
#include "options.h"
#include "outfile.h"
#include "poolprop.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static double now_s(void) { return cli_now_ms() / 1000.0; }

typedef struct settings {
    const char *model, *data, *policy, *log, *checkpoint, *resume;
    int epochs, batch, height, width, max_steps;
    double lr, momentum, weight_decay, warmup;
    int cosine;
    pp_backend backend;
    unsigned long seed;
    int train_size, val_size;
    char model_hash[32], policy_hash[32]; /* "fnv1a64:<hex>" of a model/policy file, "-" for a name */
    int sync_bn;
    int rank, world_size;   /* --rank, --world-size (-1: from MPI where launched by mpirun) */
    const char *rendezvous; /* --rendezvous file:PATH (NCCL without MPI) */
    int world;              /* ranks of the run: 1 for one process */
} settings;

/* The learning rate at global step t of total: linear warm-up from 0, then cosine decay to
 * 0 or steps of 0.1 at 50% and 75% of the run. */
static double learning_rate(const settings *s, long t, long total, long warmup_steps)
{
    if (warmup_steps > 0 && t < warmup_steps) return s->lr * (t + 1) / warmup_steps;
    double progress = total > warmup_steps ? (double)(t - warmup_steps) / (double)(total - warmup_steps) : 0;
    if (s->cosine) return s->lr * 0.5 * (1 + cos(3.14159265358979323846 * progress));
    return s->lr * (progress >= 0.75 ? 0.01 : progress >= 0.5 ? 0.1 : 1.0);
}

/* Position and running sums of the epoch in progress. */
typedef struct progress {
    int epoch, next_batch;
    long step;          /* global steps done */
    double loss_sum;    /* sum of step losses this epoch */
    long correct, seen; /* training predictions this epoch */
    double seconds;     /* time spent in this epoch before a resume */
} progress;

static void settings_text(const settings *s, const progress *p, char *out, size_t len)
{
    snprintf(out, len,
             "format=poolprop-checkpoint-1\nmodel=%s\ndata=%s\npolicy=%s\nbatch=%d\nheight=%d\nwidth=%d\nseed=%lu\n"
             "lr=%a\nmomentum=%a\nweight_decay=%a\nwarmup=%a\nschedule=%s\nepochs=%d\nmax_steps=%d\ntrain_size=%d\n"
             "val_size=%d\nepoch=%d\nnext_batch=%d\nstep=%ld\nloss_sum=%a\ncorrect=%ld\nseen=%ld\nseconds=%a\n"
             "model_hash=%s\npolicy_hash=%s\nworld_size=%d\nsync_bn=%d\n",
             s->model, s->data, s->policy, s->batch, s->height, s->width, s->seed, s->lr, s->momentum, s->weight_decay,
             s->warmup, s->cosine ? "cosine" : "step", s->epochs, s->max_steps, s->train_size, s->val_size, p->epoch,
             p->next_batch, p->step, p->loss_sum, p->correct, p->seen, p->seconds, s->model_hash, s->policy_hash,
             s->world, s->sync_bn);
}

/* Checks that a checkpoint belongs to this run's settings (all but epochs may not change). */
static int resume_from(const checkpoint *c, const settings *s, progress *p)
{
    char expect[CHECKPOINT_TEXT_MAX], buf[512], want[512];
    progress zero = {0};
    settings_text(s, &zero, expect, sizeof expect);
    const char *keys[] = {"model",     "data",       "policy",   "batch",        "height",     "width",
                          "seed",      "lr",         "momentum", "weight_decay", "warmup",     "schedule",
                          "max_steps", "train_size", "val_size", "model_hash",   "policy_hash"};
    checkpoint mine;
    memcpy(mine.text, expect, sizeof mine.text);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *have = checkpoint_get(c, keys[i], buf, sizeof buf);
        checkpoint_get(&mine, keys[i], want, sizeof want);
        if (i == 0) {
            /* A checkpoint from before data parallelism has neither key: one process. */
            const char *world = checkpoint_get(c, "world_size", buf, sizeof buf);
            int made_with = world ? atoi(world) : 1;
            if (made_with != s->world)
                return cli_fail("--resume: the checkpoint was made by %d rank%s and this run has %d: resume with "
                                "the same number of ranks (the data each rank trains on, and the BN statistics "
                                "without --sync-bn, depend on it)",
                                made_with, made_with == 1 ? "" : "s", s->world);
            const char *sync = checkpoint_get(c, "sync_bn", buf, sizeof buf);
            if ((sync ? atoi(sync) : 0) != s->sync_bn)
                return cli_fail("--resume: the checkpoint was made %s --sync-bn, this run %s it",
                                s->sync_bn ? "without" : "with", s->sync_bn ? "has" : "lacks");
            have = checkpoint_get(c, keys[i], buf, sizeof buf);
        }
        if (have && strcmp(have, want) != 0 && strcmp(keys[i], "model_hash") == 0)
            return cli_fail("--resume: the model file %s has changed since the checkpoint was made (its contents "
                            "hash to %s, the checkpoint's to %s)",
                            s->model, want, have);
        if (have && strcmp(have, want) != 0 && strcmp(keys[i], "policy_hash") == 0)
            return cli_fail("--resume: the policy file %s has changed since the checkpoint was made (its contents "
                            "hash to %s, the checkpoint's to %s)",
                            s->policy, want, have);
        if (!have || strcmp(have, want) != 0) {
            /* Numbers are stored as hex floats for exactness; show them in decimal. */
            char *end_a, *end_b;
            double a = have ? strtod(have, &end_a) : 0, b = strtod(want, &end_b);
            if (have && *have && !*end_a && *want && !*end_b)
                return cli_fail("--resume: the checkpoint was made with %s=%.9g, this run has %s=%.9g", keys[i], a,
                                keys[i], b);
            return cli_fail("--resume: the checkpoint was made with %s=%s, this run has %s=%s", keys[i],
                            have ? have : "?", keys[i], want);
        }
    }
    const char *v;
    if (!(v = checkpoint_get(c, "epoch", buf, sizeof buf))) return cli_fail("--resume: checkpoint lacks its epoch");
    p->epoch = atoi(v);
    p->next_batch = atoi(checkpoint_get(c, "next_batch", buf, sizeof buf) ? buf : "0");
    p->step = atol(checkpoint_get(c, "step", buf, sizeof buf) ? buf : "0");
    p->loss_sum = strtod(checkpoint_get(c, "loss_sum", buf, sizeof buf) ? buf : "0", NULL);
    p->correct = atol(checkpoint_get(c, "correct", buf, sizeof buf) ? buf : "0");
    p->seen = atol(checkpoint_get(c, "seen", buf, sizeof buf) ? buf : "0");
    p->seconds = strtod(checkpoint_get(c, "seconds", buf, sizeof buf) ? buf : "0", NULL);
    return 0;
}

static void print_progress(int tty, const settings *s, const progress *p, int batches, double rate, double eta)
{
    double loss = p->seen ? p->loss_sum / ((double)p->seen / s->batch) : NAN;
    if (tty) {
        printf("\r  epoch %d/%d  step %d/%d  %.1f img/s  loss %.4f  acc %.3f  ETA %d:%02d   ", p->epoch + 1, s->epochs,
               p->next_batch, batches, rate, loss, p->seen ? (double)p->correct / p->seen : 0.0, (int)eta / 60,
               (int)eta % 60);
    } else {
        printf("epoch %d/%d step %d/%d %.1f img/s loss %.4f acc %.3f eta %.0fs\n", p->epoch + 1, s->epochs,
               p->next_batch, batches, rate, loss, p->seen ? (double)p->correct / p->seen : 0.0, eta);
    }
    fflush(stdout);
}

/* What validation needs of a run: the model, this rank's share of a global batch. */
typedef struct shard {
    pp_context *ctx;
    pp_model *m;
    pp_comm *comm;          /* NULL for one process */
    int rank, world, local; /* local = the global batch / world */
    size_t image;           /* floats per image */
} shard;

/* Validation: mean cross-entropy and accuracy over the whole val split, each rank
 * evaluating its share of every batch, the sums added over the ranks. */
static int validate(const shard *sh, dataset *ds, const settings *s, int epoch, float *x, int32_t *labels,
                    float *logits, double *loss_out, double *acc_out)
{
    int batches = data_batches(ds, DATA_VAL, s->batch);
    double sums[3] = {0, 0, 0}; /* loss, correct, count */
    for (int b = 0; b < batches && !interrupted; b++) {
        char err[512];
        int real = data_batch(ds, DATA_VAL, epoch, b, s->batch, x, labels, err, sizeof err);
        if (real < 0) return cli_fail("%s", err);
        const int first = sh->rank * sh->local;
        if (pp_model_infer(sh->m, x + (size_t)first * sh->image, logits) != PP_OK)
            return cli_fail("%s", pp_last_error(sh->ctx));
        for (int n = 0; n < sh->local && first + n < real; n++) {
            const float *z = logits + (size_t)n * 10;
            const int label = labels[first + n];
            int top = 0;
            double mx = z[0], sum = 0;
            for (int j = 1; j < 10; j++)
                if (z[j] > mx) mx = z[j], top = j;
            for (int j = 0; j < 10; j++) sum += exp(z[j] - mx);
            sums[0] += log(sum) + mx - z[label];
            sums[1] += top == label;
            sums[2] += 1;
        }
    }
    if (sh->comm && pp_comm_allreduce_sum(sh->comm, sums, 3) != PP_OK) return cli_fail("%s", pp_last_error(sh->ctx));
    *loss_out = sums[2] > 0 ? sums[0] / sums[2] : NAN;
    *acc_out = sums[2] > 0 ? sums[1] / sums[2] : NAN;
    return 0;
}

/* The CSV log, held whole in memory and rewritten atomically after every epoch. */
typedef struct train_log {
    const char *path; /* NULL: no --log */
    char *text;
    size_t len, cap;
} train_log;

#define TRAIN_LOG_MAX ((size_t)64 << 20) /* a log is one row per epoch; a longer file is not ours */

static int log_append(train_log *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int log_append(train_log *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return cli_fail("--log: cannot format a row");
    if (l->len + (size_t)n + 1 > l->cap) {
        size_t cap = (l->cap ? 2 * l->cap : 4096) + (size_t)n + 1;
        char *t = realloc(l->text, cap);
        if (!t) return cli_fail("out of memory");
        l->text = t, l->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(l->text + l->len, l->cap - l->len, fmt, ap);
    va_end(ap);
    l->len += (size_t)n;
    return 0;
}

/* The log of the run being resumed, as it is on disk (at most TRAIN_LOG_MAX bytes). */
static int log_read_existing(train_log *l, int *found)
{
    *found = 0;
    FILE *f = fopen(l->path, "rb");
    if (!f) return errno == ENOENT ? 0 : cli_fail("--log: cannot read %s: %s", l->path, strerror(errno));
    char buf[1 << 16];
    size_t got;
    int rc = 0;
    while (!rc && (got = fread(buf, 1, sizeof buf, f)) > 0) {
        if (l->len + got > TRAIN_LOG_MAX)
            rc = cli_fail("--log: %s is larger than the limit of %zu bytes for a training log", l->path, TRAIN_LOG_MAX);
        else
            rc = log_append(l, "%.*s", (int)got, buf);
    }
    if (!rc && ferror(f)) rc = cli_fail("--log: cannot read %s: %s", l->path, strerror(errno));
    fclose(f);
    *found = !rc;
    return rc;
}

static int log_write(train_log *l) { return l->path ? outfile_write(l->path, l->text, l->len) : 0; }

/* Starts the log: its header, or on resume the existing log (a new header if it is gone). */
static int log_open(train_log *l, const settings *s, const pp_memory_report *r, size_t baseline_peak, int resume)
{
    memset(l, 0, sizeof *l);
    l->path = s->log;
    if (!l->path) return 0;
    int found = 0;
    if (resume && log_read_existing(l, &found)) return 1;
    if (!found && (log_append(l,
                              "# poolprop train log\n# model: %s\n# policy: %s\n# data: %s\n# batch: %d\n"
                              "# image: %dx%d\n# peak_bytes: %zu\n# baseline_peak_bytes: %zu\n",
                              s->model, s->policy, s->data, s->batch, r->height, r->width, r->peak, baseline_peak) ||
                   log_append(l, "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds,peak_bytes\n")))
        return 1;
    if (found && l->len && l->text[l->len - 1] != '\n' && log_append(l, "\n")) return 1;
    return log_write(l);
}

static void log_close(train_log *l)
{
    free(l->text);
    memset(l, 0, sizeof *l);
}

/* Reads the command line into s; non-zero after printing the problem. */
static int parse(int argc, char **argv, settings *s)
{
    cli_option o[] = {{"data", 0, 0, 0},       {"policy", 0, 0, 0},    {"epochs", 0, 0, 0},       {"batch", 0, 0, 0},
                      {"lr", 0, 0, 0},         {"momentum", 0, 0, 0},  {"weight-decay", 0, 0, 0}, {"schedule", 0, 0, 0},
                      {"warmup", 0, 0, 0},     {"backend", 0, 0, 0},   {"seed", 0, 0, 0},         {"log", 0, 0, 0},
                      {"checkpoint", 0, 0, 0}, {"resume", 0, 0, 0},    {"image", 0, 0, 0},        {"steps", 0, 0, 0},
                      {"train-size", 0, 0, 0}, {"val-size", 0, 0, 0},  {"sync-bn", 0, 1, 0},      {"rank", 0, 0, 0},
                      {"world-size", 0, 0, 0}, {"rendezvous", 0, 0, 0}};
    int n = sizeof o / sizeof o[0];
    if (cli_parse_options(argc, argv, o, n, &s->model)) return 1;
    const char *v;
    if ((v = cli_opt(o, n, "data"))) s->data = v;
    if ((v = cli_opt(o, n, "policy"))) s->policy = v;
    if ((v = cli_opt(o, n, "epochs")) && cli_parse_int("epochs", v, 1, 100000, &s->epochs)) return 1;
    if ((v = cli_opt(o, n, "batch")) && cli_parse_int("batch", v, 1, 4096, &s->batch)) return 1;
    if ((v = cli_opt(o, n, "lr")) && cli_parse_double("lr", v, 0, 100, &s->lr)) return 1;
    if ((v = cli_opt(o, n, "momentum")) && cli_parse_double("momentum", v, 0, 1, &s->momentum)) return 1;
    if ((v = cli_opt(o, n, "weight-decay")) && cli_parse_double("weight-decay", v, 0, 1, &s->weight_decay)) return 1;
    if ((v = cli_opt(o, n, "warmup")) && cli_parse_double("warmup", v, 0, 100000, &s->warmup)) return 1;
    if ((v = cli_opt(o, n, "schedule"))) {
        if (strcmp(v, "cosine") == 0)
            s->cosine = 1;
        else if (strcmp(v, "step") == 0)
            s->cosine = 0;
        else
            return cli_fail("--schedule: expected step or cosine, got '%s'", v);
    }
    if (cli_parse_backend(cli_opt(o, n, "backend"), &s->backend)) return 1;
    int seed = 1;
    if ((v = cli_opt(o, n, "seed")) && cli_parse_int("seed", v, 0, 2147483647, &seed)) return 1;
    s->seed = (unsigned long)seed;
    s->log = cli_opt(o, n, "log");
    s->checkpoint = cli_opt(o, n, "checkpoint");
    s->resume = cli_opt(o, n, "resume");
    if ((v = cli_opt(o, n, "image")) && cli_parse_image(v, &s->height, &s->width)) return 1;
    if ((v = cli_opt(o, n, "steps")) && cli_parse_int("steps", v, 1, 1 << 30, &s->max_steps)) return 1;
    if ((v = cli_opt(o, n, "train-size")) && cli_parse_int("train-size", v, 1, 1 << 30, &s->train_size)) return 1;
    if ((v = cli_opt(o, n, "val-size")) && cli_parse_int("val-size", v, 1, 1 << 30, &s->val_size)) return 1;
    s->sync_bn = cli_opt(o, n, "sync-bn") != NULL;
    if ((v = cli_opt(o, n, "rank")) && cli_parse_int("rank", v, 0, 1 << 20, &s->rank)) return 1;
    if ((v = cli_opt(o, n, "world-size")) && cli_parse_int("world-size", v, 1, 1 << 20, &s->world_size)) return 1;
    s->rendezvous = cli_opt(o, n, "rendezvous");
    if ((s->rank >= 0) != (s->world_size >= 0))
        return cli_fail("--rank and --world-size go together (or neither, under mpirun)");
    if (s->rank >= 0 && s->rank >= s->world_size)
        return cli_fail("--rank %d is not below --world-size %d", s->rank, s->world_size);
    if (s->rendezvous && s->rank < 0) return cli_fail("--rendezvous needs --rank and --world-size");
    if (!s->model) return cli_fail("train: which model? e.g. poolprop train cifar_resnet20 --data synthetic");
    return 0;
}

/* The next training batch, made on a thread of its own while the current step runs: the
 * images are a pure function of (epoch, batch index), so they are the same either way.
 * Only within an epoch: validation and the next epoch's order use the data set after the
 * last step, with no batch in flight. */
typedef struct prefetch {
    dataset *ds;
    int epoch, index, batch;
    float *x; /* the spare batch buffers, swapped with the run's when taken */
    int32_t *labels;
    pthread_t thread;
    int running; /* a thread is making (epoch, index) */
    int rc;      /* data_batch's result once joined */
    char err[512];
} prefetch;

static void *prefetch_main(void *arg)
{
    prefetch *f = arg;
    f->rc = data_batch(f->ds, DATA_TRAIN, f->epoch, f->index, f->batch, f->x, f->labels, f->err, sizeof f->err);
    return NULL;
}

/* Starts making batch (epoch, index) into the spare buffers; without a thread, nothing. */
static void prefetch_start(prefetch *f, int epoch, int index)
{
    f->epoch = epoch, f->index = index;
    f->running = pthread_create(&f->thread, NULL, prefetch_main, f) == 0;
}

/* Waits for the batch in flight; 1 when it is (epoch, index) and was made, else 0. */
static int prefetch_finish(prefetch *f, int epoch, int index)
{
    if (!f->running) return 0;
    pthread_join(f->thread, NULL);
    f->running = 0;
    return f->epoch == epoch && f->index == index && f->rc >= 0;
}

/* Everything a run holds; released by run_close. */
typedef struct run {
    settings s;
    pp_context *ctx;
    pp_comm *comm; /* data parallel, else NULL */
    dataset *ds;
    pp_model *m;
    pp_memory_report report, baseline;
    int batches;
    float *x, *logits; /* x: a global batch; logits: this rank's share */
    int32_t *labels;
    prefetch next; /* the batch after the current one, and the spare buffers */
    train_log log;
    progress p;
    shard sh;
    checkpoint resume; /* --resume's, read and checked before the model is built */
    int resuming;
} run;

/* The ranks of a job launched by mpirun (Open MPI's, or a PMI launcher's variable), or 1. */
static int launcher_world_size(void)
{
    const char *names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = getenv(names[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return 1;
}

/* The communicator of a data-parallel run, or none for one process. */
static int open_comm(run *r)
{
    settings *s = &r->s;
    int launched = launcher_world_size();
    s->world = s->world_size > 0 ? s->world_size : launched;
    r->sh.rank = 0, r->sh.world = s->world;
    /* An explicit --world-size 1 still makes a communicator: the NCCL path of one GPU. */
    if (s->world == 1 && s->world_size < 0) {
        if (s->sync_bn) printf("note: --sync-bn with one process changes nothing\n");
        return 0;
    }
    pp_comm_options co;
    pp_comm_options_init(&co);
    co.rank = s->rank, co.world_size = s->world_size, co.rendezvous = s->rendezvous;
    if (pp_comm_create(r->ctx, &co, &r->comm) != PP_OK) return cli_fail("%s", pp_last_error(r->ctx));
    if (pp_comm_rank(r->comm, &r->sh.rank, &r->sh.world) != PP_OK) return cli_fail("%s", pp_last_error(r->ctx));
    s->world = r->sh.world;
    if (s->batch % s->world != 0)
        return cli_fail("--batch %d does not divide among %d ranks: give a global batch that is a multiple of %d",
                        s->batch, s->world, s->world);
    return 0;
}

/* "fnv1a64:<hex>" of arg's file when it names one (is_file), else "-": the name or policy
 * string itself is compared on resume. */
static int source_hash(const char *what, const char *arg, int is_file, char *out, size_t len)
{
    snprintf(out, len, "-");
    if (!is_file) return 0;
    uint64_t h;
    char err[1024];
    if (checkpoint_hash_file(arg, (uint64_t)64 << 20, &h, err, sizeof err)) return cli_fail("%s: %s", what, err);
    snprintf(out, len, "fnv1a64:%016llx", (unsigned long long)h);
    return 0;
}

static int ends_with_lua(const char *s)
{
    size_t n = strlen(s);
    return n > 4 && strcmp(s + n - 4, ".lua") == 0;
}

/* The context, the model and the data, in the order that fails cheapest first: the plan
 * (shapes and 32-bit limits, no allocation), the data set, then the model (device memory
 * against the plan), and only then the input batch. */
static int run_open(run *r)
{
    settings *s = &r->s;
    /* The model and policy files as the runtime reads them: a model is a file when its name
     * has a '/' or ends in .lua; a policy when it ends in .lua. */
    if (source_hash("model", s->model, strchr(s->model, '/') || ends_with_lua(s->model), s->model_hash,
                    sizeof s->model_hash) ||
        source_hash("--policy", s->policy, ends_with_lua(s->policy), s->policy_hash, sizeof s->policy_hash))
        return 1;
    pp_context_options co;
    pp_context_options_init(&co);
    co.log = cli_log_to_stderr;
    co.backend = s->backend;
    if (!(r->ctx = cli_context(&co))) return 1;
    if (open_comm(r)) return 1;
    /* A checkpoint that does not belong to this run is refused before anything is built. */
    if (s->resume) {
        char err[1024];
        if (checkpoint_load(r->ctx, s->resume, &r->resume, err, sizeof err)) return cli_fail("--resume: %s", err);
        r->resuming = 1;
        if (resume_from(&r->resume, s, &r->p)) return 1;
    }
    pp_model_options mo;
    pp_model_options_init(&mo);
    mo.model = s->model, mo.policy = s->policy, mo.batch = s->batch / s->world, mo.height = s->height;
    mo.width = s->width, mo.classes = 10;
    mo.comm = r->comm, mo.sync_bn = s->sync_bn, mo.world_size = s->world;
    pp_model_options base = mo;
    if (pp_plan_memory(r->ctx, &mo, &r->report) != PP_OK) return cli_fail("%s", pp_last_error(r->ctx));
    base.policy = r->report.baseline_policy;
    if (pp_plan_memory(r->ctx, &base, &r->baseline) != PP_OK) return cli_fail("%s", pp_last_error(r->ctx));

    char err[1024];
    data_options dopt;
    data_options_init(&dopt);
    dopt.height = s->height, dopt.width = s->width, dopt.seed = s->seed;
    if (s->train_size) dopt.train_size = s->train_size;
    if (s->val_size) dopt.val_size = s->val_size;
    if (data_open(s->data, &dopt, &r->ds, err, sizeof err)) return cli_fail("--data: %s", err);
    r->batches = data_batches(r->ds, DATA_TRAIN, s->batch);
    if (s->max_steps > 0 && s->max_steps < r->batches) r->batches = s->max_steps;
    if (r->batches < 1) return cli_fail("--batch %d: the training split has fewer images than one batch", s->batch);

    if (pp_model_create(r->ctx, &mo, &r->m) != PP_OK || pp_model_memory_report(r->m, &r->report) != PP_OK)
        return cli_fail("%s", pp_last_error(r->ctx));
    r->sh.ctx = r->ctx, r->sh.m = r->m, r->sh.comm = r->comm, r->sh.local = mo.batch;
    r->sh.image = (size_t)3 * (size_t)s->height * (size_t)s->width;

    /* (batch, 3, H, W) float32 images, (batch) labels, (batch, 10) logits: sizes checked
     * against overflow, allocations against failure. */
    size_t pixels = (size_t)s->height * (size_t)s->width; /* <= 2^32 (cli_parse_image) */
    size_t images = (size_t)s->batch * 3;
    if (pixels > SIZE_MAX / sizeof *r->x / images)
        return cli_fail("--batch %d --image %dx%d: the input batch is too large to address", s->batch, s->height,
                        s->width);
    size_t bytes = images * pixels * sizeof *r->x;
    r->x = malloc(bytes);
    r->labels = malloc((size_t)s->batch * sizeof *r->labels);
    r->next.x = malloc(bytes);
    r->next.labels = malloc((size_t)s->batch * sizeof *r->next.labels);
    r->next.ds = r->ds, r->next.batch = s->batch;
    r->logits = malloc((size_t)r->sh.local * 10 * sizeof *r->logits);
    if (!r->x || !r->labels || !r->next.x || !r->next.labels || !r->logits)
        return cli_fail("out of memory: cannot allocate the input batches (2 x %zu bytes: %d x 3 x %d x %d float32)",
                        bytes, s->batch, s->height, s->width);
    return 0;
}

/* Restores the checkpoint of --resume (checked by run_open), or initialises the parameters. */
static int run_start(run *r)
{
    if (!r->s.resume) return pp_model_init_params(r->m, r->s.seed) != PP_OK ? cli_fail("%s", pp_last_error(r->ctx)) : 0;
    char err[1024];
    if (checkpoint_restore(r->m, &r->resume, err, sizeof err)) return cli_fail("--resume: %s", err);
    if (r->sh.rank == 0)
        printf("resuming from %s: epoch %d, batch %d (step %ld)\n", r->s.resume, r->p.epoch + 1, r->p.next_batch,
               r->p.step);
    return 0;
}

static int run_checkpoint(run *r, const progress *at)
{
    if (r->sh.rank != 0) return 0; /* one writer; every rank holds the same parameters */
    char text[CHECKPOINT_TEXT_MAX], err[1024];
    settings_text(&r->s, at, text, sizeof text);
    return checkpoint_save(r->ctx, r->m, r->s.checkpoint, text, err, sizeof err) ? cli_fail("%s", err) : 0;
}

/* Data parallel: whether any rank was interrupted becomes every rank's (a Ctrl-C seen by
 * one rank between two agreements). Non-zero after printing a failure. */
static int agree_interrupted(run *r)
{
    if (!r->comm) return 0;
    int flag = interrupted ? 1 : 0;
    if (pp_comm_allreduce_max(r->comm, &flag, 1) != PP_OK) return cli_fail("%s", pp_last_error(r->ctx));
    if (flag) interrupted = 1;
    return 0;
}

/* The epochs; *stopped when Ctrl-C ended them early (the position is then in r->p). */
static int run_epochs(run *r, int *stopped)
{
    const settings *s = &r->s;
    progress *p = &r->p;
    char err[1024];
    int rc = 0, batches = r->batches;
    int tty = isatty(fileno(stdout));
    long total_steps = (long)s->epochs * batches;
    long warmup_steps = (long)(s->warmup * batches);
    const char *test_interrupt = getenv("POOLPROP_TEST_INTERRUPT_AFTER_STEPS");
    long interrupt_after = test_interrupt ? atol(test_interrupt) : -1;
    long steps_this_run = 0;
    *stopped = 0;
    for (; !rc && p->epoch < s->epochs; p->epoch++) {
        double epoch_start = now_s() - p->seconds;
        double run_start_s = now_s();
        long images_this_run = 0;
        /* Where this run's time goes, per batch: waiting for its images (made while the step
         * before ran), and the training step (upload, step, and the ranks' agreement). */
        double data_s = 0, step_s = 0;
        long timed_batches = 0;
        for (; !rc && p->next_batch < batches; p->next_batch++) {
            if (interrupted && !r->comm) break;
            double t0 = now_s();
            if (prefetch_finish(&r->next, p->epoch, p->next_batch)) {
                float *x = r->x;
                int32_t *labels = r->labels;
                r->x = r->next.x, r->labels = r->next.labels;
                r->next.x = x, r->next.labels = labels;
            } else if (data_batch(r->ds, DATA_TRAIN, p->epoch, p->next_batch, s->batch, r->x, r->labels, err,
                                  sizeof err) < 0) {
                rc = cli_fail("%s", err);
                break;
            }
            if (p->next_batch + 1 < batches) prefetch_start(&r->next, p->epoch, p->next_batch + 1);
            pp_sgd_options sgd = {(float)learning_rate(s, p->step, total_steps, warmup_steps), (float)s->momentum,
                                  (float)s->weight_decay};
            float local_loss;
            int local_correct;
            const size_t first = (size_t)r->sh.rank * (size_t)r->sh.local;
            double t1 = now_s();
            if (pp_model_set_batch(r->m, r->x + first * r->sh.image, r->labels + first) != PP_OK ||
                pp_model_train_step(r->m, &sgd, &local_loss) != PP_OK ||
                pp_model_last_correct(r->m, &local_correct) != PP_OK) {
                rc = cli_fail("%s", pp_last_error(r->ctx));
                break;
            }
            /* The global batch's mean loss and correct count, and whether any rank was asked
             * to stop: every rank then stops after the same step. */
            double agreed[3] = {local_loss, local_correct, interrupted ? 1 : 0};
            if (r->comm && pp_comm_allreduce_sum(r->comm, agreed, 3) != PP_OK) {
                rc = cli_fail("%s", pp_last_error(r->ctx));
                break;
            }
            double t2 = now_s();
            step_s += t2 - t1, data_s += t1 - t0, timed_batches++;
            float loss = (float)(agreed[0] / s->world);
            int correct = (int)agreed[1];
            const int stop_agreed = r->comm && agreed[2] > 0;
            if (!isfinite(loss)) {
                rc = cli_fail("epoch %d step %d: the loss is %f (diverged: lower --lr)", p->epoch + 1,
                              p->next_batch + 1, loss);
                break;
            }
            p->loss_sum += loss;
            p->correct += correct;
            p->seen += s->batch;
            p->step++;
            images_this_run += s->batch;
            if (++steps_this_run == interrupt_after && r->sh.rank == 0) raise(SIGINT);
            if (stop_agreed) {
                interrupted = 1;
                p->next_batch++; /* this step is done on every rank */
                break;
            }
            double elapsed = now_s() - run_start_s;
            double rate = elapsed > 0 ? images_this_run / elapsed : 0;
            double eta = rate > 0 ? (double)(total_steps - p->step) * s->batch / rate : 0;
            int every = tty ? 1 : (batches >= 10 ? batches / 10 : 1);
            if (r->sh.rank == 0 && ((p->next_batch + 1) % every == 0 || p->next_batch + 1 == batches))
                print_progress(tty, s,
                               &(progress){p->epoch, p->next_batch + 1, p->step, p->loss_sum, p->correct, p->seen, 0},
                               batches, rate, eta);
        }
        prefetch_finish(&r->next, -1, -1); /* a batch in flight past a stop is not needed */
        if (rc || (rc = agree_interrupted(r))) break;
        if (interrupted) {
            p->seconds = now_s() - epoch_start;
            *stopped = 1;
            break;
        }
        double val_loss = NAN, val_acc = NAN;
        /* Every rank evaluates with rank 0's BN statistics (no-op for one process). */
        if (pp_model_sync_statistics(r->m) != PP_OK) {
            rc = cli_fail("%s", pp_last_error(r->ctx));
            break;
        }
        if (validate(&r->sh, r->ds, s, p->epoch, r->x, r->labels, r->logits, &val_loss, &val_acc) ||
            agree_interrupted(r)) {
            rc = 1;
            break;
        }
        if (interrupted) { /* validation is redone on resume: keep the position at the epoch end */
            p->seconds = now_s() - epoch_start;
            *stopped = 1;
            break;
        }
        double seconds = now_s() - epoch_start;
        double train_loss = p->loss_sum / batches, train_acc = (double)p->correct / p->seen;
        if (tty && r->sh.rank == 0) printf("\n");
        if (r->sh.rank == 0)
            printf("epoch %d: train loss %.4f acc %.4f, val loss %.4f acc %.4f, %.1f s (per batch: data wait %.1f ms, "
                   "step %.1f ms)\n",
                   p->epoch + 1, train_loss, train_acc, val_loss, val_acc, seconds,
                   timed_batches ? 1e3 * data_s / timed_batches : 0.0,
                   timed_batches ? 1e3 * step_s / timed_batches : 0.0);
        if (r->sh.rank == 0 && r->log.path &&
            (log_append(&r->log, "%d,%.6f,%.6f,%.6f,%.6f,%.2f,%zu\n", p->epoch + 1, train_loss, train_acc, val_loss,
                        val_acc, seconds, r->report.peak) ||
             log_write(&r->log))) {
            rc = 1;
            break;
        }
        p->next_batch = 0, p->loss_sum = 0, p->correct = 0, p->seen = 0, p->seconds = 0;
        if (s->checkpoint) {
            progress next = *p;
            next.epoch++;
            rc = run_checkpoint(r, &next);
        }
    }
    return rc;
}

static void run_close(run *r)
{
    if (r->resuming) checkpoint_free(&r->resume);
    log_close(&r->log);
    prefetch_finish(&r->next, -1, -1);
    free(r->x), free(r->labels), free(r->logits);
    free(r->next.x), free(r->next.labels);
    pp_model_destroy(r->m);
    pp_comm_destroy(r->comm);
    pp_context_destroy(r->ctx);
    data_close(r->ds);
}

int train_main(int argc, char **argv)
{
    run r = {0};
    settings *s = &r.s;
    s->data = "synthetic", s->policy = "1", s->epochs = 1, s->batch = 32, s->lr = 0.1, s->momentum = 0.9;
    s->weight_decay = 5e-4, s->cosine = 1, s->seed = 1, s->rank = -1, s->world_size = -1, s->world = 1;
    if (parse(argc, argv, s)) return 1;
    if (!s->height) s->height = s->width = 32;

    int rc = run_open(&r) || run_start(&r) ||
             (r.sh.rank == 0 && log_open(&r.log, s, &r.report, r.baseline.peak, s->resume != NULL));
    if (!rc && r.sh.rank == 0) {
        printf("poolprop train: %s on %s, policy %s, batch %d, %dx%d, %d epochs of %d steps, on %s\n"
               "planned peak %zu bytes (baseline %zu, %.1f%% less)\n",
               s->model, s->data, s->policy, s->batch, s->height, s->width, s->epochs, r.batches,
               pp_context_device_name(r.ctx), r.report.peak, r.baseline.peak,
               100.0 * (1.0 - (double)r.report.peak / (double)r.baseline.peak));
        if (r.comm)
            printf("data parallel: %d ranks of batch %d%s; planned peak per rank, communication %zu bytes\n", s->world,
                   r.sh.local, s->sync_bn ? ", synchronised BN" : ", BN per rank", r.report.communication);
    }
    void (*old_handler)(int) = signal(SIGINT, on_sigint);
    int stopped = 0;
    if (!rc) rc = run_epochs(&r, &stopped);
    if (!rc && stopped) {
        if (isatty(fileno(stdout)) && r.sh.rank == 0) printf("\n");
        if (s->checkpoint) {
            rc = run_checkpoint(&r, &r.p);
            if (!rc && r.sh.rank == 0)
                printf("interrupted: checkpoint written to %s (resume with --resume %s)\n", s->checkpoint,
                       s->checkpoint);
        } else if (r.sh.rank == 0) {
            printf("interrupted (no --checkpoint given, nothing saved)\n");
        }
        rc = rc ? rc : 130;
    }
    signal(SIGINT, old_handler);
    run_close(&r);
    return rc;
}
