/* choose.c - pp_policy_choose: per-layer pooling factors for a memory budget.
 *   1. Probe: the gradients of one training step (no update) per probe batch, at f=1 and
 *      at every candidate uniform policy. The forward pass and every input gradient are
 *      exact, so under a uniform policy each convolution's weight gradient differs from
 *      f=1's only through its own pooled input: one step per candidate measures every layer.
 *      A layer's error is the relative L2 distance ||dW_f - dW_1|| / ||dW_1|| summed over the
 *      probes (squares added), with its cosine and the spread of the per-probe errors.
 *   2. Choose: a multiple-choice knapsack over the layers (choose_knapsack): the summed error
 *      least, with the bytes a layer saves counted as its input against its pooled copy.
 *      That count is additive and a little optimistic (two convolutions reading one input
 *      share one save), so the pick is checked against the planner, and the capacity
 *      lowered by any excess until the planned peak fits.
 *   3. Compare with the uniform policies at the same budget. */
#include "choose.h"
#include "context.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int choose_knapsack(const choose_item *items, int layers, int choices, size_t capacity, int resolution, int *pick,
                    double *total_error)
{
    if (layers < 0 || choices < 1 || resolution < 1) return -1;
    size_t unit = capacity / (size_t)resolution + (capacity % (size_t)resolution != 0);
    if (unit == 0) unit = 1;
    const size_t width = capacity / unit + 1; /* capacities 0 .. capacity/unit units */
    double *best = malloc(sizeof *best * width * (size_t)(layers + 1));
    int *from = malloc(sizeof *from * width * (size_t)(layers > 0 ? layers : 1));
    if (!best || !from) {
        free(best), free(from);
        return -2;
    }
    /* best[l*width + k]: least error of layers 0..l-1 within k units (INFINITY: none fits). */
    for (size_t k = 0; k < width; k++) best[k] = 0;
    for (int l = 0; l < layers; l++) {
        const double *prev = best + (size_t)l * width;
        double *next = best + (size_t)(l + 1) * width;
        int *choice = from + (size_t)l * width;
        for (size_t k = 0; k < width; k++) {
            next[k] = INFINITY, choice[k] = -1;
            for (int c = 0; c < choices; c++) {
                const choose_item *it = &items[(size_t)l * (size_t)choices + (size_t)c];
                size_t cost = it->bytes / unit + (it->bytes % unit != 0);
                if (cost > k || prev[k - cost] == INFINITY) continue;
                double e = prev[k - cost] + it->error;
                if (e < next[k]) next[k] = e, choice[k] = c;
            }
        }
    }
    size_t k = width - 1;
    double least = best[(size_t)layers * width + k];
    if (least == INFINITY) {
        free(best), free(from);
        return -1;
    }
    for (int l = layers - 1; l >= 0; l--) {
        int c = from[(size_t)l * width + k];
        pick[l] = c;
        const choose_item *it = &items[(size_t)l * (size_t)choices + (size_t)c];
        k -= it->bytes / unit + (it->bytes % unit != 0);
    }
    *total_error = least;
    free(best), free(from);
    return 0;
}

void pp_choice_options_init(pp_choice_options *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    pp_model_options_init(&o->model);
    const int factors[] = {1, 2, 4, 8};
    memcpy(o->factors, factors, sizeof factors);
    o->factor_count = 4;
    o->modes = 1;
    o->probe_count = 0;
    o->seed = 1;
}

void pp_choice_free(pp_choice *c)
{
    if (!c) return;
    free(c->layers);
    free(c->policy);
    free(c->policy_file);
    memset(c, 0, sizeof *c);
}

/* A growing string; NULL text after an allocation failed. */
typedef struct text {
    char *s;
    size_t len, cap;
    int failed;
} text;

