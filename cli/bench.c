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
#include "outfile.h"
#include "poolprop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct shape_row {
    pp_layer_desc d;
    char name[64];
    int count;                /* layers of the model with this shape */
    double fwd, data, weight; /* ms */
    double gflop;             /* forward multiply-adds x 2, in GFLOP */
} shape_row;

static int same_shape(const pp_layer_desc *a, const pp_layer_desc *b)
{
    return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w && a->k == b->k && a->r == b->r &&
           a->s == b->s && a->stride == b->stride && a->pad == b->pad && a->pool == b->pool &&
           a->pool_mode == b->pool_mode;
}

/* What one bench run holds; released by bench_close. */
typedef struct bench_run {
    const char *model, *json;
    pp_model_options mo;
    pp_context_options co;
    int repeats, steps, do_layers, do_step;
    pp_context *ctx;
    pp_model_conv_list convs; /* the step's convolutions (pp_model_conv_list_get) */
    shape_row *rows;          /* the distinct shapes among them */
    int nrows;
    double images_per_s;
    double batch_upload_ms; /* per step: pp_model_set_batch, part of the step's time */
    pp_memory_report report;
    size_t allocated;
} bench_run;

static int bench_parse(int argc, char **argv, bench_run *b)
{
    cli_option opts[] = {{"batch", 0, 0, 0},     {"image", 0, 0, 0},   {"policy", 0, 0, 0},    {"backend", 0, 0, 0},
                         {"repeats", 0, 0, 0},   {"steps", 0, 0, 0},   {"json", 0, 0, 0},      {"layers-only", 0, 1, 0},
                         {"step-only", 0, 1, 0}, {"classes", 0, 0, 0}, {"tuning-dir", 0, 0, 0}};
    int nopts = sizeof opts / sizeof opts[0];
    if (cli_parse_options(argc, argv, opts, nopts, &b->model)) return 1;
    if (!b->model) b->model = "resnet50";
    pp_model_options_init(&b->mo);
    b->mo.model = b->model;
    b->mo.policy = cli_opt(opts, nopts, "policy") ? cli_opt(opts, nopts, "policy") : "2";
    b->mo.batch = 64;
    b->repeats = 5, b->steps = 5;
    const char *v;
    if ((v = cli_opt(opts, nopts, "batch")) && cli_parse_int("batch", v, 1, 1 << 16, &b->mo.batch)) return 1;
    if ((v = cli_opt(opts, nopts, "image")) && cli_parse_image(v, &b->mo.height, &b->mo.width)) return 1;
    if ((v = cli_opt(opts, nopts, "classes")) && cli_parse_int("classes", v, 1, 1 << 20, &b->mo.classes)) return 1;
    if ((v = cli_opt(opts, nopts, "repeats")) && cli_parse_int("repeats", v, 1, 10000, &b->repeats)) return 1;
    if ((v = cli_opt(opts, nopts, "steps")) && cli_parse_int("steps", v, 1, 10000, &b->steps)) return 1;
    b->do_layers = !cli_opt(opts, nopts, "step-only"), b->do_step = !cli_opt(opts, nopts, "layers-only");
    b->json = cli_opt(opts, nopts, "json");
    if (cli_run_options(opts, nopts, &b->co)) return 1;
    b->co.tuning_dir = cli_opt(opts, nopts, "tuning-dir");
    return 0;
}

/* The distinct conv shapes of the step, with the variants a model build uses: the tuning
 * database's, else the policy's defaults. */
