/* train.c - `poolprop train`: SGD training of a model on a dataset (cli/data.c) with a
 * pooling policy, progress on the terminal, a CSV log of every epoch, checkpoints that
 * resume exactly, and a clean stop on Ctrl-C (after writing a checkpoint).
 * Exactness of resume: the data order and augmentation are functions of (seed, epoch,
 * index) alone, and a checkpoint holds the parameters, BN statistics, momentum and the
 * position (epoch, next batch, the epoch's running sums as hex floats), so a resumed run
 * computes the same numbers as an uninterrupted one. */
#include "train.h"

#include "checkpoint.h"
#include "data.h"
#include "options.h"
#include "poolprop.h"

#include <errno.h>
#include <math.h>
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
    const char *model, *data, *policy, *log, *checkpoint, *resume, *backend_name;
    int epochs, batch, height, width, max_steps;
    double lr, momentum, weight_decay, warmup;
    int cosine;
    unsigned long seed;
    int train_size, val_size;
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
    long step;           /* global steps done */
    double loss_sum;     /* sum of step losses this epoch */
    long correct, seen;  /* training predictions this epoch */
    double seconds;      /* time spent in this epoch before a resume */
} progress;

static void settings_text(const settings *s, const progress *p, char *out, size_t len)
{
    snprintf(out, len,
             "format=poolprop-checkpoint-1\nmodel=%s\ndata=%s\npolicy=%s\nbatch=%d\nheight=%d\nwidth=%d\nseed=%lu\n"
             "lr=%a\nmomentum=%a\nweight_decay=%a\nwarmup=%a\nschedule=%s\nepochs=%d\nmax_steps=%d\ntrain_size=%d\n"
             "val_size=%d\nepoch=%d\nnext_batch=%d\nstep=%ld\nloss_sum=%a\ncorrect=%ld\nseen=%ld\nseconds=%a\n",
             s->model, s->data, s->policy, s->batch, s->height, s->width, s->seed, s->lr, s->momentum, s->weight_decay,
             s->warmup, s->cosine ? "cosine" : "step", s->epochs, s->max_steps, s->train_size, s->val_size, p->epoch,
             p->next_batch, p->step, p->loss_sum, p->correct, p->seen, p->seconds);
}

