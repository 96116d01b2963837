/* tune.c - the tuner (pp_tune) and what model building takes from its database.
 *
 * For every distinct convolution kernel of a model (tuning targets: generator api.lua
 * tuning_targets) the tuner compiles the variants the policy's math mode allows, checks
 * each against the fp32 reference variant 0 on the same random inputs, times the ones that
 * pass with the backend's timer (CUDA events on a GPU), and keeps every result and the
 * fastest in the device's tuning database (tunedb.h), saved after each kernel.
 *
 * Acceptance, per output of the kernel (the reference is itself an fp32 computation, so
 * each bound adds the reference's own error to the candidate's):
 * - fp32 (FFMA) candidates: max |c - r| / max |r| <= 2 * max(16*u*sqrt(n), 1e-6), u = 2^-24,
 *   n the reduction length (twice the statistical bound of reference/layer_check.c);
 * - TF32 / BF16 candidates, element by element:
 *   |c - r| <= (2.01*u_m + 2*n*2^-23) * a, with u_m = 2^-11 (TF32) or 2^-8 (BF16) and a the
 *   reference run on the inputs' absolute values (for the weight gradient an upper bound of
 *   sum|dy||xu|, since pooling |x| gives at least |pool(x)|); see reference/layer_check.c
 *   for the derivation;
 * - the pooled input xp (written by every conv_fwd variant with the same code): 1e-6
 *   relative for average pooling, exact for max pooling. */
#include "cache.h"
#include "compile.h"
#include "context.h"
#include "gen_layer.h"
#include "gen_plan.h"
#include "layer.h"
#include "model.h"
#include "nvrtc_compile.h"
#include "gen_plan.h"
#include "plan.h"
#include "tune.h"
#include "tunedb.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static pp_status device_identity(pp_context *ctx, const char *version, tunedb_identity *id)
{
    memset(id, 0, sizeof *id);
    snprintf(id->device, sizeof id->device, "%s", ctx->device_model);
    id->arch = ctx->device_cc;
    id->sm_count = ctx->device_units;
    PP_TRY(nvrtc_version_string(ctx, id->toolkit, sizeof id->toolkit));
    snprintf(id->generator, sizeof id->generator, "%s", version);
    snprintf(id->backend, sizeof id->backend, "%s", ctx->ops ? ctx->ops->name : "none");
    return PP_OK;
}

/* The database file of the context's device and its identity. */
static pp_status database_of(pp_context *ctx, tunedb_identity *id, char *path, size_t size)
{
    if (!ctx->ops)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "tuning needs a context with a backend (cuda or host)");
    if (!ctx->tuning_dir[0])
        return ctx_fail(
            ctx, PP_ERR_INVALID_ARGUMENT,
            "no tuning directory: the cache is disabled and no tuning_dir (or $POOLPROP_TUNING_DIR) is set");
    char version[64];
    PP_TRY(gen_plan_tuning_version(ctx, version, sizeof version));
    PP_TRY(device_identity(ctx, version, id));
    tunedb_path(ctx->tuning_dir, id, path, size);
    return PP_OK;
}

pp_status pp_context_tuning_database(pp_context *ctx, char *path, size_t size)
{
    if (!ctx || !path || size == 0) return PP_ERR_INVALID_ARGUMENT;
    tunedb_identity id;
    return database_of(ctx, &id, path, size);
}

pp_status tune_lookup(pp_context *ctx, gen_plan_request *req)
{
    req->tuned_keys = NULL, req->tuned_variants = NULL, req->tuned_count = 0;
    if (ctx->options.ignore_tuning || !ctx->tuning_dir[0] || !ctx->ops) return PP_OK;
    tunedb_identity id;
    char path[4400];
    PP_TRY(database_of(ctx, &id, path, sizeof path));
    tunedb db;
    tunedb_load_outcome outcome;
    PP_TRY(tunedb_load(ctx, path, &id, &db, &outcome));
    /* One allocation holds the key pointers, then the variants, then the keys' text;
     * tune_lookup_free releases it. */
    int n = 0;
    for (int i = 0; i < db.count; i++) n += db.entries[i].best_variant >= 0;
    char **keys = n ? malloc((size_t)n * (sizeof *keys + sizeof(int) + sizeof(char[256]))) : NULL;
    if (n && !keys) {
        tunedb_free(&db);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    }
    /* keys is NULL where no entry has a best variant: no pointer arithmetic on it then. */
    int *variants = keys ? (int *)(keys + n) : NULL;
    char(*text)[256] = keys ? (char(*)[256])(variants + n) : NULL;
    int count = 0;
    for (int i = 0; i < db.count; i++) {
        if (db.entries[i].best_variant < 0) continue;
        memcpy(text[count], db.entries[i].signature, sizeof text[count]);
        keys[count] = text[count];
        variants[count] = db.entries[i].best_variant;
        count++;
    }
    if (outcome == TUNEDB_LOADED) ctx_log(ctx, PP_LOG_INFO, "tuning database %s: %d tuned kernels", path, count);
    tunedb_free(&db);
    req->tuned_keys = (const char *const *)keys, req->tuned_variants = variants, req->tuned_count = count;
    return PP_OK;
}

