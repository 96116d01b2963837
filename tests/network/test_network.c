/* test_network.c - whole-network training steps on the host backend (DESIGN.md section 5,
 * tier 4), on a CIFAR ResNet-8 with small images and batch 2:
 *   - f = 1: loss, every parameter gradient and the updated BN running statistics match
 *     the double-precision reference network (reference/net_ref.c), whose own gradients
 *     match central finite differences on a few parameters;
 *   - f = 2 avg, f = 4 max: they match the reference network that pools and un-pools each
 *     conv input for its weight gradient;
 *   - BN inputs saved as bf16: within the bf16 rounding of the saved input;
 *   - the baseline policy (ReLU output saved in full, read by the BN backward) too;
 *   - TF32 tensor-core convolutions (math=tf32): within TF32's rounding;
 *   - bf16 storage (act=bf16): within bf16's rounding, and ten steps lower the loss;
 *   - BN statistics come from the conv epilogue's partials (bn_stats_merge) in all of these;
 *   - the device memory the runtime allocates equals the planned peak;
 *   - ten SGD steps on a fixed batch lower the loss;
 *   - at batch 16 with 16x16 images (f = 2, the shape `poolprop train` runs in test_train,
 *     whose kernels it shares through the cache) the plan takes the sliced BN backward
 *     (bn_backward_sums + bn_backward_dx) on the 16x16 and 8x8 stages: loss, gradients and
 *     statistics match the reference there too.
 * Tolerances are stated where they are checked; each check prints its largest error.
 * Usage: test_network [quick] (quick: f = 1 and f = 2 only) */
#include "gen_plan.h"
#include "net_ref.h"
#include "test_util.h"

#include <math.h>
#include <string.h>

enum {
    batch = 2,
    image = 8,
    max_batch = 16
};

static void fill(float *a, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) a[i] = test_lcg_signed(&seed);
}

static ref_op op_of(const char *op)
{
    if (strcmp(op, "conv") == 0) return REF_CONV;
    if (strcmp(op, "bn") == 0) return REF_BN;
    if (strcmp(op, "maxpool") == 0) return REF_MAXPOOL;
    if (strcmp(op, "avgpool") == 0) return REF_AVGPOOL;
    if (strcmp(op, "fc") == 0) return REF_FC;
    return REF_SOFTMAX_CE;
}

/* The reference network of a plan's graph. */
static ref_layer *reference_layers(const gen_plan *p)
{
    ref_layer *out = calloc((size_t)p->layer_count, sizeof *out);
    CHECK(out != NULL, "out of memory");
    for (int i = 0; i < p->layer_count; i++) {
        const plan_layer *l = &p->layers[i];
        ref_layer *r = &out[i];
        r->op = op_of(l->op);
        r->input = l->input, r->output = l->output, r->residual = l->residual;
        r->n = l->n, r->c = l->c, r->h = l->h, r->w = l->w, r->k = l->k, r->r = l->r, r->s = l->s;
        r->stride = l->stride, r->pad = l->pad, r->p = l->p, r->q = l->q;
        r->relu = l->relu, r->pool = l->pool ? l->pool : 1, r->pool_max = l->pool_max;
        r->weight = l->weight, r->bias = l->bias, r->running_mean = l->running_mean, r->running_var = l->running_var;
        if (r->op == REF_FC) r->c = l->in, r->k = l->out;
        if (r->op == REF_SOFTMAX_CE) r->k = l->classes;
    }
    return out;
}

typedef struct run {
    gen_plan plan;
    ref_layer *layers;
    ref_net net;
    double *params, *state, *grads;
    float *x;
    int32_t labels[max_batch];
} run;

