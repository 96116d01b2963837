/* test_tune.c - the tuner on the host backend: compile variants, verify them against the
 * fp32 reference, time, select, persist in the device's tuning database, and reload it
 * when a model is built; and what happens to a corrupt or stale database, an exhausted
 * time budget, variants that cannot compile for the target (tensor cores on sm_75) and bad
 * requests. Each check prints what it compared.
 * Usage: test_tune [cuda]. With cuda (exit 77 without a GPU of sm_80 or later) it tunes on
 * the GPU instead: every TF32 and BF16 candidate tried there must pass its check against the
 * fp32 reference, which tests the tensor cores' real fragment layouts. */
#define _GNU_SOURCE
#include "context.h"
#include "gen_layer.h"
#include "gen_plan.h"
#include "nvrtc_compile.h"
#include "test_util.h"
#include "tune.h"
#include "tunedb.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int warnings;
static char last_warning[1024];

static void on_log(void *user, pp_log_level level, const char *message)
{
    (void)user;
    if (level != PP_LOG_WARNING) return;
    warnings++;
    snprintf(last_warning, sizeof last_warning, "%s", message);
    printf("  (warning) %s\n", message);
}

static char tuning_dir[256];
static pp_backend backend = PP_BACKEND_HOST;
static const char *model_name = "cifar_resnet8";

static pp_context *make_ctx(int arch, int ignore_tuning)
{
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = backend;
    o.host_threads = 2;
    o.arch = arch;
    o.tuning_dir = tuning_dir;
    o.ignore_tuning = ignore_tuning;
    o.log = on_log;
    pp_context *ctx = NULL;
    pp_status st = pp_context_create(&o, &ctx);
    CHECK(st == PP_OK, "pp_context_create: %s", ctx ? pp_last_error(ctx) : "");
    return ctx;
}

static void tune_options(pp_tune_options *t, const char *policy, int max_variants)
{
    pp_tune_options_init(t);
    t->model.model = model_name;
    t->model.policy = policy;
    t->model.batch = 1;
    t->model.height = t->model.width = 8;
    t->max_variants = max_variants;
    t->warmup = 1;
    t->repeats = 3;
}

static gen_tuning targets_of(pp_context *ctx, const char *policy)
{
    gen_plan_request req = {.model = model_name, .policy = policy, .batch = 1, .height = 8, .width = 8};
    gen_tuning t;
    CHECK_OK(ctx, gen_plan_tuning_targets(ctx, &req, &t));
    return t;
}

static tunedb_identity identity_of(pp_context *ctx)
{
    tunedb_identity id;
    memset(&id, 0, sizeof id);
    snprintf(id.device, sizeof id.device, "%s", ctx->device_model);
    id.arch = ctx->device_cc;
    id.sm_count = ctx->device_units;
    CHECK_OK(ctx, nvrtc_version_string(ctx, id.toolkit, sizeof id.toolkit));
    CHECK_OK(ctx, gen_plan_tuning_version(ctx, id.generator, sizeof id.generator));
    snprintf(id.backend, sizeof id.backend, "%s", backend == PP_BACKEND_CUDA ? "cuda" : "host");
    return id;
}

static int events;
static void count_events(void *user, const pp_tune_event *ev)
{
    (void)user;
    if (ev->variant >= 0) events++;
}

/* The variant the model built with policy uses for the kernel of op on the layer whose
 * kernel names start with prefix (e.g. "conv_fwd_n1c3h8w8_k16r3s3_s1p1_f2avg", which the
 * model's form "..._bnstats_v7" also starts with). */
static int model_variant(pp_context *ctx, const char *policy, const char *prefix)
{
    pp_model_options mo;
    pp_model_options_init(&mo);
    mo.model = model_name;
    mo.policy = policy;
    mo.batch = 1;
    mo.height = mo.width = 8;
    pp_model *m;
    CHECK_OK(ctx, pp_model_create(ctx, &mo, &m));
    int n, variant = -1;
    CHECK_OK(ctx, pp_model_kernel_count(m, &n));
    for (int i = 0; i < n; i++) {
        pp_kernel_info info;
        CHECK_OK(ctx, pp_model_kernel_info_get(m, i, &info));
        /* The kernel's forms add to the name before the variant: _bnstats, _nosave, _acc. */
        const char *v = strrchr(info.name, '_');
        if (strncmp(info.name, prefix, strlen(prefix)) == 0 && info.name[strlen(prefix)] == '_' && v && v[1] == 'v')
            variant = atoi(v + 2);
    }
    pp_model_destroy(m);
    CHECK(variant >= 0, "the model has no kernel %s_v<n>", prefix);
    return variant;
}