/* Checks that a checkpoint belongs to this run's settings (all but epochs may not change). */
static int resume_from(const checkpoint *c, const settings *s, progress *p)
{
    char expect[CHECKPOINT_TEXT_MAX], buf[512], want[512];
    progress zero = {0};
    settings_text(s, &zero, expect, sizeof expect);
    const char *keys[] = {"model", "data", "policy", "batch", "height", "width", "seed", "lr", "momentum",
                          "weight_decay", "warmup", "schedule", "max_steps", "train_size", "val_size"};
    checkpoint mine;
    memcpy(mine.text, expect, sizeof mine.text);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *have = checkpoint_get(c, keys[i], buf, sizeof buf);
        checkpoint_get(&mine, keys[i], want, sizeof want);
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

/* Validation: mean cross-entropy and accuracy over the whole val split. */
static int validate(pp_context *ctx, pp_model *m, dataset *ds, const settings *s, int epoch, float *x, int32_t *labels,
                    float *logits, double *loss_out, double *acc_out)
{
    int batches = data_batches(ds, DATA_VAL, s->batch);
    double loss = 0;
    long correct = 0, count = 0;
    for (int b = 0; b < batches && !interrupted; b++) {
        char err[512];
        int real = data_batch(ds, DATA_VAL, epoch, b, s->batch, x, labels, err, sizeof err);
        if (real < 0) return cli_fail("%s", err);
        if (pp_model_infer(m, x, logits) != PP_OK) return cli_fail("%s", pp_last_error(ctx));
        for (int n = 0; n < real; n++) {
            const float *z = logits + (size_t)n * 10;
            int top = 0;
            double mx = z[0], sum = 0;
            for (int j = 1; j < 10; j++)
                if (z[j] > mx) mx = z[j], top = j;
            for (int j = 0; j < 10; j++) sum += exp(z[j] - mx);
            loss += log(sum) + mx - z[labels[n]];
            correct += top == labels[n];
            count++;
        }
    }
    *loss_out = count ? loss / count : NAN;
    *acc_out = count ? (double)correct / count : NAN;
    return 0;
}

static int open_log(const settings *s, const pp_memory_report *r, size_t baseline_peak, int append, FILE **out)
{
    *out = NULL;
    if (!s->log) return 0;
    FILE *f = fopen(s->log, append ? "a" : "w");
    if (!f) return cli_fail("--log: cannot write %s: %s", s->log, strerror(errno));
    if (!append) {
        fprintf(f, "# poolprop train log\n# model: %s\n# policy: %s\n# data: %s\n# batch: %d\n# image: %dx%d\n"
                   "# peak_bytes: %zu\n# baseline_peak_bytes: %zu\n",
                s->model, s->policy, s->data, s->batch, r->height, r->width, r->peak, baseline_peak);
        fprintf(f, "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds,peak_bytes\n");
        fflush(f);
    }
    *out = f;
    return 0;
}

/* Reads the command line into s; non-zero after printing the problem. */
static int parse(int argc, char **argv, settings *s)
{
    cli_option o[] = {{"data", 0, 0, 0},       {"policy", 0, 0, 0},      {"epochs", 0, 0, 0},  {"batch", 0, 0, 0},
                      {"lr", 0, 0, 0},         {"momentum", 0, 0, 0},    {"weight-decay", 0, 0, 0},
                      {"schedule", 0, 0, 0},   {"warmup", 0, 0, 0},      {"backend", 0, 0, 0}, {"seed", 0, 0, 0},
                      {"log", 0, 0, 0},        {"checkpoint", 0, 0, 0},  {"resume", 0, 0, 0},  {"image", 0, 0, 0},
                      {"steps", 0, 0, 0},      {"train-size", 0, 0, 0},  {"val-size", 0, 0, 0}};
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
        if (strcmp(v, "cosine") == 0) s->cosine = 1;
        else if (strcmp(v, "step") == 0) s->cosine = 0;
        else return cli_fail("--schedule: expected step or cosine, got '%s'", v);
    }
    s->backend_name = cli_opt(o, n, "backend");
    if (s->backend_name && strcmp(s->backend_name, "host") != 0 && strcmp(s->backend_name, "cuda") != 0)
        return cli_fail("--backend: expected host or cuda, got '%s'", s->backend_name);
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
    if (!s->model) return cli_fail("train: which model? e.g. poolprop train cifar_resnet20 --data synthetic");
    return 0;
}

