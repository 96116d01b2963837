/* tune.c - `poolprop tune`: tunes every distinct convolution kernel of a model on the
 * chosen backend (pp_tune) and prints progress, one line per variant tried, then a
 * summary per kernel: the default variant's time, the fastest verified variant and its
 * configuration. The results go to the device's tuning database, which later model
 * builds on the same device use. */
#include "tune.h"

#include "options.h"
#include "poolprop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct progress_state {
    pp_context *ctx;
    int quiet;
    /* One summary line per kernel, printed at the end. */
    char (*summary)[400];
    int summary_count, summary_capacity;
} progress_state;

static void on_progress(void *user, const pp_tune_event *ev)
{
    progress_state *ps = user;
    if (ev->variant >= 0) {
        if (ps->quiet) return;
        char timing[64] = "";
        if (ev->ms >= 0) snprintf(timing, sizeof timing, "%9.4f ms", ev->ms);
        char error[48] = "";
        if (ev->error >= 0) snprintf(error, sizeof error, "error %.2f of allowed", ev->error);
        printf("[%d/%d] %s v%-3d (%d/%d) %-14s %12s %-22s%s%s\n", ev->kernel + 1, ev->kernel_count, ev->key,
               ev->variant, ev->tried, ev->candidates, ev->status, timing, error, ev->note[0] ? " " : "", ev->note);
        fflush(stdout);
        return;
    }
    if (ps->summary_count == ps->summary_capacity) {
        int cap = ps->summary_capacity ? 2 * ps->summary_capacity : 32;
        void *grown = realloc(ps->summary, sizeof *ps->summary * (size_t)cap);
        if (!grown) return;
        ps->summary = grown;
        ps->summary_capacity = cap;
    }
    char *line = ps->summary[ps->summary_count++];
    const char *op = strncmp(ev->key, "conv_bwd_weight", 15) == 0 ? "conv_bwd_weight"
                     : strncmp(ev->key, "conv_bwd_data", 13) == 0 ? "conv_bwd_data"
                                                                  : "conv_fwd";
    pp_variant_info vi;
    memset(&vi, 0, sizeof vi);
    if (ev->best_variant < 0 || pp_layer_variant_info(ps->ctx, op, ev->best_variant, &vi) != PP_OK)
        snprintf(vi.config, sizeof vi.config, "-");
    if (ev->best_variant < 0)
        snprintf(line, 400, "%-60s %-20.20s no verified variant", ev->key, ev->layer);
    else
        snprintf(line, 400, "%-60s %-20.20s %10.4f %10.4f %6.2fx  v%-3d %s", ev->key, ev->layer, ev->default_ms,
                 ev->best_ms, ev->best_ms > 0 && ev->default_ms > 0 ? ev->default_ms / ev->best_ms : 0.0,
                 ev->best_variant, vi.config);
}

int tune_main(int argc, char **argv)
{
    cli_option opts[] = {{"policy", 0, 0, 0},         {"batch", 0, 0, 0},        {"image", 0, 0, 0},
                         {"classes", 0, 0, 0},        {"backend", 0, 0, 0},      {"schedule", 0, 0, 0},
                         {"budget-seconds", 0, 0, 0}, {"max-variants", 0, 0, 0}, {"warmup", 0, 0, 0},
                         {"repeats", 0, 0, 0},        {"seed", 0, 0, 0},         {"tuning-dir", 0, 0, 0},
                         {"arch", 0, 0, 0},           {"quiet", 0, 1, 0}};
    int nopts = sizeof opts / sizeof opts[0];
    const char *model = NULL;
    if (cli_parse_options(argc, argv, opts, nopts, &model)) return 1;
    if (!model) return cli_fail("tune: which model? (e.g. poolprop tune resnet50 --policy 2,math=tf32 --batch 64)");
    pp_tune_options to;
    pp_tune_options_init(&to);
    to.model.model = model;
    to.model.policy = cli_opt(opts, nopts, "policy");
    const char *v;
    if ((v = cli_opt(opts, nopts, "batch")) && cli_parse_int("batch", v, 1, 1 << 16, &to.model.batch)) return 1;
    if ((v = cli_opt(opts, nopts, "image")) && cli_parse_image(v, &to.model.height, &to.model.width)) return 1;
    if ((v = cli_opt(opts, nopts, "classes")) && cli_parse_int("classes", v, 1, 1 << 20, &to.model.classes)) return 1;
    if ((v = cli_opt(opts, nopts, "budget-seconds")) &&
        cli_parse_double("budget-seconds", v, 0.0, 1e7, &to.budget_seconds))
        return 1;
    if ((v = cli_opt(opts, nopts, "max-variants")) && cli_parse_int("max-variants", v, 0, 1 << 20, &to.max_variants))
        return 1;
    if ((v = cli_opt(opts, nopts, "warmup")) && cli_parse_int("warmup", v, 0, 10000, &to.warmup)) return 1;
    if ((v = cli_opt(opts, nopts, "repeats")) && cli_parse_int("repeats", v, 1, 10000, &to.repeats)) return 1;
    int seed = 1;
    if ((v = cli_opt(opts, nopts, "seed")) && cli_parse_int("seed", v, 1, 2147483647, &seed)) return 1;
    to.seed = (uint32_t)seed;
    pp_context_options co;
    if (cli_run_options(opts, nopts, &co)) return 1;
    co.tuning_dir = cli_opt(opts, nopts, "tuning-dir");
    if ((v = cli_opt(opts, nopts, "arch"))) {
        const char *digits = strncmp(v, "sm_", 3) == 0 ? v + 3 : v;
        if (cli_parse_int("arch", digits, 50, 200, &co.arch)) return 1;
    }
    pp_context *ctx = cli_context(&co);
    if (!ctx) return 1;
    char path[4096];
    if (pp_context_tuning_database(ctx, path, sizeof path) != PP_OK) {
        int rc = cli_fail_ctx(ctx, PP_ERR_INVALID_ARGUMENT);
        pp_context_destroy(ctx);
        return rc;
    }
    printf("poolprop tune: %s, batch %d, policy %s, on %s\n", model, to.model.batch,
           to.model.policy ? to.model.policy : "1", pp_context_device_name(ctx));
    printf("tuning database: %s\n", path);
    progress_state ps = {ctx, cli_opt(opts, nopts, "quiet") != NULL, NULL, 0, 0};
    pp_tune_report r;
    pp_status st = pp_tune(ctx, &to, on_progress, &ps, &r);
    int rc = 0;
    if (st != PP_OK) {
        rc = cli_fail_ctx(ctx, st);
    } else {
        printf("\n%-60s %-20s %10s %10s %7s  %s\n", "kernel (tuning key)", "first layer", "default ms", "best ms",
               "speedup", "best variant");
        for (int i = 0; i < ps.summary_count; i++) printf("%s\n", ps.summary[i]);
        printf("\n%d kernels: %d variants tried (%d verified and timed, %d wrong, %d unusable), %d skipped; "
               "%d kernels faster than their default; sum of kernel times %.4f ms -> %.4f ms; %.1f s\n",
               r.kernels, r.tried, r.ok, r.wrong, r.unusable, r.skipped, r.improved, r.default_ms, r.best_ms,
               r.seconds);
        printf("wrote %s\n", r.database);
        if (r.wrong > 0)
            fprintf(stderr, "poolprop: warning: %d variants gave results outside their tolerance and were not used\n",
                    r.wrong);
    }
    free(ps.summary);
    pp_context_destroy(ctx);
    return rc;
}