/* pp_model_bundle_write on ctx writes the kernels pp_model_create on ctx builds for the
 * training step (names carry shape, form and variant; the model also builds its inference
 * kernels), among them a kernel of prefix in the given variant. */
static void check_bundle_is_model_build(pp_context *ctx, const char *policy, const char *prefix, int variant)
{
    pp_model_options mo;
    pp_model_options_init(&mo);
    mo.model = model_name;
    mo.policy = policy;
    mo.batch = 1;
    mo.height = mo.width = 8;
    char out[300];
    snprintf(out, sizeof out, "%s/bundle", tuning_dir);
    pp_model_bundle_info info;
    CHECK_OK(ctx, pp_model_bundle_write(ctx, &mo, out, &info));
    pp_model *m;
    CHECK_OK(ctx, pp_model_create(ctx, &mo, &m));
    int n;
    CHECK_OK(ctx, pp_model_kernel_count(m, &n));
    CHECK(info.kernels > 0 && info.kernels <= n && info.tuned_entries > 0 && strcmp(info.math, "tf32") == 0,
          "bundle: %d kernels (model %d), %d tuned entries, math %s", info.kernels, n, info.tuned_entries, info.math);
    char path[700];
    snprintf(path, sizeof path, "%s/kernels", out);
    DIR *d = opendir(path);
    CHECK(d != NULL, "%s", path);
    int files = 0, found = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".cu") != 0) continue;
        files++;
        int built = 0;
        for (int i = 0; i < n && !built; i++) {
            pp_kernel_info k;
            CHECK_OK(ctx, pp_model_kernel_info_get(m, i, &k));
            built = strlen(k.name) == len - 3 && strncmp(k.name, e->d_name, len - 3) == 0;
        }
        CHECK(built, "bundle kernel %s is one the model build compiles", e->d_name);
        const char *v = strrchr(e->d_name, '_');
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && e->d_name[strlen(prefix)] == '_' && v && v[1] == 'v' &&
            atoi(v + 2) == variant)
            found = 1;
    }
    closedir(d);
    pp_model_destroy(m);
    CHECK(files == info.kernels, "%d kernel files, %d reported", files, info.kernels);
    CHECK(found, "the bundle has %s in variant %d", prefix, variant);
    printf("pp_model_bundle_write: %d training-step kernels, each one the model build compiles (%d with inference), "
           "%s in v%d among them\n",
           files, n, prefix, variant);
}

/* "conv_fwd_n1c3h8w8_k16r3s3_s1p1_f2avg:tf32" -> "conv_fwd_n1c3h8w8_k16r3s3_s1p1_f2avg" */
static void kernel_prefix(const char *key, char *out, size_t size)
{
    snprintf(out, size, "%.*s", (int)strcspn(key, ":"), key);
}

/* The tuner's acceptance check can fail: outputs of the fp32 reference itself pass with
 * excess 0; one element moved by 0.1% of the output's range fails the fp32 bound, by 5%
 * the BF16 bound; a NaN fails every bound; a wrong pooled input fails the forward. */
