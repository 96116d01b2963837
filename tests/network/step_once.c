/* step_once.c - one full training step (forward, loss, backward, SGD update) and one
 * inference of a small CIFAR ResNet on the host backend, then everything released: the
 * program CTest runs under valgrind to show the runtime neither leaks nor touches memory
 * it does not own. Exits non-zero on any failure. */
#include "test_util.h"

#include <math.h>

int main(void)
{
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_HOST;
    o.host_threads = 2;
    pp_context *ctx;
    CHECK_OK(NULL, pp_context_create(&o, &ctx));
    pp_model_options mo;
    pp_model_options_init(&mo);
    mo.model = "cifar_resnet8", mo.policy = "2", mo.batch = 2, mo.height = mo.width = 8, mo.classes = 10;
    pp_model *m;
    CHECK_OK(ctx, pp_model_create(ctx, &mo, &m));
    CHECK_OK(ctx, pp_model_init_params(m, 5));
    float x[2 * 3 * 8 * 8], logits[2 * 10];
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = (float)((i * 37) % 19) / 19.0f - 0.5f;
    int32_t labels[2] = {1, 8};
    pp_sgd_options sgd = {0.1f, 0.9f, 1e-4f};
    float loss;
    CHECK_OK(ctx, pp_model_set_batch(m, x, labels));
    CHECK_OK(ctx, pp_model_train_step(m, &sgd, &loss));
    CHECK(isfinite(loss), "loss %f", loss);
    CHECK_OK(ctx, pp_model_infer(m, x, logits));
    printf("one step: loss %.5f; inference logits[0] %.5f\n", loss, logits[0]);
    pp_model_destroy(m);
    pp_context_destroy(ctx);
    return 0;
}