void tune_lookup_free(gen_plan_request *req)
{
    free((void *)req->tuned_keys);
    req->tuned_keys = NULL, req->tuned_variants = NULL, req->tuned_count = 0;
}

void pp_tune_options_init(pp_tune_options *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    pp_model_options_init(&o->model);
}

/* ---- verification ---- */

static void fill_uniform(float *a, size_t n, uint32_t *state)
{
    for (size_t i = 0; i < n; i++) {
        *state ^= *state << 13;
        *state ^= *state >> 17;
        *state ^= *state << 5;
        a[i] = (float)((*state >> 8) * (1.0 / 16777216.0) * 2.0 - 1.0);
    }
}

static int outputs_alloc(tune_outputs *o, const pp_layer_shape *s)
{
    o->y = malloc(sizeof(float) * (s->y_elems + s->xp_elems + s->x_elems + s->w_elems));
    if (!o->y) return 0;
    o->xp = o->y + s->y_elems;
    o->dx = o->xp + s->xp_elems;
    o->dw = o->dx + s->x_elems;
    return 1;
}

static double fp32_excess(const float *a, const float *ref, size_t n, double terms)
{
    double scale = 1e-30, worst = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)ref[i]) > scale) scale = fabs((double)ref[i]);
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]);
        if (isnan(d)) return INFINITY;
        if (d > worst) worst = d;
    }
    double tol = 16.0 * ldexp(1.0, -24) * sqrt(terms);
    return worst / scale / (2.0 * (tol > 1e-6 ? tol : 1e-6));
}

static double tensor_core_excess(const float *a, const float *ref, const float *abs_ref, size_t n, double u,
                                 double terms)
{
    const double factor = 2.01 * u + 2.0 * terms * ldexp(1.0, -23);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]);
        if (isnan(d)) return INFINITY;
        double e = d / (factor * fabs((double)abs_ref[i]) + 1e-30);
        if (e > worst) worst = e;
    }
    return worst;
}

static double pooled_excess(const float *a, const float *ref, size_t n, int max_pool)
{
    if (n == 0) return 0;
    double scale = 1e-30, worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs((double)ref[i]) > scale) scale = fabs((double)ref[i]);
        double d = fabs((double)a[i] - (double)ref[i]);
        if (isnan(d)) return INFINITY;
        if (d > worst) worst = d;
    }
    if (max_pool) return worst > 0 ? INFINITY : 0.0;
    return worst / scale / 1e-6;
}

double tune_op_excess(const char *op, const char *math, const pp_layer_desc *d, const pp_layer_shape *s,
                      const tune_outputs *got, const tune_outputs *ref, const tune_outputs *abs_ref)
{
    double u = strcmp(math, "tf32") == 0 ? ldexp(1.0, -11) : strcmp(math, "bf16") == 0 ? ldexp(1.0, -8) : 0.0;
    const float *a, *r, *ar;
    size_t n;
    double terms;
    double extra = 0;
    if (strcmp(op, "conv_fwd") == 0) {
        a = got->y, r = ref->y, ar = abs_ref->y, n = s->y_elems, terms = (double)d->c * d->r * d->s;
        if (d->pool > 1) extra = pooled_excess(got->xp, ref->xp, s->xp_elems, d->pool_mode == PP_POOL_MAX);
    } else if (strcmp(op, "conv_bwd_data") == 0) {
        a = got->dx, r = ref->dx, ar = abs_ref->dx, n = s->x_elems, terms = (double)d->k * d->r * d->s;
    } else {
        a = got->dw, r = ref->dw, ar = abs_ref->dw, n = s->w_elems, terms = (double)d->n * s->p * s->q;
    }
    double e = u > 0 ? tensor_core_excess(a, r, ar, n, u, terms) : fp32_excess(a, r, n, terms);
    return e > extra ? e : extra;
}