static void test_acceptance(pp_context *ctx)
{
    pp_layer_desc d;
    pp_layer_desc_init(&d);
    d.n = 2, d.c = 8, d.h = 9, d.w = 9, d.k = 12, d.r = 3, d.s = 3, d.stride = 1, d.pad = 1, d.pool = 2;
    pp_layer *layer;
    CHECK_OK(ctx, pp_layer_create(ctx, &d, &layer));
    pp_layer_shape s;
    CHECK_OK(ctx, pp_layer_shape_get(layer, &s));
    size_t total = s.y_elems + s.xp_elems + s.x_elems + s.w_elems;
    float *in = malloc(sizeof(float) * (2 * (s.x_elems + s.w_elems + s.y_elems)));
    float *buf = malloc(sizeof(float) * 3 * total);
    CHECK(in && buf, "out of memory");
    float *x = in, *w = x + s.x_elems, *dy = w + s.w_elems;
    float *ax = dy + s.y_elems, *aw = ax + s.x_elems, *ady = aw + s.w_elems;
    uint32_t st = 7;
    for (size_t i = 0; i < s.x_elems + s.w_elems + s.y_elems; i++) {
        st = st * 1664525u + 1013904223u;
        in[i] = (float)((st >> 8) / 16777216.0 * 2.0 - 1.0);
        ax[i] = fabsf(in[i]);
    }
    tune_outputs o[3];
    for (int k = 0; k < 3; k++) {
        o[k].y = buf + k * total;
        o[k].xp = o[k].y + s.y_elems;
        o[k].dx = o[k].xp + s.xp_elems;
        o[k].dw = o[k].dx + s.x_elems;
    }
    CHECK_OK(ctx, pp_layer_run(layer, x, w, dy, o[0].y, o[0].xp, o[0].dx, o[0].dw));
    CHECK_OK(ctx, pp_layer_run(layer, ax, aw, ady, o[2].y, o[2].xp, o[2].dx, o[2].dw));
    memcpy(o[1].y, o[0].y, sizeof(float) * total);
    const char *ops[3] = {"conv_fwd", "conv_bwd_data", "conv_bwd_weight"};
    float *first[3] = {o[1].y, o[1].dx, o[1].dw};
    const float *ref_first[3] = {o[0].y, o[0].dx, o[0].dw};
    size_t counts[3] = {s.y_elems, s.x_elems, s.w_elems};
    for (int k = 0; k < 3; k++) {
        double same = tune_op_excess(ops[k], "fp32", &d, &s, &o[1], &o[0], &o[2]);
        float range = 0;
        for (size_t i = 0; i < counts[k]; i++) range = fmaxf(range, fabsf(ref_first[k][i]));
        size_t at = counts[k] / 2;
        first[k][at] = ref_first[k][at] + 1e-3f * range;
        double fp32 = tune_op_excess(ops[k], "fp32", &d, &s, &o[1], &o[0], &o[2]);
        first[k][at] = ref_first[k][at] + 5e-2f * range;
        double bf16 = tune_op_excess(ops[k], "bf16", &d, &s, &o[1], &o[0], &o[2]);
        first[k][at] = NAN;
        double nan_excess = tune_op_excess(ops[k], "tf32", &d, &s, &o[1], &o[0], &o[2]);
        first[k][at] = ref_first[k][at];
        printf("acceptance %s: itself %.3f, +0.1%% of range under fp32 %.1f, +5%% under bf16 %.2f, NaN %g "
               "(of allowed)\n",
               ops[k], same, fp32, bf16, nan_excess);
        CHECK(same == 0 && fp32 > 1 && bf16 > 1 && isinf(nan_excess), "%s: the check fails wrong outputs", ops[k]);
    }
    /* A wrong pooled input fails conv_fwd even when y is right. */
    o[1].xp[0] += 1e-3f;
    double xp_excess = tune_op_excess("conv_fwd", "tf32", &d, &s, &o[1], &o[0], &o[2]);
    printf("acceptance conv_fwd with xp[0] off by 1e-3: %.1f of allowed\n", xp_excess);
    CHECK(xp_excess > 1, "a wrong xp fails");
    free(in), free(buf);
    pp_layer_destroy(layer);
}

/* On the GPU: TF32 and BF16 candidates verified against the fp32 reference and timed
 * with CUDA events, and the database written and read back. */
static int tune_on_gpu(void)
{
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_CUDA;
    pp_context *probe = NULL;
    pp_status st = pp_context_create(&o, &probe);
    if (st == PP_ERR_NO_DEVICE || (st == PP_OK && probe->device_cc < 80)) {
        printf("skipped: %s\n", st == PP_OK ? "tensor cores need sm_80 or later" : pp_last_error(probe));
        pp_context_destroy(probe);
        return PP_TEST_SKIP;
    }
    CHECK_OK(probe, st);
    pp_context_destroy(probe);
    backend = PP_BACKEND_CUDA;
    pp_context *ctx = make_ctx(0, 0);
    printf("device: %s\n", pp_context_device_name(ctx));
    test_acceptance(ctx);
    const char *policies[2] = {"2,math=tf32", "2,math=bf16"};
    for (int p = 0; p < 2; p++) {
        pp_tune_options to;
        tune_options(&to, policies[p], 4);
        to.model.batch = 4;
        to.model.height = to.model.width = 32;
        pp_tune_report r;
        CHECK_OK(ctx, pp_tune(ctx, &to, NULL, NULL, &r));
        printf("GPU tune %s: %d kernels, %d tried, %d ok, %d wrong, %d unusable; kernel time sum %.4f ms -> %.4f ms\n",
               policies[p], r.kernels, r.tried, r.ok, r.wrong, r.unusable, r.default_ms, r.best_ms);
        CHECK(r.wrong == 0 && r.unusable == 0 && r.ok == r.tried && r.tried > 0, "every candidate verifies on the GPU");
        tunedb_identity id = identity_of(ctx);
        tunedb db;
        tunedb_load_outcome outcome;
        CHECK_OK(ctx, tunedb_load(ctx, r.database, &id, &db, &outcome));
        CHECK(outcome == TUNEDB_LOADED && db.count >= r.kernels, "database read back");
        tunedb_free(&db);
    }
    pp_context_destroy(ctx);
    printf("GPU tuning checks passed\n");
    return 0;
}

