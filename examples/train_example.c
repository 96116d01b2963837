/* train_example.c - embedding poolprop through its one public header: build a CIFAR
 * ResNet with inputs pooled 2x2 for the weight gradients, print its memory report against
 * the uncompressed baseline, and run a few SGD steps on a synthetic batch.
 * Usage: train_example [host|cuda] [steps] */
#include <poolprop.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(pp_context *ctx, const char *what)
{
    fprintf(stderr, "train_example: %s: %s\n", what, pp_last_error(ctx));
    return 1;
}

int main(int argc, char **argv)
{
    pp_context_options co;
    pp_context_options_init(&co);
    co.backend = argc > 1 && strcmp(argv[1], "cuda") == 0 ? PP_BACKEND_CUDA : PP_BACKEND_HOST;
    int steps = argc > 2 ? atoi(argv[2]) : 3;
    pp_context *ctx = NULL;
    if (pp_context_create(&co, &ctx) != PP_OK) {
        int rc = fail(ctx, "context");
        pp_context_destroy(ctx);
        return rc;
    }

    pp_model_options mo;
    pp_model_options_init(&mo);
    mo.model = "cifar_resnet8";
    mo.policy = "2";
    mo.batch = 4;
    mo.height = mo.width = 16;
    mo.classes = 10;

    pp_memory_report policy, baseline;
    pp_model_options base = mo;
    base.policy = "baseline";
    if (pp_plan_memory(ctx, &mo, &policy) != PP_OK || pp_plan_memory(ctx, &base, &baseline) != PP_OK)
        return fail(ctx, "plan");
    printf("%s, batch %d, %dx%d, policy %s on %s\n", mo.model, mo.batch, mo.height, mo.width, mo.policy,
           pp_context_device_name(ctx));
    printf("  saved for backward: %8zu bytes (baseline %8zu)\n", policy.saved, baseline.saved);
    printf("  peak:               %8zu bytes (baseline %8zu, %.1f%% less)\n", policy.peak, baseline.peak,
           100.0 * (1.0 - (double)policy.peak / (double)baseline.peak));

    pp_model *model = NULL;
    if (pp_model_create(ctx, &mo, &model) != PP_OK) return fail(ctx, "model");
    if (pp_model_init_params(model, 1) != PP_OK) return fail(ctx, "init");
    size_t pixels = (size_t)mo.batch * 3 * mo.height * mo.width;
    float *x = malloc(pixels * sizeof *x);
    int32_t labels[4] = {0, 3, 5, 9};
    if (!x) return 1;
    for (size_t i = 0; i < pixels; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    pp_sgd_options sgd = {0.05f, 0.9f, 5e-4f};
    for (int step = 0; step < steps; step++) {
        float loss;
        if (pp_model_set_batch(model, x, labels) != PP_OK || pp_model_train_step(model, &sgd, &loss) != PP_OK)
            return fail(ctx, "step");
        printf("  step %d: loss %.4f\n", step + 1, loss);
    }
    free(x);
    pp_model_destroy(model);
    pp_context_destroy(ctx);
    return 0;
}