static void run_setup(pp_context *none, const char *policy, int n, int img, run *r)
{
    memset(r, 0, sizeof *r);
    gen_plan_request req = {
        .model = "cifar_resnet8", .policy = policy, .batch = n, .height = img, .width = img, .classes = 10};
    CHECK_OK(none, gen_plan_train(none, &req, &r->plan));
    r->layers = reference_layers(&r->plan);
    r->net = (ref_net){r->layers, r->plan.layer_count, r->plan.tensor_elems, r->plan.tensor_count, r->plan.param_count};
    r->params = calloc(r->plan.param_count, sizeof *r->params);
    r->grads = calloc(r->plan.param_count, sizeof *r->grads);
    r->state = calloc(r->plan.state_count, sizeof *r->state);
    r->x = malloc(r->plan.tensor_elems[0] * sizeof *r->x);
    CHECK(r->params && r->grads && r->state && r->x, "out of memory");
    fill(r->x, r->plan.tensor_elems[0], 7);
    for (int i = 0; i < n; i++) r->labels[i] = (int32_t)((3 * i + 1) % 10);
}

static void run_free(run *r)
{
    gen_plan_free(&r->plan);
    free(r->layers), free(r->params), free(r->state), free(r->grads), free(r->x);
}

/* Copies the model's parameters and statistics into the run's double arrays. */
static void read_model(pp_context *ctx, pp_model *m, run *r)
{
    const gen_plan *p = &r->plan;
    for (int pass = 0; pass < 2; pass++) {
        const plan_tensor_info *list = pass ? p->state : p->params;
        int n = pass ? p->state_count_keys : p->param_count_keys;
        double *dst = pass ? r->state : r->params;
        for (int i = 0; i < n; i++) {
            float *buf = malloc(list[i].count * sizeof *buf);
            CHECK_OK(ctx, pp_model_param_read(m, list[i].key, buf, list[i].count));
            for (size_t j = 0; j < list[i].count; j++) dst[list[i].offset + j] = buf[j];
            free(buf);
        }
    }
}

/* Largest over keys of max|a-b| / max|b| within the key. */
static double worst_key_error(const gen_plan *p, const float *a, const double *b, const char **worst_key)
{
    double worst = 0;
    for (int i = 0; i < p->param_count_keys; i++) {
        const plan_tensor_info *t = &p->params[i];
        double scale = 1e-30, err = 0;
        for (size_t j = 0; j < t->count; j++) scale = fmax(scale, fabs(b[t->offset + j]));
        for (size_t j = 0; j < t->count; j++) {
            double e = fabs(a[t->offset + j] - b[t->offset + j]);
            if (isnan(e)) e = INFINITY;
            err = fmax(err, e);
        }
        if (err / scale > worst) worst = err / scale, *worst_key = t->key;
    }
    return worst;
}

/* Largest over the convolution weights of ||a-b|| / ||b|| (L2 over the tensor). */
static double worst_conv_l2_error(const gen_plan *p, const float *a, const double *b, const char **worst_key)
{
    double worst = 0;
    for (int i = 0; i < p->param_count_keys; i++) {
        const plan_tensor_info *t = &p->params[i];
        if (t->rank != 4) continue;
        double diff = 0, norm = 1e-300;
        for (size_t j = 0; j < t->count; j++) {
            double d = a[t->offset + j] - b[t->offset + j];
            diff += d * d;
            norm += b[t->offset + j] * b[t->offset + j];
        }
        double e = isnan(diff) ? INFINITY : sqrt(diff / norm);
        if (e > worst) worst = e, *worst_key = t->key;
    }
    return worst;
}

/* The f = 1 gradient of one conv weight, to show that pooling policies change it. */
static const char probe_key[] = "layer2.0.conv1.weight";
static float probe_exact[16 * 32 * 9];

/* One training step without update on the host backend vs the reference; returns the
 * largest gradient error. */
/* One training step under policy at batch n with img x img images against the reference
 * network. tolerance: for the loss and every gradient (relative to each parameter's
 * largest); 0: gradients not checked, the loss within 5e-2. stat_tolerance: for the
 * running statistics. conv_tolerance: for every conv weight gradient as a whole (L2 error
 * relative to its L2 norm; 0: not checked). The probe of pooled gradients runs at the default shape only. */