int train_main(int argc, char **argv)
{
    settings s = {0};
    s.data = "synthetic", s.policy = "1", s.epochs = 1, s.batch = 32, s.lr = 0.1, s.momentum = 0.9;
    s.weight_decay = 5e-4, s.cosine = 1, s.seed = 1;
    if (parse(argc, argv, &s)) return 1;
    if (!s.height) s.height = s.width = 32;

    char err[1024];
    data_options dopt;
    data_options_init(&dopt);
    dopt.height = s.height, dopt.width = s.width, dopt.seed = s.seed;
    if (s.train_size) dopt.train_size = s.train_size;
    if (s.val_size) dopt.val_size = s.val_size;
    dataset *ds = NULL;
    if (data_open(s.data, &dopt, &ds, err, sizeof err)) return cli_fail("--data: %s", err);
    int batches = data_batches(ds, DATA_TRAIN, s.batch);
    if (s.max_steps > 0 && s.max_steps < batches) batches = s.max_steps;
    if (batches < 1) {
        data_close(ds);
        return cli_fail("--batch %d: the training split has fewer images than one batch", s.batch);
    }

    pp_context_options co;
    pp_context_options_init(&co);
    co.log = cli_log_to_stderr;
    co.backend = s.backend_name && strcmp(s.backend_name, "cuda") == 0 ? PP_BACKEND_CUDA : PP_BACKEND_HOST;
    pp_context *ctx = cli_context(&co);
    if (!ctx) {
        data_close(ds);
        return 1;
    }
    pp_model_options mo;
    pp_model_options_init(&mo);
    mo.model = s.model, mo.policy = s.policy, mo.batch = s.batch, mo.height = s.height, mo.width = s.width;
    mo.classes = 10;
    pp_model *m = NULL;
    pp_memory_report report;
    int rc = 0;
    if (pp_model_create(ctx, &mo, &m) != PP_OK || pp_model_memory_report(m, &report) != PP_OK)
        rc = cli_fail("%s", pp_last_error(ctx));
    progress p = {0};
    if (!rc && s.resume) {
        checkpoint c;
        if (checkpoint_load(ctx, s.resume, &c, err, sizeof err)) {
            rc = cli_fail("--resume: %s", err);
        } else {
            rc = resume_from(&c, &s, &p) || (checkpoint_restore(m, &c, err, sizeof err) && cli_fail("--resume: %s", err));
            checkpoint_free(&c);
        }
        if (!rc)
            printf("resuming from %s: epoch %d, batch %d (step %ld)\n", s.resume, p.epoch + 1, p.next_batch, p.step);
    } else if (!rc && pp_model_init_params(m, s.seed) != PP_OK) {
        rc = cli_fail("%s", pp_last_error(ctx));
    }
    FILE *log = NULL;
    pp_memory_report baseline = {0};
    pp_model_options base = mo;
    base.policy = rc ? "baseline" : report.baseline_policy;
    if (!rc && pp_plan_memory(ctx, &base, &baseline) != PP_OK) rc = cli_fail("%s", pp_last_error(ctx));
    if (!rc) rc = open_log(&s, &report, baseline.peak, s.resume != NULL, &log);
    float *x = malloc((size_t)s.batch * 3 * s.height * s.width * sizeof *x);
    int32_t *labels = malloc((size_t)s.batch * sizeof *labels);
    float *logits = malloc((size_t)s.batch * 10 * sizeof *logits);
    if (!rc && (!x || !labels || !logits)) rc = cli_fail("out of memory");

    if (!rc)
        printf("poolprop train: %s on %s, policy %s, batch %d, %dx%d, %d epochs of %d steps, on %s\n"
               "planned peak %zu bytes (baseline %zu, %.1f%% less)\n",
               s.model, s.data, s.policy, s.batch, s.height, s.width, s.epochs, batches, pp_context_device_name(ctx),
               report.peak, baseline.peak, 100.0 * (1.0 - (double)report.peak / (double)baseline.peak));
    int tty = isatty(fileno(stdout));
    long total_steps = (long)s.epochs * batches;
    long warmup_steps = (long)(s.warmup * batches);
    void (*old_handler)(int) = signal(SIGINT, on_sigint);
    const char *test_interrupt = getenv("POOLPROP_TEST_INTERRUPT_AFTER_STEPS");
    long interrupt_after = test_interrupt ? atol(test_interrupt) : -1;
    long steps_this_run = 0;
    int stopped = 0;
    for (; !rc && p.epoch < s.epochs; p.epoch++) {
        double epoch_start = now_s() - p.seconds;
        double run_start = now_s();
        long images_this_run = 0;
        for (; !rc && p.next_batch < batches; p.next_batch++) {
            if (interrupted) break;
            if (data_batch(ds, DATA_TRAIN, p.epoch, p.next_batch, s.batch, x, labels, err, sizeof err) < 0) {
                rc = cli_fail("%s", err);
                break;
            }
            pp_sgd_options sgd = {(float)learning_rate(&s, p.step, total_steps, warmup_steps), (float)s.momentum,
                                  (float)s.weight_decay};
            float loss;
            int correct;
            if (pp_model_set_batch(m, x, labels) != PP_OK || pp_model_train_step(m, &sgd, &loss) != PP_OK ||
                pp_model_last_correct(m, &correct) != PP_OK) {
                rc = cli_fail("%s", pp_last_error(ctx));
                break;
            }
            if (!isfinite(loss)) {
                rc = cli_fail("epoch %d step %d: the loss is %f (diverged: lower --lr)", p.epoch + 1, p.next_batch + 1,
                          loss);
                break;
            }
            p.loss_sum += loss;
            p.correct += correct;
            p.seen += s.batch;
            p.step++;
            images_this_run += s.batch;
            if (++steps_this_run == interrupt_after) raise(SIGINT);
            double elapsed = now_s() - run_start;
            double rate = elapsed > 0 ? images_this_run / elapsed : 0;
            double eta = rate > 0 ? (double)(total_steps - p.step) * s.batch / rate : 0;
            int every = tty ? 1 : (batches >= 10 ? batches / 10 : 1);
            if ((p.next_batch + 1) % every == 0 || p.next_batch + 1 == batches)
                print_progress(tty, &s, &(progress){p.epoch, p.next_batch + 1, p.step, p.loss_sum, p.correct, p.seen, 0},
                               batches, rate, eta);
        }
        if (rc) break;
        if (interrupted) {
            p.seconds = now_s() - epoch_start;
            stopped = 1;
            break;
        }
        double val_loss = NAN, val_acc = NAN;
        if (validate(ctx, m, ds, &s, p.epoch, x, labels, logits, &val_loss, &val_acc)) {
            rc = 1;
            break;
        }
        if (interrupted) { /* validation is redone on resume: keep the position at the epoch end */
            p.seconds = now_s() - epoch_start;
            stopped = 1;
            break;
        }
        double seconds = now_s() - epoch_start;
        double train_loss = p.loss_sum / batches, train_acc = (double)p.correct / p.seen;
        if (tty) printf("\n");
        printf("epoch %d: train loss %.4f acc %.4f, val loss %.4f acc %.4f, %.1f s\n", p.epoch + 1, train_loss,
               train_acc, val_loss, val_acc, seconds);
        if (log) {
            fprintf(log, "%d,%.6f,%.6f,%.6f,%.6f,%.2f,%zu\n", p.epoch + 1, train_loss, train_acc, val_loss, val_acc,
                    seconds, report.peak);
            fflush(log);
        }
        p.next_batch = 0, p.loss_sum = 0, p.correct = 0, p.seen = 0, p.seconds = 0;
        if (s.checkpoint) {
            char text[CHECKPOINT_TEXT_MAX];
            progress next = p;
            next.epoch++;
            settings_text(&s, &next, text, sizeof text);
            if (checkpoint_save(ctx, m, s.checkpoint, text, err, sizeof err)) rc = cli_fail("%s", err);
        }
    }
    if (!rc && stopped) {
        if (tty) printf("\n");
        if (s.checkpoint) {
            char text[CHECKPOINT_TEXT_MAX];
            settings_text(&s, &p, text, sizeof text);
            if (checkpoint_save(ctx, m, s.checkpoint, text, err, sizeof err))
                rc = cli_fail("%s", err);
            else
                printf("interrupted: checkpoint written to %s (resume with --resume %s)\n", s.checkpoint, s.checkpoint);
        } else {
            printf("interrupted (no --checkpoint given, nothing saved)\n");
        }
        rc = rc ? rc : 130;
    }
    signal(SIGINT, old_handler);
    if (log) fclose(log);
    free(x), free(labels), free(logits);
    pp_model_destroy(m);
    pp_context_destroy(ctx);
    data_close(ds);
    return rc;
}