/* ---- the tuning loop ---- */

typedef struct tuner {
    pp_context *ctx;
    const pp_tune_options *o;
    pp_tune_progress_fn progress;
    void *user;
    pp_tune_report *report;
    double start;
    double end;      /* of the whole budget; 0: no budget */
    double deadline; /* of the current kernel's share of the budget; 0: none */
    int warmup, repeats;
} tuner;

static const char *status_word(tunedb_trial_status s)
{
    static const char *const words[] = {"ok", "wrong", "compile_failed", "launch_failed", "skipped"};
    return words[s];
}

/* The line of the context's error that says what went wrong (the first with "error",
 * else the first), for a trial's note. */
static void first_line(const char *text, char *out, size_t size)
{
    for (const char *line = text; *line; line += strcspn(line, "\n") + (line[strcspn(line, "\n")] != 0)) {
        size_t len = strcspn(line, "\n");
        const char *hit = strstr(line, "error");
        if (hit && hit < line + len) {
            text = line;
            break;
        }
    }
    size_t n = strcspn(text, "\n");
    if (n >= size) n = size - 1;
    memcpy(out, text, n);
    out[n] = '\0';
}

static pp_layer_desc with_variant(const gen_tuning_target *t, int v)
{
    pp_layer_desc d = t->desc;
    if (strcmp(t->op, "conv_fwd") == 0)
        d.variant_fwd = v;
    else if (strcmp(t->op, "conv_bwd_data") == 0)
        d.variant_bwd_data = v;
    else
        d.variant_bwd_weight = v;
    return d;
}

/* Compiles, runs, checks and times variant v of target t; fills trial. */
static pp_status try_variant(tuner *tu, const gen_tuning_target *t, int v, const float *x, const float *w,
                             const float *dy, const tune_outputs *ref, const tune_outputs *abs_ref, tunedb_trial *trial)
{
    pp_context *ctx = tu->ctx;
    memset(trial, 0, sizeof *trial);
    trial->variant = v;
    trial->median_ms = -1;
    trial->max_error = -1;
    pp_layer_desc d = with_variant(t, v);
    pp_variant_info vi;
    PP_TRY(pp_layer_variant_info(ctx, t->op, v, &vi));
    pp_layer *layer = NULL;
    pp_status compiled = pp_layer_create(ctx, &d, &layer);
    /* The NVRTC static check for the device's arch too: on the host backend it is what says
     * that a variant cannot compile for the device emulated (tensor cores below sm_80). */
    int nk = 0;
    if (compiled == PP_OK) pp_layer_kernel_count(layer, &nk);
    for (int k = 0; k < nk && compiled == PP_OK; k++) {
        pp_kernel_info info;
        compiled = pp_layer_kernel_check(layer, k, &info);
    }
    if (compiled != PP_OK) {
        trial->status = TUNEDB_COMPILE_FAILED;
        first_line(pp_last_error(ctx), trial->note, sizeof trial->note);
        pp_layer_destroy(layer);
        return PP_OK;
    }
    pp_layer_shape s;
    pp_layer_shape_get(layer, &s);
    tune_outputs got;
    if (!outputs_alloc(&got, &s)) {
        pp_layer_destroy(layer);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    }
    /* Only the candidate's kernels run; the weight gradient reads the reference's pooled
     * input, as the reference's own weight gradient did. */
    if (layer_run_op(layer, t->op, x, w, dy, ref->xp, got.y, got.xp, got.dx, got.dw) != PP_OK) {
        trial->status = TUNEDB_LAUNCH_FAILED;
        first_line(pp_last_error(ctx), trial->note, sizeof trial->note);
    } else {
        trial->max_error = tune_op_excess(t->op, vi.math, &t->desc, &s, &got, ref, abs_ref);
        if (!(trial->max_error <= 1.0)) {
            trial->status = TUNEDB_WRONG;
            snprintf(trial->note, sizeof trial->note, "%s output is %.3g times what %s allows", t->op, trial->max_error,
                     vi.math);
        } else {
            double ms[8];
            if (layer_benchmark_kernels(layer, t->op, tu->warmup, tu->repeats, ms) != PP_OK) {
                trial->status = TUNEDB_LAUNCH_FAILED;
                first_line(pp_last_error(ctx), trial->note, sizeof trial->note);
            } else {
                trial->median_ms = 0;
                for (int k = 0; k < nk && k < 8; k++) trial->median_ms += ms[k];
                trial->status = TUNEDB_OK;
                /* The static evidence (NVRTC's ptxas report) of the candidate's kernel. */
                for (int k = 0; k < nk; k++) {
                    pp_kernel_info info;
                    if (pp_layer_kernel_check(layer, k, &info) == PP_OK && strcmp(info.op, t->op) == 0)
                        snprintf(trial->note, sizeof trial->note,
                                 "%s, %d threads, %d registers, %d B shared, %d B spilled", vi.math, info.block[0],
                                 info.registers, info.shared_bytes, info.spill_store_bytes + info.spill_load_bytes);
                }
            }
        }
    }
    free(got.y);
    pp_layer_destroy(layer);
    return PP_OK;
}