int main(int argc, char **argv)
{
    snprintf(tuning_dir, sizeof tuning_dir, "/tmp/pp-tune-XXXXXX");
    CHECK(mkdtemp(tuning_dir) != NULL, "mkdtemp");
    if (argc > 1 && strcmp(argv[1], "cuda") == 0) {
        int rc = tune_on_gpu();
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tuning_dir);
        if (system(cmd) != 0) printf("note: could not remove %s\n", tuning_dir);
        return rc;
    }
    const char *policy = "2,math=tf32";

    /* 1. Tune: every target, the first two candidates (the TF32 default and fp32 0). */
    pp_context *ctx = make_ctx(0, 0);
    test_acceptance(ctx);
    gen_tuning targets = targets_of(ctx, policy);
    int expect_tried = 0;
    for (int i = 0; i < targets.count; i++)
        expect_tried += targets.targets[i].candidate_count < 2 ? targets.targets[i].candidate_count : 2;
    pp_tune_options to;
    tune_options(&to, policy, 2);
    pp_tune_report r;
    CHECK_OK(ctx, pp_tune(ctx, &to, count_events, NULL, &r));
    printf("tune %s policy %s: %d kernels (expected %d), %d tried (expected %d), %d ok, %d wrong, %d unusable, "
           "%d skipped, %d progress events, %.1f s\n",
           model_name, policy, r.kernels, targets.count, r.tried, expect_tried, r.ok, r.wrong, r.unusable, r.skipped,
           events, r.seconds);
    /* 8 distinct conv shapes x 3 ops, less conv1's input gradient (the image gets none). */
    CHECK(r.kernels == targets.count && targets.count == 23, "kernel count");
    CHECK(r.tried == expect_tried && r.ok == expect_tried && r.wrong == 0 && r.unusable == 0 && r.skipped == 0,
          "every tried variant verifies on the host");
    CHECK(events == expect_tried, "one progress event per variant");
    char path[4096];
    CHECK_OK(ctx, pp_context_tuning_database(ctx, path, sizeof path));
    CHECK(strcmp(path, r.database) == 0, "report names the database: %s vs %s", r.database, path);
    CHECK(access(path, R_OK) == 0, "database written: %s", path);

    /* 2. What the database holds: every trial, the fastest verified one, the default's time. */
    tunedb_identity id = identity_of(ctx);
    tunedb db;
    tunedb_load_outcome outcome;
    CHECK_OK(ctx, tunedb_load(ctx, path, &id, &db, &outcome));
    CHECK(outcome == TUNEDB_LOADED && db.count == targets.count, "reloaded %d entries, outcome %d", db.count, outcome);
    for (int i = 0; i < targets.count; i++) {
        const gen_tuning_target *t = &targets.targets[i];
        tunedb_entry *e = tunedb_find(&db, t->key);
        CHECK(e != NULL, "entry for %s", t->key);
        CHECK(e->trial_count == 2, "%s: %d trials", t->key, e->trial_count);
        CHECK(e->trials[0].variant == t->candidates[0] && e->trials[1].variant == t->candidates[1],
              "%s: trials in candidate order", t->key);
        int best = -1;
        double best_ms = 0;
        for (int k = 0; k < e->trial_count; k++) {
            const tunedb_trial *tr = &e->trials[k];
            CHECK(tr->status == TUNEDB_OK && tr->median_ms > 0 && tr->max_error >= 0 && tr->max_error <= 1,
                  "%s v%d: status %d, %.4f ms, error %.3f", t->key, tr->variant, tr->status, tr->median_ms,
                  tr->max_error);
            if (best < 0 || tr->median_ms < best_ms) best = tr->variant, best_ms = tr->median_ms;
        }
        CHECK(e->best_variant == best && e->best_ms == best_ms, "%s: best v%d, expected v%d", t->key, e->best_variant,
              best);
        CHECK(e->default_ms == e->trials[0].median_ms, "%s: default_ms is the default variant's", t->key);
        if (i < 3)
            printf("  %s: v%d %.4f ms (error %.3f of allowed), v%d %.4f ms (%.3f) -> best v%d\n", t->key,
                   e->trials[0].variant, e->trials[0].median_ms, e->trials[0].max_error, e->trials[1].variant,
                   e->trials[1].median_ms, e->trials[1].max_error, e->best_variant);
    }
    printf("database: %d entries, each with both trials verified and timed and the faster one selected\n", db.count);

    /* 3. Model building uses the database: give conv1's forward kernel variant 7 there. */
    const gen_tuning_target *t0 = &targets.targets[0];
    CHECK(strcmp(t0->op, "conv_fwd") == 0, "first target is conv1's forward");
    char prefix[256];
    kernel_prefix(t0->key, prefix, sizeof prefix);
    tunedb_entry *e0 = tunedb_find(&db, t0->key);
    e0->best_variant = 7;
    /* A best variant must be one of the entry's passing trials (tunedb.h): record one. */
    tunedb_trial passed = {.variant = 7, .status = TUNEDB_OK, .median_ms = e0->best_ms, .max_error = 0};
    CHECK_OK(ctx, tunedb_add_trial(ctx, e0, &passed));
    /* An index outside the op's space (a database edited by hand, its checksum redone)
     * must not reach the generator: that kernel keeps its default. */
    const gen_tuning_target *t1 = NULL; /* an input gradient the plan runs: not conv1's (the image's) */
    for (int i = 0; i < targets.count && !t1; i++)
        if (strcmp(targets.targets[i].op, "conv_bwd_data") == 0 && strcmp(targets.targets[i].name, "conv1") != 0)
            t1 = &targets.targets[i];
    CHECK(t1 != NULL, "an input-gradient target");
    tunedb_find(&db, t1->key)->best_variant = 99999;
    passed.variant = 99999;
    CHECK_OK(ctx, tunedb_add_trial(ctx, tunedb_find(&db, t1->key), &passed));
    CHECK_OK(ctx, tunedb_save(ctx, path, &db));
    int v = model_variant(ctx, policy, prefix);
    printf("model build with the database: %s uses v%d (the database says v7)\n", prefix, v);
    CHECK(v == 7, "tuned variant used");
    check_bundle_is_model_build(ctx, policy, prefix, 7);
    char prefix1[256];
    kernel_prefix(t1->key, prefix1, sizeof prefix1);
    v = model_variant(ctx, policy, prefix1);
    printf("an entry outside the space (v99999): %s uses v%d (the TF32 default is v%d)\n", prefix1, v,
           t1->candidates[0]);
    CHECK(v == t1->candidates[0], "out-of-range entry ignored");
    pp_context *ignoring = make_ctx(0, 1);
    v = model_variant(ignoring, policy, prefix);
    printf("model build ignoring tuning: %s uses v%d (the TF32 default is v%d)\n", prefix, v, t0->candidates[0]);
    CHECK(v == t0->candidates[0], "ignore_tuning gives the default");
    pp_context_destroy(ignoring);

    /* 4. A corrupt database is reported and ignored: the model builds with defaults. */
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL, "open %s", path);
    fseek(f, 200, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 200, SEEK_SET);
    fputc(c == 'x' ? 'y' : 'x', f);
    fclose(f);
    warnings = 0;
    v = model_variant(ctx, policy, prefix);
    printf("corrupt database: %d warning(s), last: '%s'; %s uses v%d\n", warnings, last_warning, prefix, v);
    CHECK(warnings >= 1 && strstr(last_warning, path) != NULL, "corrupt database reported, naming the file");
    CHECK(v == t0->candidates[0], "corrupt database ignored");

    /* 5. A stale database (another generator version) is reported and ignored. */
    snprintf(db.id.generator, sizeof db.id.generator, "generator-0.0.1/0000000000000000");
    CHECK_OK(ctx, tunedb_save(ctx, path, &db));
    warnings = 0;
    v = model_variant(ctx, policy, prefix);
    printf("stale database: %d warning(s), last: '%s'; %s uses v%d\n", warnings, last_warning, prefix, v);
    CHECK(warnings >= 1 && strstr(last_warning, "generator") != NULL, "stale database reported, naming the field");
    CHECK(v == t0->candidates[0], "stale database ignored");
    tunedb_free(&db);

    /* 6. An exhausted budget: every candidate recorded as skipped, nothing selected. */
    tune_options(&to, policy, 2);
    to.budget_seconds = 1e-9;
    CHECK_OK(ctx, pp_tune(ctx, &to, NULL, NULL, &r));
    printf("budget 1e-9 s: %d tried, %d skipped (expected %d)\n", r.tried, r.skipped, expect_tried);
    CHECK(r.tried == 0 && r.skipped == expect_tried, "budget bounds the work");
    CHECK_OK(ctx, tunedb_load(ctx, path, &id, &db, &outcome));
    tunedb_entry *e = tunedb_find(&db, t0->key);
    CHECK(e && e->best_variant == -1 && e->trial_count == 2 && e->trials[0].status == TUNEDB_SKIPPED,
          "skipped trials recorded, no best");
    tunedb_free(&db);
    v = model_variant(ctx, policy, prefix);
    CHECK(v == t0->candidates[0], "no tuned entry: default");
    gen_plan_tuning_free(&targets);
    pp_context_destroy(ctx);

    /* 7. Tensor-core variants cannot compile for sm_75: recorded as unusable, not fatal. */
    ctx = make_ctx(75, 0);
    tune_options(&to, "2,math=bf16", 2);
    CHECK_OK(ctx, pp_tune(ctx, &to, NULL, NULL, &r));
    printf("sm_75, math=bf16: %d kernels, %d tried, %d ok, %d unusable\n", r.kernels, r.tried, r.ok, r.unusable);
    CHECK(r.unusable == r.kernels && r.ok == r.kernels, "BF16 default unusable on sm_75, fp32 reference ok");
    CHECK_OK(ctx, pp_context_tuning_database(ctx, path, sizeof path));
    id = identity_of(ctx);
    CHECK_OK(ctx, tunedb_load(ctx, path, &id, &db, &outcome));
    targets = targets_of(ctx, "2,math=bf16");
    e = tunedb_find(&db, targets.targets[0].key);
    CHECK(e && e->trials[0].status == TUNEDB_COMPILE_FAILED && strstr(e->trials[0].note, "sm_80") != NULL &&
              e->best_variant == 0,
          "compile failure recorded with its reason: '%s'", e ? e->trials[0].note : "");
    printf("  %s v%d: %s\n", e->signature, e->trials[0].variant, e->trials[0].note);
    tunedb_free(&db);
    gen_plan_tuning_free(&targets);

    /* 8. Bad requests: clear errors. */
    struct {
        const char *model, *policy;
        double budget;
        const char *expect;
    } bad[] = {{"no_such_model", "2", 0, "no_such_model"},
               {model_name, "2,math=fp16", 0, "math must be one of fp32, tf32, bf16"},
               {model_name, "2", -1, "must not be negative"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tune_options(&to, bad[i].policy, 1);
        to.model.model = bad[i].model;
        to.budget_seconds = bad[i].budget;
        pp_status st = pp_tune(ctx, &to, NULL, NULL, &r);
        printf("bad request %zu: %s: %s\n", i, pp_status_string(st), pp_last_error(ctx));
        CHECK(st != PP_OK && strstr(pp_last_error(ctx), bad[i].expect) != NULL, "error names '%s'", bad[i].expect);
    }
    pp_context_destroy(ctx);
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_HOST;
    o.disable_cache = 1;
    setenv("POOLPROP_TUNING_DIR", "", 1);
    CHECK(pp_context_create(&o, &ctx) == PP_OK, "context without cache");
    pp_status st = pp_context_tuning_database(ctx, path, sizeof path);
    printf("no cache, no tuning dir: %s: %s\n", pp_status_string(st), pp_last_error(ctx));
    CHECK(st != PP_OK && strstr(pp_last_error(ctx), "no tuning directory") != NULL, "no tuning directory");
    pp_context_destroy(ctx);

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tuning_dir);
    CHECK(system(cmd) == 0, "clean up");
    printf("tuner checks passed\n");
    return 0;
}
