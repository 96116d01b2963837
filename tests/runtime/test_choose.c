/* test_choose.c - the policy chooser (runtime/src/choose.c, pp_policy_choose):
 *   knapsack   a toy of 3 layers with hand-computed errors and bytes has the optimum worked
 *              out below, and 300 random instances (bytes multiples of the unit) agree with
 *              an exhaustive search; a capacity below the cheapest picks is refused;
 *   budgets    on cifar_resnet8 (batch 16, 16x16, probes of 4 images at 8x8, factors 1 and 4) two budgets
 *              between uniform f=4's and f=1's peaks: the chosen policy's planned peak (as
 *              the planner computes it from the returned policy text and .lua file) is within
 *              each, its total error is the sum of its layers', and it is no worse than the
 *              uniform policies that fit;
 *   refusals   a budget below the weights' own size, a budget no allowed policy meets (by how
 *              much, the largest batch), factor 3, mode bits 4, no probes, a probe whose loss
 *              is NaN. */
#include "choose.h"
#include "test_util.h"

#include <math.h>

static pp_context *ctx;

static void toy_knapsack(void)
{
    /* Layer choices (error, bytes): f=1 costs its whole input, f=2 a quarter, f=4 1/16.
     *   layer 0: (0, 64) (0.30, 16) (0.50, 4)
     *   layer 1: (0, 32) (0.10, 8)  (0.40, 2)
     *   layer 2: (0, 16) (0.20, 4)  (0.25, 1)
     * Capacity 40: keeping layer 0 whole (64) does not fit; with layer 0 at f=2 (16) the rest
     * has 24: layer 1 whole (32) does not fit, so layer 1 at f=2 (8) leaves 16 for layer 2
     * whole (16): 0.30 + 0.10 + 0 = 0.40. Every other pick within 40 errs more (layer 0 at f=4
     * costs 0.50 alone). */
    const choose_item items[9] = {{0, 64},   {0.30, 16}, {0.50, 4}, {0, 32},  {0.10, 8},
                                  {0.40, 2}, {0, 16},    {0.20, 4}, {0.25, 1}};
    int pick[3];
    double err;
    CHECK(choose_knapsack(items, 3, 3, 40, 40, pick, &err) == 0, "no pick within 40");
    CHECK(pick[0] == 1 && pick[1] == 1 && pick[2] == 0 && fabs(err - 0.40) < 1e-12,
          "picked %d %d %d (error %g), expected 1 1 0 (0.40)", pick[0], pick[1], pick[2], err);
    CHECK(choose_knapsack(items, 3, 3, 6, 6, pick, &err) == -1, "capacity 6 is below the cheapest picks (7 bytes)");
    CHECK(choose_knapsack(items, 3, 3, 7, 7, pick, &err) == 0 && pick[0] == 2 && pick[1] == 2 && pick[2] == 2,
          "capacity 7: only the cheapest picks fit");
}

static void random_knapsacks(void)
{
    uint64_t rng = 0x243f6a8885a308d3ull;
    for (int round = 0; round < 300; round++) {
        enum {
            layers = 5,
            choices = 3
        };
        choose_item items[layers * choices];
        for (int i = 0; i < layers * choices; i++)
            items[i] = (choose_item){(double)(test_rand_u32(&rng) % 1000) / 100.0, test_rand_u32(&rng) % 20};
        size_t capacity = test_rand_u32(&rng) % 60;
        int pick[layers];
        double err = 0;
        /* Resolution = capacity: a unit of one byte, so the programme is exact. */
        int rc = choose_knapsack(items, layers, choices, capacity, capacity ? (int)capacity : 1, pick, &err);
        double best = INFINITY;
        for (int code = 0; code < 243; code++) { /* 3^5 picks */
            int c = code;
            size_t bytes = 0;
            double e = 0;
            for (int l = 0; l < layers; l++, c /= 3)
                bytes += items[l * choices + c % 3].bytes, e += items[l * choices + c % 3].error;
            if (bytes <= capacity && e < best) best = e;
        }
        if (best == INFINITY) {
            CHECK(rc == -1, "round %d: nothing fits %zu, yet a pick was made", round, capacity);
            continue;
        }
        CHECK(rc == 0 && fabs(err - best) < 1e-9, "round %d: error %g, exhaustive optimum %g", round, err, best);
        size_t bytes = 0;
        double e = 0;
        for (int l = 0; l < layers; l++)
            bytes += items[l * choices + pick[l]].bytes, e += items[l * choices + pick[l]].error;
        CHECK(bytes <= capacity && fabs(e - err) < 1e-9, "round %d: the pick's bytes %zu or error %g disagree", round,
              bytes, e);
    }
}