static int bench_shapes(bench_run *b)
{
    pp_status st = pp_model_conv_list_get(b->ctx, &b->mo, &b->convs);
    if (st != PP_OK) return cli_fail_ctx(b->ctx, st);
    b->rows = calloc((size_t)b->convs.count + 1, sizeof *b->rows);
    if (!b->rows) return cli_fail("out of memory");
    for (int i = 0; i < b->convs.count; i++) {
        const pp_model_conv *c = &b->convs.convs[i];
        pp_layer_desc d = c->desc;
        d.name = NULL;
        int j = 0;
        while (j < b->nrows && !same_shape(&b->rows[j].d, &d)) j++;
        if (j == b->nrows) {
            b->rows[j].d = d;
            snprintf(b->rows[j].name, sizeof b->rows[j].name, "%s", c->desc.name);
            b->rows[j].gflop = 2.0 * d.n * d.k * c->p * c->q * (double)d.c * d.r * d.s / 1e9;
            b->nrows++;
        }
        b->rows[j].count++;
    }
    return 0;
}

static int bench_layers(bench_run *b)
{
    printf("%-28s %5s %-30s %10s %10s %10s %9s  %s\n", "first layer", "count", "shape (NCHW -> K RxS /s p) f",
           "fwd+pool", "input grad", "wgt grad", "fwd GF/s", "variants");
    int rc = 0;
    for (int j = 0; j < b->nrows && !rc; j++) {
        shape_row *row = &b->rows[j];
        pp_layer *layer = NULL;
        double ms[8] = {0};
        int nk = 0;
        if (pp_layer_create(b->ctx, &row->d, &layer) != PP_OK ||
            pp_layer_benchmark(layer, 1, b->repeats, ms) != PP_OK || pp_layer_kernel_count(layer, &nk) != PP_OK) {
            rc = cli_fail("%s: %s", row->name, pp_last_error(b->ctx));
        } else {
            row->fwd = ms[0], row->data = ms[1], row->weight = 0;
            for (int k = 2; k < nk; k++) row->weight += ms[k]; /* with the split-K reduction */
            const pp_layer_desc *d = &row->d;
            char shape[64];
            snprintf(shape, sizeof shape, "%dx%dx%dx%d->%d %dx%d/%d p%d f%d", d->n, d->c, d->h, d->w, d->k, d->r, d->s,
                     d->stride, d->pad, d->pool);
            printf("%-28.28s %5d %-30s %8.3fms %8.3fms %8.3fms %9.1f  v%d/v%d/v%d\n", row->name, row->count, shape,
                   row->fwd, row->data, row->weight, row->gflop / (row->fwd / 1000.0), d->variant_fwd,
                   d->variant_bwd_data, d->variant_bwd_weight);
        }
        pp_layer_destroy(layer);
    }
    return rc;
}

static int bench_step(bench_run *b)
{
    const pp_model_conv_list *p = &b->convs;
    pp_model *m = NULL;
    size_t in_use0, peak0, in_use1, peak1;
    pp_context_memory_stats(b->ctx, &in_use0, &peak0);
    size_t pixels = (size_t)p->batch * p->channels * p->height * p->width;
    float *x = calloc(pixels, sizeof *x);
    int32_t *labels = calloc((size_t)p->batch, sizeof *labels);
    pp_sgd_options sgd = {0.01f, 0.9f, 1e-4f};
    int rc = 0;
    if (!x || !labels) rc = cli_fail("out of memory");
    if (!rc && (pp_model_create(b->ctx, &b->mo, &m) != PP_OK || pp_model_init_params(m, 1) != PP_OK ||
                pp_model_memory_report(m, &b->report) != PP_OK))
        rc = cli_fail_ctx(b->ctx, PP_ERR_GENERATOR);
    double t = 0, t_batch = 0;
    for (int s = 0; s < b->steps + 1 && !rc; s++) {
        float loss;
        double t0 = cli_now_ms();
        if (pp_model_set_batch(m, x, labels) != PP_OK) rc = cli_fail_ctx(b->ctx, PP_ERR_GENERATOR);
        double t1 = cli_now_ms();
        if (!rc && pp_model_train_step(m, &sgd, &loss) != PP_OK) rc = cli_fail_ctx(b->ctx, PP_ERR_GENERATOR);
        if (s > 0) t += cli_now_ms() - t0, t_batch += t1 - t0; /* the first step warms up */
    }
    pp_context_memory_stats(b->ctx, &in_use1, &peak1);
    b->allocated = in_use1 - in_use0;
    if (!rc) {
        b->images_per_s = b->steps * p->batch / (t / 1000.0);
        b->batch_upload_ms = t_batch / b->steps;
        printf("training step: %.1f images/s (%.1f ms per step of %d images); peak %zu bytes planned, %zu allocated\n",
               b->images_per_s, t / b->steps, p->batch, b->report.peak, b->allocated);
        /* pp_model_set_batch: the host's channels-last copy of the batch and its upload. */
        printf("of which the batch's upload: %.1f ms per step (pp_model_set_batch)\n", b->batch_upload_ms);
    }
    free(x), free(labels);
    pp_model_destroy(m);
    return rc;
}