static void text_add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(text *t, const char *fmt, ...)
{
    if (t->failed) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || t->len + (size_t)n + 1 > t->cap) {
        size_t cap = (t->cap + (size_t)(n > 0 ? n : 0) + 1) * 2;
        char *grown = realloc(t->s, cap);
        if (!grown || n < 0) {
            t->failed = 1;
            return;
        }
        t->s = grown, t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* The policy text of factor per layer (NULL: uniform f) with the mode and bn options. */
static char *policy_text(const pp_choice *c, const int *factors, int uniform, int mode, int bn_bf16)
{
    text t = {0};
    text_add(&t, "default=%d,mode=%s%s", factors ? 1 : uniform, mode ? "max" : "avg", bn_bf16 ? ",bn=bf16" : "");
    for (int l = 0; factors && l < c->layer_count; l++)
        if (factors[l] != 1) text_add(&t, ",%s=%d", c->layers[l].name, factors[l]);
    if (t.failed) free(t.s);
    return t.failed ? NULL : t.s;
}

/* The planned peak of policy text at the model's shape. */
static pp_status planned_peak(pp_context *ctx, const pp_model_options *model, const char *policy, size_t *peak)
{
    pp_model_options o = *model;
    o.policy = policy;
    pp_memory_report r;
    PP_TRY(pp_plan_memory(ctx, &o, &r));
    *peak = r.peak;
    return PP_OK;
}

/* Gradients of every convolution weight after one step (no update) on each probe batch:
 * grads[(probe * layers + l)] points at layer l's, inside one block (*block, malloc'ed). */
static pp_status probe(pp_context *ctx, const pp_choice_options *o, const pp_model_conv_list *convs, const char *policy,
                       float **block, const size_t *offsets, size_t total)
{
    pp_model_options mo = o->model;
    mo.policy = policy;
    mo.batch = o->probe_batch, mo.height = o->probe_height, mo.width = o->probe_width;
    mo.comm = NULL, mo.sync_bn = 0;
    pp_model *m = NULL;
    PP_TRY(pp_model_create(ctx, &mo, &m));
    float *g = malloc(sizeof *g * (total * (size_t)o->probe_count + 1));
    pp_status st = g ? pp_model_init_params(m, o->seed) : ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    for (int b = 0; b < o->probe_count && st == PP_OK; b++) {
        float loss = 0;
        st = pp_model_set_batch(m, o->probe_x[b], o->probe_labels[b]);
        if (st == PP_OK) st = pp_model_train_step(m, NULL, &loss);
        if (st == PP_OK && !isfinite(loss))
            st = ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                          "probe batch %d under policy %s: the loss is %g (diverging): nothing can be measured", b,
                          policy, loss);
        for (int l = 0; l < convs->count && st == PP_OK; l++) {
            char key[96];
            snprintf(key, sizeof key, "%s.weight", convs->convs[l].desc.name);
            st = pp_model_grad_read(m, key, g + (size_t)b * total + offsets[l], offsets[l + 1] - offsets[l]);
        }
    }
    pp_model_destroy(m);
    if (st != PP_OK) {
        free(g);
        return st;
    }
    *block = g;
    return PP_OK;
}

/* Bytes a convolution's save takes at factor f: its input pooled by f (f = 1: the input). */
static size_t save_bytes(const pp_layer_desc *d, int f)
{
    size_t hp = (size_t)(d->h + f - 1) / (size_t)f, wp = (size_t)(d->w + f - 1) / (size_t)f;
    return (size_t)d->n * (size_t)d->c * hp * wp * 4;
}

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