/* Probe batches for cifar_resnet8: count batches of 4 images of 8x8, filled by an LCG. */
enum {
    probes = 2,
    probe_n = 4,
    probe_hw = 8
};
static float probe_images[probes][probe_n * 3 * probe_hw * probe_hw];
static int32_t probe_classes[probes][probe_n];
static const float *probe_x[probes] = {probe_images[0], probe_images[1]};
static const int32_t *probe_labels[probes] = {probe_classes[0], probe_classes[1]};

static void options(pp_choice_options *o, size_t budget)
{
    pp_choice_options_init(o);
    o->model.model = "cifar_resnet8", o->model.batch = 16, o->model.height = o->model.width = 16;
    o->budget = budget;
    o->factors[0] = 1, o->factors[1] = 4, o->factor_count = 2; /* two probe models: f=1 and f=4 */
    o->probe_count = probes, o->probe_batch = probe_n, o->probe_height = o->probe_width = probe_hw;
    o->probe_x = probe_x, o->probe_labels = probe_labels;
}

static size_t peak_of(const char *policy)
{
    pp_model_options mo;
    pp_model_options_init(&mo);
    mo.model = "cifar_resnet8", mo.batch = 16, mo.height = mo.width = 16, mo.policy = policy;
    pp_memory_report r;
    CHECK_OK(ctx, pp_plan_memory(ctx, &mo, &r));
    return r.peak;
}

static void budgets_respected(void)
{
    uint32_t state = 99;
    for (int b = 0; b < probes; b++) {
        for (size_t i = 0; i < sizeof probe_images[b] / sizeof probe_images[b][0]; i++)
            probe_images[b][i] = test_lcg_signed(&state);
        for (int i = 0; i < probe_n; i++) probe_classes[b][i] = (b * 3 + i) % 10;
    }
    const size_t one = peak_of("1"), four = peak_of("4");
    const size_t budgets[2] = {four + (one - four) / 4, four + (one - four) * 3 / 4};
    char path[1100], dir[1024];
    test_temp_dir(dir, sizeof dir, "choose");
    for (int i = 0; i < 2; i++) {
        pp_choice_options o;
        options(&o, budgets[i]);
        pp_choice c;
        CHECK_OK(ctx, pp_policy_choose(ctx, &o, &c));
        CHECK(c.peak <= budgets[i] && peak_of(c.policy) == c.peak, "budget %zu: peak %zu, planner %zu for %s",
              budgets[i], c.peak, peak_of(c.policy), c.policy);
        snprintf(path, sizeof path, "%s/policy%d.lua", dir, i);
        FILE *f = fopen(path, "w");
        CHECK(f && fputs(c.policy_file, f) >= 0 && fclose(f) == 0, "write %s", path);
        CHECK(peak_of(path) == c.peak, "the .lua policy file plans %zu, the choice %zu", peak_of(path), c.peak);
        double sum = 0;
        for (int l = 0; l < c.layer_count; l++) {
            int k = 0;
            while (o.factors[k] != c.layers[l].factor) k++;
            sum += c.layers[l].error[k][c.mode];
        }
        CHECK(fabs(sum - c.total_error) < 1e-9 * (1 + sum), "total error %g, the layers' %g", c.total_error, sum);
        for (int u = 0; u < c.uniform_count; u++)
            if (c.uniform[u].fits)
                CHECK(c.total_error <= c.uniform[u].total_error + 1e-12,
                      "budget %zu: uniform f=%d fits with error %g below the choice's %g", budgets[i],
                      c.uniform[u].factor, c.uniform[u].total_error, c.total_error);
        printf("budget %zu (f=4 %zu, f=1 %zu): peak %zu, error %.4f; %s\n", budgets[i], four, one, c.peak,
               c.total_error, c.policy);
        pp_choice_free(&c);
    }
    test_remove_dir(dir);
}

