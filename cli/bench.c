/* bench.c - `poolprop bench`: times, on the chosen backend, every distinct convolution
 * shape of a model (fused forward with pool-save, input gradient, weight gradient with
 * un-pool) and a whole training step (images/s, planned and allocated peak memory).
 * Prints a table and, with --json, writes the same figures as JSON. Kernels use the
 * variants a model build would (the device's tuning database, else the policy's math
 * mode's defaults). Kernel figures are medians of CUDA-event timings (host: wall clock of
 * the emulated launch); the step is wall clock. They mean something on the cuda backend,
 * and on the host backend only show that the mechanism works. */
#include "bench.h"

#include "options.h"
#include "plan.h"
#include "poolprop.h"
#include "../runtime/src/tune.h" /* not "tune.h": that is cli/tune.h */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct shape_row {
    pp_layer_desc d;
    char name[64];
    int count;        /* layers of the model with this shape */
    double fwd, data, weight; /* ms */
    double gflop;     /* forward multiply-adds x 2, in GFLOP */
} shape_row;

static int same_shape(const pp_layer_desc *a, const pp_layer_desc *b)
{
    return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w && a->k == b->k && a->r == b->r &&
           a->s == b->s && a->stride == b->stride && a->pad == b->pad && a->pool == b->pool &&
           a->pool_mode == b->pool_mode;
}