static double check_policy_stats(pp_context *none, pp_context *host, const char *policy, int n, int img,
                                 double tolerance, double stat_tolerance, double conv_tolerance, int finite_differences)
{
    CHECK(n >= 1 && n <= max_batch, "batch %d", n);
    run r;
    run_setup(none, policy, n, img, &r);
    pp_model_options o;
    pp_model_options_init(&o);
    o.model = "cifar_resnet8", o.policy = policy, o.batch = n, o.height = img, o.width = img, o.classes = 10;
    size_t in_use_before, peak_before;
    pp_context_memory_stats(host, &in_use_before, &peak_before);
    pp_model *m;
    CHECK_OK(host, pp_model_create(host, &o, &m));
    CHECK_OK(host, pp_model_init_params(m, 42));
    read_model(host, m, &r);
    CHECK_OK(host, pp_model_set_batch(m, r.x, r.labels));
    float loss;
    CHECK_OK(host, pp_model_train_step(m, NULL, &loss));

    float *grads = malloc(r.plan.param_count * sizeof *grads);
    for (int i = 0; i < r.plan.param_count_keys; i++)
        CHECK_OK(host,
                 pp_model_grad_read(m, r.plan.params[i].key, grads + r.plan.params[i].offset, r.plan.params[i].count));
    double ref_loss = ref_net_step(&r.net, r.params, r.state, r.x, r.labels, r.grads);
    float probe[sizeof probe_exact / sizeof probe_exact[0]];
    CHECK_OK(host, pp_model_grad_read(m, probe_key, probe, sizeof probe / sizeof probe[0]));
    if (n != batch || img != image) {
        /* the probe compares gradients at the default shape */
    } else if (strcmp(policy, "1") == 0) {
        memcpy(probe_exact, probe, sizeof probe);
    } else {
        /* Pooled inputs must change conv weight gradients (else nothing was pooled). */
        double diff = 0, scale = 0;
        for (size_t i = 0; i < sizeof probe / sizeof probe[0]; i++)
            diff = fmax(diff, fabs(probe[i] - probe_exact[i])), scale = fmax(scale, fabs(probe_exact[i]));
        printf("  %s gradient differs from f = 1 by %.1f%% of its magnitude\n", probe_key, 100 * diff / scale);
        if (strcmp(policy, "baseline") == 0) /* f = 1, ReLU output saved in full: the same gradient */
            CHECK(diff / scale < 1e-6, "baseline changed %s's gradient by %.2e", probe_key, diff / scale);
        else
            CHECK(diff / scale > 1e-2, "policy %s left %s's gradient as with f = 1", policy, probe_key);
    }
    const char *key = "";
    double err = worst_key_error(&r.plan, grads, r.grads, &key);
    double loss_err = fabs(loss - ref_loss) / fabs(ref_loss);
    /* Running statistics after the step. */
    double stat_err = 0;
    for (int i = 0; i < r.plan.state_count_keys; i++) {
        const plan_tensor_info *t = &r.plan.state[i];
        float *buf = malloc(t->count * sizeof *buf);
        CHECK_OK(host, pp_model_param_read(m, t->key, buf, t->count));
        for (size_t j = 0; j < t->count; j++)
            stat_err = fmax(stat_err, fabs(buf[j] - r.state[t->offset + j]) / fmax(1.0, fabs(r.state[t->offset + j])));
        free(buf);
    }
    const char *conv_key = "";
    double conv_l2 = worst_conv_l2_error(&r.plan, grads, r.grads, &conv_key);
    printf("policy %-12s batch %2d %2dx%-2d loss %.6f (reference %.6f, rel. error %.1e); largest gradient error %.2e "
           "(%s); running statistics %.1e; conv weight gradients within %.1e (L2, %s)\n",
           policy, n, img, img, loss, ref_loss, loss_err, err, key, stat_err, conv_l2, conv_key);
    const double loss_tolerance = tolerance > 0 ? tolerance : 5e-2;
    CHECK(loss_err <= loss_tolerance, "loss error %.3e above %.1e", loss_err, loss_tolerance);
    if (tolerance > 0) CHECK(err <= tolerance, "gradient error %.3e (%s) above %.1e", err, key, tolerance);
    CHECK(stat_err <= stat_tolerance, "running statistics error %.3e above %.1e", stat_err, stat_tolerance);
    if (conv_tolerance > 0)
        CHECK(conv_l2 <= conv_tolerance, "conv weight gradient error %.3e (%s, L2) above %.1e", conv_l2, conv_key,
              conv_tolerance);

    pp_memory_report rep;
    CHECK_OK(host, pp_model_memory_report(m, &rep));
    size_t in_use, peak;
    pp_context_memory_stats(host, &in_use, &peak);
    printf("  device memory allocated by the model: %zu bytes; planned peak: %zu bytes\n", in_use - in_use_before,
           rep.peak);
    CHECK(in_use - in_use_before == rep.peak, "allocated %zu bytes, planned %zu", in_use - in_use_before, rep.peak);

    if (finite_differences) {
        /* Central differences of the reference's loss, h = 1e-4 in double: the truncation
         * error is O(h^2 * third derivative) and the rounding error O(1e-16 / h); a gradient
         * component is checked against both the reference and the kernels' value, relative
         * to the largest gradient of its parameter, with tolerance 1e-5 (ReLU kinks are not
         * crossed at this step size for these inputs; a crossing would show as a failure). */
        const char *keys[] = {"conv1.weight",          "bn1.weight",
                              "layer2.0.conv2.weight", "layer3.0.downsample.0.weight",
                              "layer3.0.bn2.bias",     "fc.weight"};
        double worst_fd = 0;
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            const plan_tensor_info *t = NULL;
            for (int i = 0; i < r.plan.param_count_keys; i++)
                if (strcmp(r.plan.params[i].key, keys[k]) == 0) t = &r.plan.params[i];
            CHECK(t != NULL, "no parameter %s", keys[k]);
            double scale = 1e-30;
            for (size_t j = 0; j < t->count; j++) scale = fmax(scale, fabs(r.grads[t->offset + j]));
            size_t idx = t->offset + (t->count * 7) / 11;
            double *g = calloc(r.plan.param_count, sizeof *g), *st = calloc(r.plan.state_count + 1, sizeof *st);
            double saved = r.params[idx], h = 1e-4;
            r.params[idx] = saved + h;
            double up = ref_net_step(&r.net, r.params, st, r.x, r.labels, g);
            r.params[idx] = saved - h;
            double down = ref_net_step(&r.net, r.params, st, r.x, r.labels, g);
            r.params[idx] = saved;
            double fd = (up - down) / (2 * h);
            double e_ref = fabs(fd - r.grads[idx]) / scale, e_kernel = fabs(fd - grads[idx]) / scale;
            printf("  finite difference %-30s[%zu]: %+.6e, reference %+.6e, kernels %+.6e\n", keys[k], idx - t->offset,
                   fd, r.grads[idx], (double)grads[idx]);
            CHECK(e_ref <= 1e-5, "%s: reference gradient off the finite difference by %.2e", keys[k], e_ref);
            CHECK(e_kernel <= 1e-5 + tolerance, "%s: kernel gradient off the finite difference by %.2e", keys[k],
                  e_kernel);
            worst_fd = fmax(worst_fd, fmax(e_ref, e_kernel));
            free(g), free(st);
        }
        printf("  finite differences: largest error %.2e\n", worst_fd);
    }
    free(grads);
    pp_model_destroy(m);
    run_free(&r);
    return err;
}