static void emit(tuner *tu, int index, int count, const gen_tuning_target *t, const tunedb_entry *e,
                 const tunedb_trial *trial, int tried)
{
    if (!tu->progress) return;
    pp_tune_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kernel = index, ev.kernel_count = count, ev.key = t->key, ev.layer = t->name;
    ev.variant = trial ? trial->variant : -1;
    ev.tried = tried, ev.candidates = t->candidate_count;
    if (tu->o->max_variants > 0 && tu->o->max_variants < ev.candidates) ev.candidates = tu->o->max_variants;
    ev.status = trial ? status_word(trial->status) : "";
    ev.ms = trial ? trial->median_ms : -1;
    ev.error = trial ? trial->max_error : -1;
    ev.note = trial ? trial->note : "";
    ev.best_variant = e->best_variant, ev.best_ms = e->best_ms, ev.default_ms = e->default_ms;
    tu->progress(tu->user, &ev);
}

/* Compiles the kernels of candidates [first, last) of t into the cache on every CPU
 * (compile_prefetch), so that trying them one by one loads instead of compiling. */
static void prefetch_candidates(pp_context *ctx, const gen_tuning_target *t, int first, int last)
{
    int n = last - first;
    gen_layer *layers = calloc((size_t)n, sizeof *layers);
    pp_compile_request *reqs = calloc((size_t)n * 2, sizeof *reqs);
    char(*names)[300] = calloc((size_t)n * 2, sizeof *names);
    int count = 0, made = 0;
    for (int c = 0; layers && reqs && names && c < n; c++) {
        pp_layer_desc d = with_variant(t, t->candidates[first + c]);
        if (gen_layer_from_desc(ctx, &d, &layers[c]) != PP_OK) break; /* met again, and reported, when tried */
        made++;
        for (int k = 0; k < layers[c].kernel_count && count < 2 * n; k++) {
            const gen_kernel *kern = &layers[c].kernels[k];
            int mine = strcmp(kern->op, t->op) == 0 ||
                       (strcmp(t->op, "conv_bwd_weight") == 0 && strcmp(kern->op, "splitk_reduce") == 0);
            if (!mine) continue;
            snprintf(names[count], sizeof names[count], "%s.cu", kern->name);
            reqs[count] = (pp_compile_request){kern->source, names[count], NULL, 0};
            count++;
        }
    }
    ctx_clear_error(ctx);
    /* Also the NVRTC static check try_variant makes (pp_layer_kernel_check; on the cuda backend the
     * same compile as the module's, so a cache read). */
    compile_prefetch(ctx, reqs, count, ctx->arch ? ctx->arch : 90);
    for (int c = 0; c < made; c++) gen_layer_free(&layers[c]);
    free(layers), free(reqs), free(names);
}

/* Reference outputs of the reference layer (variant 0) on the inputs and on their
 * absolute values. */
