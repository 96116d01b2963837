/* cmd_demo.c - `poolprop demo`: the memory report and a few SGD steps of a CIFAR ResNet on
 * synthetic data. */
#include "cmd_demo.h"

#include "options.h"
#include "poolprop.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int cmd_demo(int argc, char **argv)
{
    cli_option opts[] = {{"model", 0, 0, 0}, {"policy", 0, 0, 0},  {"batch", 0, 0, 0}, {"image", 0, 0, 0},
                         {"steps", 0, 0, 0}, {"backend", 0, 0, 0}, {"lr", 0, 0, 0}};
    int nopts = sizeof opts / sizeof opts[0];
    if (cli_parse_options(argc, argv, opts, nopts, NULL)) return 1;
    pp_model_options mo;
    pp_model_options_init(&mo);
    mo.model = cli_opt(opts, nopts, "model") ? cli_opt(opts, nopts, "model") : "cifar_resnet20";
    mo.policy = cli_opt(opts, nopts, "policy") ? cli_opt(opts, nopts, "policy") : "2";
    mo.batch = 8;
    int steps = 5;
    if (cli_opt(opts, nopts, "batch") && cli_parse_int("batch", cli_opt(opts, nopts, "batch"), 1, 1 << 16, &mo.batch))
        return 1;
    if (cli_opt(opts, nopts, "steps") && cli_parse_int("steps", cli_opt(opts, nopts, "steps"), 1, 1 << 20, &steps))
        return 1;
    if (cli_parse_image(cli_opt(opts, nopts, "image") ? cli_opt(opts, nopts, "image") : "16", &mo.height, &mo.width))
        return 1;
    pp_sgd_options sgd = {0.05f, 0.9f, 5e-4f};
    if (cli_opt(opts, nopts, "lr")) {
        char *end;
        sgd.lr = strtof(cli_opt(opts, nopts, "lr"), &end);
        if (*end || !isfinite(sgd.lr) || !(sgd.lr > 0))
            return cli_fail("--lr: expected a positive finite number, got '%s'", cli_opt(opts, nopts, "lr"));
    }
    pp_context_options co;
    if (cli_run_options(opts, nopts, &co)) return 1;
    pp_context *ctx = cli_context(&co);
    if (!ctx) return 1;

    pp_memory_report r, b;
    pp_model_options base = mo;
    pp_model *m = NULL;
    pp_status st = pp_plan_memory(ctx, &mo, &r);
    base.policy = r.baseline_policy;
    if (st == PP_OK) st = pp_plan_memory(ctx, &base, &b);
    double t0 = cli_now_ms();
    if (st == PP_OK) st = pp_model_create(ctx, &mo, &m);
    if (st == PP_OK) st = pp_model_init_params(m, 1);
    if (st != PP_OK) {
        int rc = cli_fail_ctx(ctx, st);
        pp_model_destroy(m);
        pp_context_destroy(ctx);
        return rc;
    }
    printf("poolprop demo: %s, batch %d, %dx%d synthetic images, %d classes, policy %s, on %s\n", mo.model, r.batch,
           r.height, r.width, r.classes, mo.policy, pp_context_device_name(ctx));
    printf("built and compiled in %.0f ms\n", cli_now_ms() - t0);
    printf("memory (bytes)            %12s %12s\n", "policy", "baseline");
    printf("  weights+grads+momentum  %12zu %12zu\n", r.weights + r.gradients + r.optimizer,
           b.weights + b.gradients + b.optimizer);
    printf("  saved for backward      %12zu %12zu\n", r.saved, b.saved);
    printf("  largest transient       %12zu %12zu\n", r.largest_transient, b.largest_transient);
    printf("  peak                    %12zu %12zu  (%.1f%% less)\n", r.peak, b.peak,
           100.0 * (1.0 - (double)r.peak / (double)b.peak));
    /* Synthetic, learnable data: each class is a brightness ramp in its own direction. */
    size_t pixels = (size_t)r.height * r.width;
    float *x = malloc((size_t)r.batch * 3 * pixels * sizeof *x);
    int32_t *labels = malloc((size_t)r.batch * sizeof *labels);
    int rc = x && labels ? 0 : cli_fail("out of memory");
    for (int n = 0; n < r.batch && !rc; n++) {
        labels[n] = n % r.classes;
        double angle = 6.283185307179586 * labels[n] / r.classes;
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < r.height; i++)
                for (int j = 0; j < r.width; j++)
                    x[((size_t)n * 3 + c) * pixels + (size_t)i * r.width + j] =
                        (float)(cos(angle) * (i - r.height / 2.0) / r.height +
                                sin(angle) * (j - r.width / 2.0) / r.width + 0.1 * c);
    }
    for (int step = 0; step < steps && !rc; step++) {
        float loss;
        double t = cli_now_ms();
        st = pp_model_set_batch(m, x, labels);
        if (st == PP_OK) st = pp_model_train_step(m, &sgd, &loss);
        if (st != PP_OK)
            rc = cli_fail_ctx(ctx, st);
        else
            printf("step %d: loss %.4f (%.0f ms)\n", step + 1, loss, cli_now_ms() - t);
    }
    free(x);
    free(labels);
    pp_model_destroy(m);
    pp_context_destroy(ctx);
    return rc;
}