/* fp32 policies: running statistics within 1e-5 (relative to max(1, |value|)). */
static double check_policy(pp_context *none, pp_context *host, const char *policy, double tolerance,
                           int finite_differences)
{
    return check_policy_stats(none, host, policy, batch, image, tolerance, 1e-5, 0, finite_differences);
}

/* Ten SGD steps on a fixed batch halve the loss and fit the batch. Under act=bf16 the
 * forward reads the weights' bf16 copy, so this also shows sgd refreshing it: with a stale
 * copy every step's forward, and loss, would be the first's. */
static void check_training_lowers_loss(pp_context *host, const char *policy)
{
    pp_model_options o;
    pp_model_options_init(&o);
    o.model = "cifar_resnet8", o.policy = policy, o.batch = batch, o.height = image, o.width = image, o.classes = 10;
    pp_model *m;
    CHECK_OK(host, pp_model_create(host, &o, &m));
    CHECK_OK(host, pp_model_init_params(m, 3));
    float x[batch * 3 * image * image];
    fill(x, sizeof x / sizeof x[0], 11);
    int32_t labels[batch] = {2, 7};
    pp_sgd_options sgd = {0.05f, 0.9f, 5e-4f};
    float first = 0, loss = 0;
    for (int step = 0; step < 10; step++) {
        CHECK_OK(host, pp_model_set_batch(m, x, labels));
        CHECK_OK(host, pp_model_train_step(m, &sgd, &loss));
        if (step == 0) first = loss;
    }
    int correct = -1;
    CHECK_OK(host, pp_model_last_correct(m, &correct));
    printf("ten SGD steps on a fixed batch (policy %s): loss %.4f -> %.4f, %d of %d predicted right\n", policy, first,
           loss, correct, batch);
    CHECK(loss < 0.5 * first, "the loss did not halve: %.4f -> %.4f", first, loss);
    CHECK(correct == batch, "a fitted batch is predicted right: %d of %d", correct, batch);
    float logits[batch * 10];
    CHECK_OK(host, pp_model_infer(m, x, logits));
    for (size_t i = 0; i < sizeof logits / sizeof logits[0]; i++) CHECK(isfinite(logits[i]), "logit %zu", i);
    CHECK(pp_model_train_step(m, &sgd, &loss) == PP_ERR_INVALID_ARGUMENT, "a step after inference needs a new batch");
    int32_t bad[batch] = {0, 10};
    CHECK(pp_model_set_batch(m, x, bad) == PP_ERR_INVALID_ARGUMENT, "label 10 of 10 classes must be rejected");
    printf("  label out of range: %s\n", pp_last_error(host));
    pp_model_destroy(m);
}