static pp_status reference_outputs(pp_context *ctx, pp_layer *layer, const float *x, const float *w, const float *dy,
                                   const pp_layer_shape *s, tune_outputs *ref, tune_outputs *abs_ref)
{
    PP_TRY(pp_layer_run(layer, x, w, dy, ref->y, ref->xp, ref->dx, ref->dw));
    float *ax = malloc(sizeof(float) * (s->x_elems + s->w_elems + s->y_elems));
    if (!ax) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    float *aw = ax + s->x_elems, *ady = aw + s->w_elems;
    for (size_t i = 0; i < s->x_elems; i++) ax[i] = fabsf(x[i]);
    for (size_t i = 0; i < s->w_elems; i++) aw[i] = fabsf(w[i]);
    for (size_t i = 0; i < s->y_elems; i++) ady[i] = fabsf(dy[i]);
    pp_status st = pp_layer_run(layer, ax, aw, ady, abs_ref->y, abs_ref->xp, abs_ref->dx, abs_ref->dw);
    free(ax);
    return st;
}

static int budget_spent(const tuner *tu) { return tu->end > 0 && now_s() >= tu->end; }

static void count_trial(pp_tune_report *r, const tunedb_trial *trial)
{
    if (trial->status == TUNEDB_SKIPPED)
        r->skipped++;
    else
        r->tried++;
    if (trial->status == TUNEDB_OK) r->ok++;
    if (trial->status == TUNEDB_WRONG) r->wrong++;
    if (trial->status == TUNEDB_COMPILE_FAILED || trial->status == TUNEDB_LAUNCH_FAILED) r->unusable++;
}

static void skipped_trial(int variant, tunedb_trial *trial)
{
    memset(trial, 0, sizeof *trial);
    trial->variant = variant;
    trial->status = TUNEDB_SKIPPED;
    trial->median_ms = trial->max_error = -1;
    snprintf(trial->note, sizeof trial->note, "time budget spent");
}

/* The whole budget is spent before t starts: its candidates are recorded as skipped
 * without compiling or running anything. */
static pp_status skip_target(tuner *tu, tunedb *db, const gen_tuning_target *t, int index, int count, int limit)
{
    tunedb_entry *e = tunedb_put(tu->ctx, db, t->key);
    if (!e) return PP_ERR_OUT_OF_MEMORY;
    for (int c = 0; c < limit; c++) {
        tunedb_trial trial;
        skipped_trial(t->candidates[c], &trial);
        PP_TRY(tunedb_add_trial(tu->ctx, e, &trial));
        count_trial(tu->report, &trial);
        emit(tu, index, count, t, e, &trial, c + 1);
    }
    emit(tu, index, count, t, e, NULL, limit);
    return PP_OK;
}

static pp_status tune_target(tuner *tu, tunedb *db, const gen_tuning_target *t, int index, int count)
{
    pp_context *ctx = tu->ctx;
    int limit = t->candidate_count;
    if (tu->o->max_variants > 0 && tu->o->max_variants < limit) limit = tu->o->max_variants;
    if (budget_spent(tu)) return skip_target(tu, db, t, index, count, limit);
    pp_layer *reference = NULL;
    pp_status st = pp_layer_create(ctx, &t->desc, &reference);
    if (st != PP_OK) return ctx_wrap(ctx, st, "tuning %s: the reference variant 0", t->key);
    pp_layer_shape s;
    pp_layer_shape_get(reference, &s);
    float *inputs = malloc(sizeof(float) * (s.x_elems + s.w_elems + s.y_elems));
    tune_outputs ref = {0}, abs_ref = {0};
    if (!inputs || !outputs_alloc(&ref, &s) || !outputs_alloc(&abs_ref, &s)) {
        free(inputs), free(ref.y), free(abs_ref.y);
        pp_layer_destroy(reference);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    }
    float *x = inputs, *w = x + s.x_elems, *dy = w + s.w_elems;
    uint32_t state = tu->o->seed ? tu->o->seed : 1;
    fill_uniform(x, s.x_elems, &state);
    fill_uniform(w, s.w_elems, &state);
    fill_uniform(dy, s.y_elems, &state);
    st = reference_outputs(ctx, reference, x, w, dy, &s, &ref, &abs_ref);
    if (st != PP_OK) st = ctx_wrap(ctx, st, "tuning %s: running the reference variant 0", t->key);
    pp_layer_destroy(reference);
    tunedb_entry *e = st == PP_OK ? tunedb_put(ctx, db, t->key) : NULL;
    if (st == PP_OK && !e) st = PP_ERR_OUT_OF_MEMORY;
    /* Candidates are compiled ahead in chunks of one per CPU: chunks bound the compile
     * work a time budget can waste. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int chunk = (int)(cpus > 1 ? cpus : 2), prefetched = 0;
    for (int c = 0; c < limit && st == PP_OK; c++) {
        tunedb_trial trial;
        /* The default (first) candidate runs while any of the whole budget is left. */
        int out_of_time = budget_spent(tu) || (c > 0 && tu->deadline > 0 && now_s() > tu->deadline);
        if (!out_of_time && c >= prefetched) {
            prefetched = c + chunk < limit ? c + chunk : limit;
            prefetch_candidates(ctx, t, c, prefetched);
        }
        if (out_of_time) {
            skipped_trial(t->candidates[c], &trial);
        } else {
            st = try_variant(tu, t, t->candidates[c], x, w, dy, &ref, &abs_ref, &trial);
            if (st != PP_OK) break;
        }
        st = tunedb_add_trial(ctx, e, &trial);
        count_trial(tu->report, &trial);
        if (trial.status == TUNEDB_OK) {
            if (c == 0) e->default_ms = trial.median_ms;
            if (e->best_variant < 0 || trial.median_ms < e->best_ms)
                e->best_variant = trial.variant, e->best_ms = trial.median_ms;
        }
        emit(tu, index, count, t, e, &trial, c + 1);
    }
    if (st == PP_OK) {
        emit(tu, index, count, t, e, NULL, limit);
        if (e->best_variant >= 0 && e->default_ms >= 0) {
            tu->report->default_ms += e->default_ms;
            tu->report->best_ms += e->best_ms;
            if (e->best_ms < e->default_ms) tu->report->improved++;
        }
    }
    free(inputs), free(ref.y), free(abs_ref.y);
    return st;
}

