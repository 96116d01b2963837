/* test_init.c - parameter initialisation as torchvision does it, on the host: conv
 * weights N(0, 2/fan_out) with fan_out = K*R*S, BN weight 1 and bias 0, running mean 0 and
 * variance 1, fc weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)); deterministic in the
 * seed; state_dict order and shapes. Statistical checks use tolerances of several
 * standard errors for the sample sizes involved (stated at each check). */
#include "test_util.h"

#include <math.h>
#include <string.h>

static const float *find(const pp_params *ps, const char *key, pp_param_info *info)
{
    int n;
    pp_params_count(ps, &n);
    for (int i = 0; i < n; i++) {
        const float *data;
        pp_params_get(ps, i, info, &data);
        if (strcmp(info->key, key) == 0) return data;
    }
    CHECK(0, "no entry %s", key);
    return NULL;
}

static void moments(const float *a, size_t n, double *mean, double *std, double *lo, double *hi)
{
    double s = 0, q = 0;
    *lo = INFINITY, *hi = -INFINITY;
    for (size_t i = 0; i < n; i++) s += a[i], *lo = fmin(*lo, a[i]), *hi = fmax(*hi, a[i]);
    *mean = s / n;
    for (size_t i = 0; i < n; i++) q += (a[i] - *mean) * (a[i] - *mean);
    *std = sqrt(q / n);
}

static pp_context *ctx;
static pp_params *a, *b, *c; /* resnet18's parameters: a and b of seed 1, c of seed 2 */

static void state_dict_order(void)
{
    int n;
    pp_params_count(a, &n);
    /* 62 trainable tensors + 20 BN layers x 2 running statistics */
    CHECK(n == 62 + 40, "entries: %d", n);
    const char *order[] = {"conv1.weight",     "bn1.weight",      "bn1.bias",
                           "bn1.running_mean", "bn1.running_var", "layer1.0.conv1.weight"};
    for (int i = 0; i < 6; i++) {
        pp_param_info info;
        const float *d;
        pp_params_get(a, i, &info, &d);
        CHECK(strcmp(info.key, order[i]) == 0, "entry %d is %s, want %s", i, info.key, order[i]);
    }
}

static void conv_weights_normal(void)
{
    pp_param_info info;
    double mean, std, lo, hi;
    const float *w = find(a, "conv1.weight", &info);
    CHECK(info.rank == 4 && info.shape[0] == 64 && info.shape[1] == 3 && info.shape[3] == 7, "conv1.weight shape");
    moments(w, info.count, &mean, &std, &lo, &hi);
    double want = sqrt(2.0 / (64 * 49));
    /* 9408 samples: the sample std is within 1.5% of sigma at > 3 standard errors. */
    printf("conv1.weight: mean %.5f std %.5f (want 0, %.5f)\n", mean, std, want);
    CHECK(fabs(std / want - 1) < 0.03 && fabs(mean) < 4 * want / sqrt(info.count), "conv1.weight moments");
    w = find(a, "layer4.1.conv2.weight", &info);
    moments(w, info.count, &mean, &std, &lo, &hi);
    want = sqrt(2.0 / (512 * 9));
    printf("layer4.1.conv2.weight: std %.6f (want %.6f)\n", std, want);
    CHECK(fabs(std / want - 1) < 0.01, "layer4.1.conv2.weight std");
}

static void fc_uniform(void)
{
    pp_param_info info;
    double mean, std, lo, hi;
    const float *w = find(a, "fc.weight", &info);
    moments(w, info.count, &mean, &std, &lo, &hi);
    double bound = 1 / sqrt(512.0);
    printf("fc.weight: range [%.5f, %.5f], std %.5f (want within +-%.5f, std %.5f)\n", lo, hi, std, bound,
           bound / sqrt(3.0));
    CHECK(lo >= -bound && hi <= bound && fabs(std / (bound / sqrt(3.0)) - 1) < 0.01, "fc.weight uniform");
    w = find(a, "fc.bias", &info);
    moments(w, info.count, &mean, &std, &lo, &hi);
    CHECK(lo >= -bound && hi <= bound && hi - lo > bound, "fc.bias uniform in +-1/sqrt(512)");
}

static void bn_constants(void)
{
    pp_param_info info, info_b;
    const float *ones = find(a, "layer2.0.bn1.weight", &info), *zeros = find(a, "layer2.0.bn1.bias", &info_b);
    for (size_t i = 0; i < info.count; i++) CHECK(ones[i] == 1 && zeros[i] == 0, "BN weight 1, bias 0");
    const float *rv = find(a, "layer3.1.bn2.running_var", &info), *rm = find(a, "layer3.1.bn2.running_mean", &info_b);
    CHECK(info.is_statistic, "running_var is a statistic");
    for (size_t i = 0; i < info.count; i++) CHECK(rv[i] == 1 && rm[i] == 0, "running stats 1/0");
}

static void seed_determinism(void)
{
    pp_param_info info, info_b;
    const float *wa = find(a, "layer1.0.conv1.weight", &info), *wb = find(b, "layer1.0.conv1.weight", &info_b);
    CHECK(memcmp(wa, wb, info.count * sizeof *wa) == 0, "the same seed gives the same parameters");
    const float *wc = find(c, "layer1.0.conv1.weight", &info_b);
    CHECK(memcmp(wa, wc, info.count * sizeof *wa) != 0, "another seed gives other parameters");
}

static const test_case tests[] = {
    TEST_CASE(state_dict_order, "102 entries (62 trainable, 40 BN statistics), the first six in torchvision's order"),
    TEST_CASE(conv_weights_normal, "conv weights N(0, 2/fan_out): conv1 and layer4.1.conv2 moments, shape"),
    TEST_CASE(fc_uniform, "fc weight and bias U(-1/sqrt(512), 1/sqrt(512)): range and std"),
    TEST_CASE(bn_constants, "BN weight 1, bias 0, running mean 0, variance 1 (a statistic)"),
    TEST_CASE(seed_determinism, "the same seed gives the same parameters, another seed others"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_NONE;
    CHECK_OK(NULL, pp_context_create(&o, &ctx));
    pp_model_options mo;
    pp_model_options_init(&mo);
    mo.model = "resnet18";
    CHECK_OK(ctx, pp_params_init(ctx, &mo, 1, &a));
    CHECK_OK(ctx, pp_params_init(ctx, &mo, 1, &b));
    CHECK_OK(ctx, pp_params_init(ctx, &mo, 2, &c));
    int status = TEST_RUN(tests, only);
    pp_params_destroy(a), pp_params_destroy(b), pp_params_destroy(c);
    pp_context_destroy(ctx);
    if (!only) printf("initialisation matches torchvision's distributions\n");
    return status;
}