static pp_context *none, *host; /* no backend (plans), host backend (the steps) */

/* fp32 kernels against a double reference through ~20 layers with BN: the errors of
 * each layer (about 1e-6 relative, layer_check.c) compound; BN at batch 2 with 2x2
 * maps divides by small standard deviations. 1e-3 relative to each parameter's
 * largest gradient is what fp32 can promise here. */
static void policy_1(void) { check_policy(none, host, "1", 1e-3, 1); }
static void policy_2(void) { check_policy(none, host, "2", 1e-3, 0); }
static void policy_4_max(void) { check_policy(none, host, "4,mode=max", 1e-3, 0); }

/* bf16 keeps 8 significant bits: the saved BN input is off by up to 2^-9 relative,
 * which moves the gradients by that order through x-hat: 2e-2. */
static void bn_bf16(void) { check_policy(none, host, "2,bn=bf16", 2e-2, 0); }
static void baseline(void) { check_policy(none, host, "baseline", 1e-3, 0); }

/* TF32 tensor-core convolutions, with their BN statistics from the MMA epilogue,
 * against the fp32-exact reference. Each product's operands carry TF32's 2^-11
 * rounding, about 3e-4 per layer (test_conv_kernels bounds every kernel): the loss
 * within 5e-2 and the running statistics, which average conv outputs, within 5e-3.
 * A wrong fragment or column mapping would be off by the values' own size.
 * Gradients are not compared element by element here (tolerance 0): at batch 2 with 4x4
 * maps, layer2.0.bn2.weight's gradient came out 0.31 off with TF32 and 0.40 with BF16.
 * The error does not shrink with the rounding, while the backward kernels alone in
 * TF32 give 8e-4 (BF16 8e-3). That is what a channel whose variance is below the
 * forward's rounding noise does: its normalised values are noise in any reduced
 * precision. Each conv weight gradient as a whole is: its L2 error measured 7.2e-2
 * of its norm (the noisy channels' share), checked against 0.15.
 */
static void math_tf32(void) { check_policy_stats(none, host, "2,math=tf32", batch, image, 0, 5e-3, 0.15, 0); }

/* bf16 storage (act=bf16): every activation, gradient and pooled save rounded to
 * bf16 (2^-9 relative each) and BF16 convolutions. Gradients are not compared, for
 * the reason above; the loss within 5e-2 and the running statistics, averages of
 * bf16-rounded conv outputs computed with BF16 products, within 1e-2 (four times
 * TF32's 2^-11 rounding is 2^-9: twice the TF32 bound, doubled for the rounding of
 * the stored outputs). Conv weight gradients as wholes (L2): 0.22 measured, bounded
 * by 0.4, which is the TF32 figure scaled by bf16's 4x coarser rounding, with margin;
 * an input gradient that overwrites instead of adding where a tensor feeds two
 * convolutions (ACCUMULATE ignored) measured 0.85. The step also checks that the
 * model allocates exactly its planned peak, which under act=bf16 includes the bf16
 * copy of the weights. */