pp_status pp_tune(pp_context *ctx, const pp_tune_options *o, pp_tune_progress_fn progress, void *user,
                  pp_tune_report *report)
{
    if (!ctx || !o || !report) return PP_ERR_INVALID_ARGUMENT;
    ctx_clear_error(ctx);
    memset(report, 0, sizeof *report);
    if (o->budget_seconds < 0 || o->max_variants < 0 || o->warmup < 0 || o->repeats < 0)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                        "pp_tune: budget_seconds, max_variants, warmup and repeats must not be negative");
    tunedb_identity id;
    PP_TRY(database_of(ctx, &id, report->database, sizeof report->database));
    /* Fail before the work, not after it, when the database cannot be written. */
    PP_TRY(cache_make_dirs(ctx, ctx->tuning_dir));
    if (access(ctx->tuning_dir, W_OK) != 0)
        return ctx_fail(ctx, PP_ERR_IO, "the tuning directory %s is not writable: %s", ctx->tuning_dir,
                        strerror(errno));
    gen_plan_request req;
    model_plan_request(&o->model, 0, &req);
    gen_tuning targets;
    PP_TRY(gen_plan_tuning_targets(ctx, &req, &targets));
    tunedb db;
    tunedb_load_outcome outcome;
    pp_status st = tunedb_load(ctx, report->database, &id, &db, &outcome);
    if (st != PP_OK) {
        gen_plan_tuning_free(&targets);
        return st;
    }
    tuner tu = {ctx, o, progress, user, report, now_s(), 0, 0, o->warmup ? o->warmup : 2, o->repeats ? o->repeats : 7};
    const double end = tu.start + o->budget_seconds;
    if (o->budget_seconds > 0) tu.end = end;
    report->kernels = targets.count;
    for (int i = 0; i < targets.count && st == PP_OK; i++) {
        /* Each kernel gets an equal share of what is left of the budget, so that a budget
         * too small for everything still tunes every kernel a little (what one kernel
         * leaves unused goes to the rest). */
        if (o->budget_seconds > 0) {
            double now = now_s();
            tu.deadline = now < end ? now + (end - now) / (targets.count - i) : end;
        }
        st = tune_target(&tu, &db, &targets.targets[i], i, targets.count);
        /* Saved after every kernel: an interrupted run keeps what it measured. */
        if (st == PP_OK) st = tunedb_save(ctx, report->database, &db);
    }
    report->seconds = now_s() - tu.start;
    tunedb_free(&db);
    gen_plan_tuning_free(&targets);
    return st;
}