pp_status pp_policy_choose(pp_context *ctx, const pp_choice_options *in, pp_choice *out)
{
    if (!ctx || !in || !out) return PP_ERR_INVALID_ARGUMENT;
    memset(out, 0, sizeof *out);
    ctx_clear_error(ctx);
    const double start = now_seconds();
    pp_choice_options o = *in;
    if (o.budget == 0) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "policy choice: the budget is 0 bytes");
    if (o.factor_count < 1 || o.factor_count > PP_CHOICE_MAX_FACTORS)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "policy choice: %d candidate factors (1 to %d)", o.factor_count,
                        PP_CHOICE_MAX_FACTORS);
    int has_one = 0;
    for (int i = 0; i < o.factor_count; i++) {
        int f = o.factors[i];
        if (f != 1 && f != 2 && f != 4 && f != 8)
            return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "policy choice: factor %d is not one of 1, 2, 4, 8", f);
        for (int j = 0; j < i; j++)
            if (o.factors[j] == f) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "policy choice: factor %d twice", f);
        has_one |= f == 1;
    }
    if (!has_one) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "policy choice: the candidates must include 1");
    if (o.modes < 1 || o.modes > 3)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "policy choice: modes %d: bit 0 avg, bit 1 max", o.modes);
    if (!o.measured && (o.probe_count < 1 || !o.probe_x || !o.probe_labels))
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "policy choice: no probe batches");
    pp_model_options shape = o.model;
    shape.policy = "1";
    pp_memory_report r;
    PP_TRY(pp_plan_memory(ctx, &shape, &r));
    if (!o.probe_batch) o.probe_batch = r.batch;
    if (!o.probe_height) o.probe_height = r.height, o.probe_width = r.width;
    const size_t fixed = r.weights + r.gradients + r.optimizer + r.bn_statistics;
    if (o.budget < fixed)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                        "policy choice: the budget of %zu bytes is below what %s holds whatever the pooling: %zu bytes "
                        "of weights, gradients, momentum and BN statistics",
                        o.budget, shape.model, fixed);

    /* Nothing fits: by how much the most aggressive policy misses, and what batch fits
     * (before any probe is run). */
    int largest_factor = 1;
    for (int i = 0; i < o.factor_count; i++)
        if (o.factors[i] > largest_factor) largest_factor = o.factors[i];
    char aggressive[64];
    snprintf(aggressive, sizeof aggressive, "default=%d,mode=%s%s", largest_factor, (o.modes & 1) ? "avg" : "max",
             o.allow_bn_bf16 ? ",bn=bf16" : "");
    size_t aggressive_peak = 0;
    PP_TRY(planned_peak(ctx, &o.model, aggressive, &aggressive_peak));
    if (aggressive_peak > o.budget) {
        int lo = 0, hi = r.batch > 1 ? r.batch - 1 : 0;
        pp_model_options smaller = o.model;
        smaller.policy = aggressive;
        while (lo < hi) {
            int mid = lo + (hi - lo + 1) / 2;
            smaller.batch = mid;
            pp_memory_report rm;
            if (pp_plan_memory(ctx, &smaller, &rm) == PP_OK && rm.peak <= o.budget)
                lo = mid;
            else
                hi = mid - 1;
        }
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY,
                        "policy choice: even the most aggressive allowed policy (%s) plans a peak of %zu bytes, %zu "
                        "more than the budget of %zu; the largest batch that fits it is %d%s",
                        aggressive, aggressive_peak, aggressive_peak - o.budget, o.budget, lo,
                        lo == 0 ? " (none)" : "");
    }

    pp_model_conv_list convs;
    pp_status st = pp_model_conv_list_get(ctx, &shape, &convs);
    const int L = convs.count, F = o.factor_count;
    size_t *offsets = st == PP_OK ? calloc((size_t)L + 1, sizeof *offsets) : NULL;
    out->layers = st == PP_OK ? calloc((size_t)L + 1, sizeof *out->layers) : NULL;
    if (st == PP_OK && (!offsets || !out->layers)) st = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    for (int l = 0; l < L && st == PP_OK; l++) {
        const pp_layer_desc *d = &convs.convs[l].desc;
        offsets[l + 1] = offsets[l] + (size_t)d->k * (size_t)d->c * (size_t)d->r * (size_t)d->s;
        snprintf(out->layers[l].name, sizeof out->layers[l].name, "%s", d->name);
    }
    out->layer_count = L;
    const size_t total = L ? offsets[L] : 0;

    /* 1. Probes: f=1, then each candidate factor and mode (and bn=bf16 at f=1), unless an
     * earlier choice's measurements are given. */
    float *base = NULL, *other = NULL;
    const pp_choice *was = o.measured;
    if (st == PP_OK && was && was->layer_count != L)
        st = ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "policy choice: the measurements given are of %d layers, not %d",
                      was->layer_count, L);
    if (st == PP_OK && was) {
        for (int l = 0; l < L; l++) {
            pp_choice_layer *cl = &out->layers[l];
            memcpy(cl->error, was->layers[l].error, sizeof cl->error);
            memcpy(cl->cosine, was->layers[l].cosine, sizeof cl->cosine);
            memcpy(cl->spread, was->layers[l].spread, sizeof cl->spread);
        }
        out->bn_error = was->bn_error;
        o.probe_count = 0; /* nothing below probes */
    }
    if (st == PP_OK && !was) st = probe(ctx, &o, &convs, "default=1", &base, offsets, total);
    for (int m = 0; m < 2 && st == PP_OK && !was; m++) {
        if (!(o.modes & (1 << m))) continue;
        for (int i = 0; i < F && st == PP_OK; i++) {
            if (o.factors[i] == 1) continue;
            char policy[64];
            snprintf(policy, sizeof policy, "default=%d,mode=%s", o.factors[i], m ? "max" : "avg");
            st = probe(ctx, &o, &convs, policy, &other, offsets, total);
            for (int l = 0; l < L && st == PP_OK; l++) {
                double diff = 0, norm = 0, dot = 0, mine = 0, sum_e = 0, sum_e2 = 0;
                for (int b = 0; b < o.probe_count; b++) {
                    double bd = 0, bn = 0;
                    for (size_t j = offsets[l]; j < offsets[l + 1]; j++) {
                        double x = base[(size_t)b * total + j], y = other[(size_t)b * total + j];
                        bd += (y - x) * (y - x), bn += x * x, dot += x * y, mine += y * y;
                    }
                    diff += bd, norm += bn;
                    double e = bn > 0 ? sqrt(bd / bn) : 0;
                    sum_e += e, sum_e2 += e * e;
                }
                pp_choice_layer *cl = &out->layers[l];
                const double n = o.probe_count, mean = sum_e / n;
                cl->error[i][m] = norm > 0 ? sqrt(diff / norm) : 0;
                cl->cosine[i][m] = norm > 0 && mine > 0 ? dot / sqrt(norm * mine) : 1;
                cl->spread[i][m] = sqrt(fmax(0, sum_e2 / n - mean * mean));
            }
            free(other);
            other = NULL;
        }
    }
    for (int l = 0; l < L; l++)
        for (int m = 0; m < 2; m++)
            for (int i = 0; i < F; i++)
                if (o.factors[i] == 1) out->layers[l].cosine[i][m] = 1;
    if (st == PP_OK && o.allow_bn_bf16 && !was) {
        st = probe(ctx, &o, &convs, "default=1,bn=bf16", &other, offsets, total);
        for (int l = 0; l < L && st == PP_OK; l++) {
            double diff = 0, norm = 0;
            for (size_t j = 0; j < (size_t)o.probe_count * total; j++)
                if (j % total >= offsets[l] && j % total < offsets[l + 1])
                    diff += (other[j] - base[j]) * (other[j] - base[j]), norm += (double)base[j] * base[j];
            out->bn_error += norm > 0 ? sqrt(diff / norm) : 0;
        }
        free(other);
        other = NULL;
    }
    free(base);

    /* 2. The knapsack per mode and bn option, each checked against the planner. */
    choose_item *items = st == PP_OK ? calloc((size_t)L * (size_t)F + 1, sizeof *items) : NULL;
    int *pick = st == PP_OK ? calloc((size_t)L + 1, sizeof *pick) : NULL;
    int *factors = st == PP_OK ? calloc((size_t)L + 1, sizeof *factors) : NULL;
    int *best_factors = st == PP_OK ? calloc((size_t)L + 1, sizeof *best_factors) : NULL;
    if (st == PP_OK && (!items || !pick || !factors || !best_factors))
        st = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    double best = INFINITY;
    size_t best_peak = 0;
    for (int m = 0; m < 2 && st == PP_OK; m++) {
        if (!(o.modes & (1 << m))) continue;
        for (int bn = 0; bn <= o.allow_bn_bf16 && st == PP_OK; bn++) {
            /* The peak at f=1 everywhere, and the save of each layer per factor. */
            size_t peak_one = 0;
            char *text1 = policy_text(out, NULL, 1, m, bn);
            st = text1 ? planned_peak(ctx, &o.model, text1, &peak_one) : ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "oom");
            free(text1);
            size_t saves_one = 0;
            for (int l = 0; l < L; l++) saves_one += save_bytes(&convs.convs[l].desc, 1);
            if (st != PP_OK) break;
            if (peak_one < saves_one) saves_one = peak_one; /* the fixed part is never negative */
            const size_t rest = peak_one - saves_one;       /* everything but the convolutions' saves */
            size_t capacity = o.budget > rest ? o.budget - rest : 0;
            for (int l = 0; l < L; l++)
                for (int i = 0; i < F; i++)
                    items[(size_t)l * F + i] =
                        (choose_item){out->layers[l].error[i][m], save_bytes(&convs.convs[l].desc, o.factors[i])};
            for (int attempt = 0; attempt < 24 && st == PP_OK; attempt++) {
                double err = 0;
                int rc = choose_knapsack(items, L, F, capacity, 4096, pick, &err);
                if (rc == -2) st = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
                if (rc != 0) break;
                for (int l = 0; l < L; l++) factors[l] = o.factors[pick[l]];
                char *text = policy_text(out, factors, 1, m, bn);
                size_t peak = 0;
                st = text ? planned_peak(ctx, &o.model, text, &peak) : ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "oom");
                free(text);
                if (st != PP_OK) break;
                const double total_error = err + (bn ? out->bn_error : 0);
                if (peak <= o.budget) {
                    if (total_error < best) {
                        best = total_error, best_peak = peak, out->mode = m, out->bn_bf16 = bn;
                        memcpy(best_factors, factors, sizeof *factors * (size_t)L);
                    }
                    break;
                }
                /* Over by the planner's count: ask the knapsack for that much less. */
                size_t excess = peak - o.budget;
                capacity = capacity > excess + capacity / 4096 + 1 ? capacity - excess - capacity / 4096 - 1 : 0;
            }
        }
    }
    if (st == PP_OK && best == INFINITY)
        st = ctx_fail(ctx, PP_ERR_INTERNAL,
                      "policy choice: the planner placed no candidate within the budget, although "
                      "the most aggressive one fits");
    if (st == PP_OK) {
        out->peak = best_peak, out->total_error = best;
        for (int l = 0; l < L; l++) {
            out->layers[l].factor = best_factors[l];
            out->layers[l].bytes_saved =
                save_bytes(&convs.convs[l].desc, 1) - save_bytes(&convs.convs[l].desc, best_factors[l]);
        }
        out->policy = policy_text(out, best_factors, 1, out->mode, out->bn_bf16);
        /* The uniform policies at the same budget, in the chosen mode. */
        for (int i = 0; i < F && st == PP_OK; i++) {
            if (o.factors[i] == 1) continue;
            char *text = policy_text(out, NULL, o.factors[i], out->mode, out->bn_bf16);
            size_t peak = 0;
            st = text ? planned_peak(ctx, &o.model, text, &peak) : ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "oom");
            free(text);
            double err = out->bn_bf16 ? out->bn_error : 0;
            for (int l = 0; l < L; l++) err += out->layers[l].error[i][out->mode];
            out->uniform[out->uniform_count++] = (struct pp_choice_uniform){o.factors[i], peak, err, peak <= o.budget};
        }
        /* The .lua policy file, a comment per layer. */
        text t = {0};
        text_add(&t,
                 "-- Pooling policy chosen by poolprop policy for %s, batch %d, %dx%d: planned peak %zu bytes within a "
                 "budget of %zu.\n-- Total weight-gradient error %.6f (relative L2 per layer, summed), measured on %d "
                 "probe batch%s of %d images of %dx%d.\n",
                 shape.model, r.batch, r.height, r.width, out->peak, o.budget, out->total_error, in->probe_count,
                 in->probe_count == 1 ? "" : "es", o.probe_batch, o.probe_height, o.probe_width);
        text_add(&t, "return {\n  default = 1,\n  mode = \"%s\",\n", out->mode ? "max" : "avg");
        if (out->bn_bf16) text_add(&t, "  bn = \"bf16\", -- adds %.6f to the error\n", out->bn_error);
        text_add(&t, "  layers = {\n");
        for (int l = 0; l < L; l++) {
            const pp_choice_layer *cl = &out->layers[l];
            int i = 0;
            while (o.factors[i] != cl->factor) i++;
            text_add(&t, "    [\"%s\"] = %d, -- error %.6f (cosine %.6f), saves %zu bytes\n", cl->name, cl->factor,
                     cl->error[i][out->mode], cl->cosine[i][out->mode], cl->bytes_saved);
        }
        text_add(&t, "  },\n}\n");
        out->policy_file = t.s;
        if (t.failed || !out->policy) st = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    }
    free(items), free(pick), free(factors), free(best_factors), free(offsets);
    pp_model_conv_list_free(&convs);
    out->seconds = now_seconds() - start;
    if (st != PP_OK) pp_choice_free(out);
    return st;
}