static void act_bf16(void) { check_policy_stats(none, host, "2,act=bf16", batch, image, 0, 1e-2, 0.4, 0); }

/* Batch 16, 16x16 images: 4096 rows of 16 channels and 1024 of 32, so the plan slices
 * those BNs' backward (generator/poolprop/ops.lua bn_slices): the sliced kernels in a
 * whole step, with their workspaces placed by the planner. */
static void sliced_bn_backward(void)
{
    gen_plan_request req = {
        .model = "cifar_resnet8", .policy = "2", .batch = 16, .height = 16, .width = 16, .classes = 10, .sources = 1};
    gen_plan p;
    CHECK_OK(none, gen_plan_train(none, &req, &p));
    int sliced = 0;
    for (int i = 0; i < p.train.step_count; i++)
        sliced += strcmp(p.kernels[p.train.steps[i].kernel].op, "bn_backward_dx") == 0;
    printf("batch 16, 16x16: %d sliced BN backward steps\n", sliced);
    CHECK(sliced > 0, "batch 16, 16x16: the plan has no sliced BN backward");
    gen_plan_free(&p);
    check_policy_stats(none, host, "2", 16, 16, 1e-3, 1e-5, 0, 0);
}

static void training_lowers_loss(void) { check_training_lowers_loss(host, "2"); }
static void training_lowers_loss_act_bf16(void) { check_training_lowers_loss(host, "2,act=bf16"); }

/* Every policy's pooled-gradient probe compares with policy_1's. */
static const test_case tests[] = {
    TEST_CASE(policy_1, "f = 1: loss, gradients, statistics match the reference, which matches finite differences"),
    TEST_CASE_AFTER(policy_2, policy_1, "f = 2 avg: match the reference network that pools and un-pools conv inputs"),
    TEST_CASE_AFTER(policy_4_max, policy_1, "f = 4 max: match the reference network that pools conv inputs"),
    TEST_CASE_AFTER(bn_bf16, policy_1, "BN inputs saved as bf16: within the bf16 rounding of the saved input"),
    TEST_CASE_AFTER(baseline, policy_1, "the baseline policy: f = 1's gradients, the reference's numbers"),
    TEST_CASE_AFTER(math_tf32, policy_1,
                    "TF32 convolutions: loss, statistics and conv gradients (L2) within TF32's rounding"),
    TEST_CASE_AFTER(act_bf16, policy_1,
                    "bf16 storage: loss, statistics and conv gradients (L2) within bf16's rounding"),
    TEST_CASE(sliced_bn_backward,
              "batch 16, 16x16 images: the plan slices BN backward; the step matches the reference"),
    TEST_CASE(training_lowers_loss, "ten SGD steps on a fixed batch halve the loss and fit it; finite logits; a step "
                                    "after inference and label 10 of 10 are refused"),
    TEST_CASE(training_lowers_loss_act_bf16, "the same with bf16 storage"),
};

/* What test_network quick leaves out: everything but f = 1 and f = 2. */
static int full_only(const test_case *t)
{
    return t->run == policy_4_max || t->run == bn_bf16 || t->run == baseline || t->run == math_tf32 ||
           t->run == act_bf16 || t->run == training_lowers_loss_act_bf16;
}

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    int quick = argc > 1 && strcmp(argv[1], "quick") == 0;
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_NONE;
    CHECK_OK(NULL, pp_context_create(&o, &none));
    o.backend = PP_BACKEND_HOST;
    o.host_threads = 2;
    CHECK_OK(NULL, pp_context_create(&o, &host));
    test_case chosen[sizeof tests / sizeof tests[0]];
    int n = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!quick || !full_only(&tests[i])) chosen[n++] = tests[i];
    int status = test_run_cases(chosen, n, only);
    pp_context_destroy(host);
    pp_context_destroy(none);
    return status;
}