static void refusals(void)
{
    pp_choice_options o;
    pp_choice c;
    options(&o, 1000);
    CHECK(pp_policy_choose(ctx, &o, &c) == PP_ERR_INVALID_ARGUMENT && strstr(pp_last_error(ctx), "below what"),
          "a budget below the weights: %s", pp_last_error(ctx));
    options(&o, peak_of("4") - 1);
    CHECK(pp_policy_choose(ctx, &o, &c) == PP_ERR_OUT_OF_MEMORY && strstr(pp_last_error(ctx), "1 more than") &&
              strstr(pp_last_error(ctx), "the largest batch that fits it is"),
          "one byte short of f=4: %s", pp_last_error(ctx));
    options(&o, peak_of("1"));
    o.factors[1] = 3;
    o.factor_count = 2;
    CHECK(pp_policy_choose(ctx, &o, &c) == PP_ERR_INVALID_ARGUMENT && strstr(pp_last_error(ctx), "factor 3"),
          "factor 3: %s", pp_last_error(ctx));
    options(&o, peak_of("1"));
    o.modes = 4;
    CHECK(pp_policy_choose(ctx, &o, &c) == PP_ERR_INVALID_ARGUMENT && strstr(pp_last_error(ctx), "modes"),
          "modes 4: %s", pp_last_error(ctx));
    options(&o, peak_of("1"));
    o.probe_count = 0;
    CHECK(pp_policy_choose(ctx, &o, &c) == PP_ERR_INVALID_ARGUMENT && strstr(pp_last_error(ctx), "no probe"),
          "no probes: %s", pp_last_error(ctx));
    options(&o, 0);
    CHECK(pp_policy_choose(ctx, &o, &c) == PP_ERR_INVALID_ARGUMENT && strstr(pp_last_error(ctx), "0 bytes"),
          "budget 0: %s", pp_last_error(ctx));
    /* A probe whose loss is NaN: nothing can be measured. */
    static float nan_images[probe_n * 3 * probe_hw * probe_hw];
    for (size_t i = 0; i < sizeof nan_images / sizeof nan_images[0]; i++) nan_images[i] = NAN;
    const float *nan_x[probes] = {nan_images, nan_images};
    options(&o, peak_of("1"));
    o.probe_x = nan_x;
    CHECK(pp_policy_choose(ctx, &o, &c) == PP_ERR_INVALID_ARGUMENT && strstr(pp_last_error(ctx), "diverging"),
          "NaN probes: %s", pp_last_error(ctx));
    printf("refused: %s\n", pp_last_error(ctx));
}

static const test_case tests[] = {
    TEST_CASE(toy_knapsack, "3 layers with hand-computed errors: the known optimum; too small a capacity refused"),
    TEST_CASE(random_knapsacks, "300 random instances agree with an exhaustive search"),
    TEST_CASE(budgets_respected, "cifar_resnet8 under two budgets: planned peak within each, the file plans the same, "
                                 "no worse than a uniform policy that fits"),
    TEST_CASE_AFTER(refusals, budgets_respected,
                    "budget below the weights or beyond reach, factor 3, bad modes, no probes, NaN probes"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_HOST;
    o.host_threads = 2;
    CHECK_OK(ctx, pp_context_create(&o, &ctx));
    int status = TEST_RUN(tests, only);
    pp_context_destroy(ctx);
    return status;
}