/* --json: the same figures, written to a temporary and renamed (outfile.h). */
static int bench_write_json(const bench_run *b)
{
    outfile out;
    if (outfile_open(&out, b->json)) return 1;
    FILE *f = out.f;
    const pp_model_conv_list *p = &b->convs;
    fprintf(f, "{\n  \"model\": ");
    cli_json_string(f, b->model);
    fprintf(f, ", \"batch\": %d, \"image\": [%d, %d], \"policy\": ", p->batch, p->height, p->width);
    cli_json_string(f, b->mo.policy);
    fprintf(f, ", \"math\": ");
    cli_json_string(f, p->math);
    fprintf(f, ", \"tuning_entries\": %d,\n  \"device\": ", p->tuned_entries);
    cli_json_string(f, pp_context_device_name(b->ctx));
    fprintf(f, ", \"repeats\": %d,\n  \"layers\": [", b->repeats);
    for (int j = 0; b->do_layers && j < b->nrows; j++) {
        const shape_row *row = &b->rows[j];
        const pp_layer_desc *d = &row->d;
        fprintf(f, "%s\n    {\"name\": ", j ? "," : "");
        cli_json_string(f, row->name);
        fprintf(f,
                ", \"count\": %d, \"n\": %d, \"c\": %d, \"h\": %d, \"w\": %d, \"k\": %d, "
                "\"r\": %d, \"s\": %d, \"stride\": %d, \"pad\": %d, \"pool\": %d, \"fwd_ms\": %.4f, "
                "\"bwd_data_ms\": %.4f, \"bwd_weight_ms\": %.4f}",
                row->count, d->n, d->c, d->h, d->w, d->k, d->r, d->s, d->stride, d->pad, d->pool, row->fwd, row->data,
                row->weight);
    }
    fprintf(f,
            "\n  ],\n  \"step\": {\"images_per_s\": %.3f, \"batch_upload_ms\": %.3f, \"peak_bytes\": %zu, "
            "\"allocated_bytes\": %zu}\n}\n",
            b->images_per_s, b->batch_upload_ms, b->report.peak, b->allocated);
    int rc = outfile_commit(&out);
    if (!rc) printf("wrote %s\n", b->json);
    return rc;
}

int bench_main(int argc, char **argv)
{
    bench_run b = {0};
    if (bench_parse(argc, argv, &b)) return 1;
    if (!(b.ctx = cli_context(&b.co))) return 1;
    int rc = bench_shapes(&b);
    if (!rc)
        printf("poolprop bench: %s, batch %d, %dx%d, policy %s (math %s), on %s (medians of %d runs; tuning database: "
               "%d entries)\n",
               b.model, b.convs.batch, b.convs.height, b.convs.width, b.mo.policy, b.convs.math,
               pp_context_device_name(b.ctx), b.repeats, b.convs.tuned_entries);
    if (!rc && b.do_layers) rc = bench_layers(&b);
    if (!rc && b.do_step) rc = bench_step(&b);
    if (!rc && b.json) rc = bench_write_json(&b);
    free(b.rows);
    pp_model_conv_list_free(&b.convs);
    pp_context_destroy(b.ctx);
    return rc;
}