int bench_main(int argc, char **argv)
{
    cli_option opts[] = {{"batch", 0, 0, 0},   {"image", 0, 0, 0}, {"policy", 0, 0, 0}, {"backend", 0, 0, 0},
                         {"repeats", 0, 0, 0}, {"steps", 0, 0, 0}, {"json", 0, 0, 0},   {"layers-only", 0, 1, 0},
                         {"step-only", 0, 1, 0}, {"classes", 0, 0, 0}, {"tuning-dir", 0, 0, 0}};
    int nopts = sizeof opts / sizeof opts[0];
    const char *model = NULL;
    if (cli_parse_options(argc, argv, opts, nopts, &model)) return 1;
    if (!model) model = "resnet50";
    pp_model_options mo;
    pp_model_options_init(&mo);
    mo.model = model;
    mo.policy = cli_opt(opts, nopts, "policy") ? cli_opt(opts, nopts, "policy") : "2";
    mo.batch = 64;
    int repeats = 5, steps = 5;
    const char *v;
    if ((v = cli_opt(opts, nopts, "batch")) && cli_parse_int("batch", v, 1, 1 << 16, &mo.batch)) return 1;
    if ((v = cli_opt(opts, nopts, "image")) && cli_parse_image(v, &mo.height, &mo.width)) return 1;
    if ((v = cli_opt(opts, nopts, "classes")) && cli_parse_int("classes", v, 1, 1 << 20, &mo.classes)) return 1;
    if ((v = cli_opt(opts, nopts, "repeats")) && cli_parse_int("repeats", v, 1, 10000, &repeats)) return 1;
    if ((v = cli_opt(opts, nopts, "steps")) && cli_parse_int("steps", v, 1, 10000, &steps)) return 1;
    int do_layers = !cli_opt(opts, nopts, "step-only"), do_step = !cli_opt(opts, nopts, "layers-only");
    pp_context_options co;
    if (cli_run_options(opts, nopts, &co)) return 1;
    co.tuning_dir = cli_opt(opts, nopts, "tuning-dir");
    pp_context *ctx = cli_context(&co);
    if (!ctx) return 1;

    /* The distinct conv shapes, from the plan's graph, with the variants a model build
     * uses: the tuning database's, else the policy's defaults. */
    gen_plan plan;
    gen_plan_request req;
    plan_request_for_model(&mo, 0, &req);
    pp_status pst = tune_lookup(ctx, &req);
    const int tuned_count = req.tuned_count;
    if (pst == PP_OK) pst = gen_train_plan(ctx, &req, &plan);
    tune_lookup_free(&req);
    if (pst != PP_OK) {
        int rc = cli_fail_ctx(ctx, PP_ERR_GENERATOR);
        pp_context_destroy(ctx);
        return rc;
    }
    shape_row *rows = calloc((size_t)plan.layer_count + 1, sizeof *rows);
    int nrows = 0, rc = rows ? 0 : cli_fail("out of memory");
    for (int i = 0; i < plan.layer_count && !rc; i++) {
        const plan_layer *l = &plan.layers[i];
        if (strcmp(l->op, "conv") != 0) continue;
        pp_layer_desc d;
        pp_layer_desc_init(&d);
        d.n = l->n, d.c = l->c, d.h = l->h, d.w = l->w, d.k = l->k, d.r = l->r, d.s = l->s;
        d.stride = l->stride, d.pad = l->pad, d.pool = l->pool, d.pool_mode = l->pool_max ? PP_POOL_MAX : PP_POOL_AVG;
        d.variant_fwd = l->variant_fwd, d.variant_bwd_data = l->variant_bwd_data;
        d.variant_bwd_weight = l->variant_bwd_weight;
        d.storage = plan.act_bf16 ? PP_STORAGE_BF16 : PP_STORAGE_F32; /* as the step runs them */
        int j = 0;
        while (j < nrows && !same_shape(&rows[j].d, &d)) j++;
        if (j == nrows) {
            rows[nrows].d = d;
            snprintf(rows[nrows].name, sizeof rows[nrows].name, "%s", l->name);
            rows[nrows].gflop = 2.0 * d.n * d.k * l->p * l->q * (double)d.c * d.r * d.s / 1e9;
            nrows++;
        }
        rows[j].count++;
    }
    printf("poolprop bench: %s, batch %d, %dx%d, policy %s (math %s), on %s (medians of %d runs; tuning database: %d entries)\n",
           model, plan.batch, plan.height, plan.width, mo.policy, plan.math, pp_context_device_name(ctx), repeats,
           tuned_count);
    if (do_layers && !rc) {
        printf("%-28s %5s %-30s %10s %10s %10s %9s  %s\n", "first layer", "count", "shape (NCHW -> K RxS /s p) f",
               "fwd+pool", "input grad", "wgt grad", "fwd GF/s", "variants");
        for (int j = 0; j < nrows && !rc; j++) {
            pp_layer *layer = NULL;
            double ms[8] = {0};
            int nk = 0;
            if (pp_layer_create(ctx, &rows[j].d, &layer) != PP_OK || pp_layer_benchmark(layer, 1, repeats, ms) != PP_OK ||
                pp_layer_kernel_count(layer, &nk) != PP_OK) {
                rc = cli_fail("%s: %s", rows[j].name, pp_last_error(ctx));
            } else {
                rows[j].fwd = ms[0], rows[j].data = ms[1], rows[j].weight = 0;
                for (int k = 2; k < nk; k++) rows[j].weight += ms[k]; /* with the split-K reduction */
                const pp_layer_desc *d = &rows[j].d;
                char shape[64];
                snprintf(shape, sizeof shape, "%dx%dx%dx%d->%d %dx%d/%d p%d f%d", d->n, d->c, d->h, d->w, d->k, d->r,
                         d->s, d->stride, d->pad, d->pool);
                printf("%-28.28s %5d %-30s %8.3fms %8.3fms %8.3fms %9.1f  v%d/v%d/v%d\n", rows[j].name, rows[j].count,
                       shape, rows[j].fwd, rows[j].data, rows[j].weight, rows[j].gflop / (rows[j].fwd / 1000.0),
                       d->variant_fwd, d->variant_bwd_data, d->variant_bwd_weight);
            }
            pp_layer_destroy(layer);
        }
    }
    double images_per_s = 0;
    pp_memory_report report = {0};
    size_t allocated = 0;
    if (do_step && !rc) {
        pp_model *m = NULL;
        size_t in_use0, peak0, in_use1, peak1;
        pp_context_memory_stats(ctx, &in_use0, &peak0);
        size_t pixels = (size_t)plan.batch * plan.channels * plan.height * plan.width;
        float *x = calloc(pixels, sizeof *x);
        int32_t *labels = calloc((size_t)plan.batch, sizeof *labels);
        pp_sgd_options sgd = {0.01f, 0.9f, 1e-4f};
        if (!x || !labels) rc = cli_fail("out of memory");
        if (!rc && (pp_model_create(ctx, &mo, &m) != PP_OK || pp_model_init_params(m, 1) != PP_OK ||
                    pp_model_memory_report(m, &report) != PP_OK))
            rc = cli_fail_ctx(ctx, PP_ERR_GENERATOR);
        double t = 0;
        for (int s = 0; s < steps + 1 && !rc; s++) {
            float loss;
            double t0 = cli_now_ms();
            if (pp_model_set_batch(m, x, labels) != PP_OK || pp_model_train_step(m, &sgd, &loss) != PP_OK)
                rc = cli_fail_ctx(ctx, PP_ERR_GENERATOR);
            if (s > 0) t += cli_now_ms() - t0; /* the first step warms up */
        }
        pp_context_memory_stats(ctx, &in_use1, &peak1);
        allocated = in_use1 - in_use0;
        if (!rc) {
            images_per_s = steps * plan.batch / (t / 1000.0);
            printf("training step: %.1f images/s (%.1f ms per step of %d images); peak %zu bytes planned, %zu allocated\n",
                   images_per_s, t / steps, plan.batch, report.peak, allocated);
        }
        free(x), free(labels);
        pp_model_destroy(m);
    }
    const char *json = cli_opt(opts, nopts, "json");
    if (json && !rc) {
        FILE *f = fopen(json, "w");
        if (!f) {
            rc = cli_fail("--json: cannot write %s", json);
        } else {
            fprintf(f, "{\n  \"model\": ");
            cli_json_string(f, model);
            fprintf(f, ", \"batch\": %d, \"image\": [%d, %d], \"policy\": ", plan.batch, plan.height, plan.width);
            cli_json_string(f, mo.policy);
            fprintf(f, ", \"math\": ");
            cli_json_string(f, plan.math);
            fprintf(f, ", \"tuning_entries\": %d,\n  \"device\": ", tuned_count);
            cli_json_string(f, pp_context_device_name(ctx));
            fprintf(f, ", \"repeats\": %d,\n  \"layers\": [", repeats);
            for (int j = 0; do_layers && j < nrows; j++) {
                const pp_layer_desc *d = &rows[j].d;
                fprintf(f, "%s\n    {\"name\": ", j ? "," : "");
                cli_json_string(f, rows[j].name);
                fprintf(f,
                        ", \"count\": %d, \"n\": %d, \"c\": %d, \"h\": %d, \"w\": %d, \"k\": %d, "
                        "\"r\": %d, \"s\": %d, \"stride\": %d, \"pad\": %d, \"pool\": %d, \"fwd_ms\": %.4f, "
                        "\"bwd_data_ms\": %.4f, \"bwd_weight_ms\": %.4f}",
                        rows[j].count, d->n, d->c, d->h, d->w, d->k, d->r, d->s, d->stride, d->pad, d->pool, rows[j].fwd,
                        rows[j].data, rows[j].weight);
            }
            fprintf(f, "\n  ],\n  \"step\": {\"images_per_s\": %.3f, \"peak_bytes\": %zu, \"allocated_bytes\": %zu}\n}\n",
                    images_per_s, report.peak, allocated);
            fclose(f);
            printf("wrote %s\n", json);
        }
    }
    free(rows);
    gen_plan_free(&plan);
    pp_context_destroy(ctx);
    return rc;
}
