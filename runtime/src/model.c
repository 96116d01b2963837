/* model.c - whole networks: the training plan from the generator, its kernels compiled and
 * loaded, its memory allocated as planned, and the executor that runs a training step or
 * inference by launching the plan's steps in order.
 * Invariant: the device memory a model holds is exactly the planned peak: the flat
 * parameter, gradient, momentum and BN-statistics arrays (under act=bf16 also the bf16 copy
 * of the parameters, kept equal to bf16(params) by every upload here and by the plan's sgd)
 * plus one arena (the larger of the training and the inference arenas), in which every
 * buffer lives at its planned offset. */
#include "bundle_dir.h"
#include "cache.h"
#include "comm.h"
#include "compile.h"
#include "file.h"
#include "gen_plan.h"
#include "layout.h"
#include "model.h"
#include "plan.h"
#include "tune.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct pp_model {
    pp_context *ctx;
    gen_plan plan;
    pp_module **modules;     /* one per plan kernel */
    pp_function **functions; /* one per plan kernel */
    pp_devptr params, grads, momentum, state, arena;
    pp_devptr shadow; /* act=bf16: param_count bf16 values, else 0 */
    size_t arena_bytes;
    pp_comm *comm; /* data parallel, else NULL (not owned) */
    /* Data parallel: the gradient array in one bucket per stage (contiguous in state_dict
     * order), each averaged as soon as the backward step that writes its last gradient has
     * been launched; by that step, in launch order. */
    struct grad_bucket {
        size_t offset, count; /* floats */
        int ready;            /* the train step after which the bucket's gradients are final */
    } * buckets;
    int bucket_count;
    /* Host staging of pp_model_set_batch's channels-last copy (and its bf16 bits), kept
     * between calls: a fresh allocation of an ImageNet batch every step cost more in page
     * faults than the copy itself. NULL until the first batch. */
    float *staging;
    uint16_t *staging_bits;
    int batch_set;    /* the arena holds a batch for the next training step */
    int last_correct; /* correct predictions of the last training step */
};

void pp_model_options_init(pp_model_options *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->batch = 1;
}

void model_plan_request(const pp_model_options *o, int sources, gen_plan_request *req)
{
    memset(req, 0, sizeof *req);
    req->model = o->model;
    req->policy = o->policy;
    req->batch = o->batch;
    req->height = o->height;
    req->width = o->width;
    req->classes = o->classes;
    req->sources = sources;
    int world = o->comm ? comm_world(o->comm) : o->world_size;
    req->sync_world = o->sync_bn && world > 1 ? world : 1;
}

/* Floats of the largest partials synchronised BN exchanges in one step (0 without it). */
static size_t largest_sync_floats(const plan_steps *s)
{
    size_t largest = 0;
    for (int i = 0; i < s->step_count; i++) {
        const plan_step *st = &s->steps[i];
        if (st->sync == SYNC_NONE) continue;
        size_t pc = (size_t)st->sync_parts * (size_t)st->sync_channels;
        size_t floats = st->sync == SYNC_BN_STATS ? pc * 3 + (st->sync_shift ? (size_t)st->sync_channels : 0) : pc * 2;
        if (floats > largest) largest = floats;
    }
    return largest;
}

static void report_from(const gen_plan *p, pp_memory_report *r)
{
    memset(r, 0, sizeof *r);
    r->batch = p->batch;
    r->height = p->height;
    r->width = p->width;
    r->classes = p->classes;
    r->weights = p->weights;
    snprintf(r->baseline_policy, sizeof r->baseline_policy, "%s", p->baseline_policy);
    r->gradients = p->gradients;
    r->optimizer = p->optimizer;
    r->bn_statistics = p->state_bytes;
    r->saved = p->saved;
    r->stage_count = p->stage_count;
    for (int i = 0; i < p->stage_count; i++) {
        memcpy(r->stage_names[i], p->stage_names[i], sizeof r->stage_names[i]);
        r->saved_by_stage[i] = p->saved_by_stage[i];
    }
    r->largest_transient = p->largest_transient;
    r->arena = p->train.arena_bytes > p->infer.arena_bytes ? p->train.arena_bytes : p->infer.arena_bytes;
    /* The gather buffer of synchronised BN: host memory on the host backend (its device
     * memory), a device buffer on cuda. */
    r->communication = (size_t)(p->sync_world > 1 ? p->sync_world : 1) * largest_sync_floats(&p->train) * 4;
    if (p->sync_world <= 1) r->communication = 0;
    r->peak = r->weights + r->gradients + r->optimizer + r->bn_statistics + r->arena + r->communication;
}

pp_status pp_plan_memory(pp_context *ctx, const pp_model_options *options, pp_memory_report *out)
{
    if (!ctx || !options || !out) return PP_ERR_INVALID_ARGUMENT;
    ctx_clear_error(ctx);
    gen_plan_request req;
    model_plan_request(options, 0, &req);
    gen_plan plan;
    PP_TRY(gen_plan_train(ctx, &req, &plan));
    report_from(&plan, out);
    gen_plan_free(&plan);
    return PP_OK;
}

static double mib(size_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

/* The planned peak against what the context may still allocate, before anything is compiled
 * or allocated: a peak between free and total host memory would otherwise be allocated and
 * then thrash or be killed. Unknown availability (no figure from the backend) passes. */
static pp_status check_fits(pp_context *ctx, const gen_plan *p, const pp_memory_report *r)
{
    size_t available;
    char source[1200];
    if (!ctx_memory_available(ctx, &available, source, sizeof source)) {
        ctx_log(ctx, PP_LOG_WARNING, "model %s: the planned peak of %.1f MiB is not checked against free memory: %s",
                p->model, mib(r->peak), source);
        return PP_OK;
    }
    if (r->peak <= available) return PP_OK;
    return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY,
                    "model %s at batch %d (%dx%d): the plan needs %.1f MiB (weights %.1f, gradients %.1f, optimizer "
                    "%.1f, BN statistics %.1f, activations, saved tensors and workspaces %.1f MiB) but only %.1f MiB "
                    "is available on %s (%s): lower the batch size or the image size, or pool more",
                    p->model, r->batch, r->height, r->width, mib(r->peak), mib(r->weights), mib(r->gradients),
                    mib(r->optimizer), mib(r->bn_statistics), mib(r->arena), mib(available), ctx->device_name, source);
}

/* The stage of a state_dict key, by torchvision's names: conv1/bn1 the stem, layerN.* stage
 * N, fc the head; the length of the name's stage prefix, 0 for the stem's and the head's. */
static size_t stage_prefix(const char *key)
{
    if (strncmp(key, "layer", 5) == 0) {
        size_t n = 5;
        while (key[n] >= '0' && key[n] <= '9') n++;
        if (n > 5 && key[n] == '.') return n;
    }
    return 0;
}

static int same_stage(const char *a, const char *b)
{
    size_t na = stage_prefix(a), nb = stage_prefix(b);
    if (na || nb) return na == nb && strncmp(a, b, na) == 0;
    return (strncmp(a, "fc.", 3) == 0) == (strncmp(b, "fc.", 3) == 0);
}

static int by_ready(const void *a, const void *b)
{
    const struct grad_bucket *x = a, *y = b;
    return x->ready != y->ready ? (x->ready < y->ready ? -1 : 1) : (x->offset < y->offset ? -1 : x->offset > y->offset);
}

/* m->buckets: one per stage, ready after the last backward step that writes into it. */
static pp_status make_buckets(pp_model *m)
{
    const gen_plan *p = &m->plan;
    m->buckets = calloc((size_t)p->param_count_keys + 1, sizeof *m->buckets);
    if (!m->buckets) return ctx_fail(m->ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < p->param_count_keys; i++) {
        const plan_tensor_info *t = &p->params[i];
        struct grad_bucket *last = m->bucket_count ? &m->buckets[m->bucket_count - 1] : NULL;
        if (last && same_stage(p->params[i - 1].key, t->key) && last->offset + last->count == t->offset)
            last->count += t->count;
        else
            m->buckets[m->bucket_count++] = (struct grad_bucket){t->offset, t->count, -1};
    }
    const plan_steps *s = &p->train;
    int update = s->step_count;
    while (update > 0 && strcmp(s->steps[update - 1].phase, "update") == 0) update--;
    for (int i = p->forward_end; i < update; i++)
        for (int a = 0; a < s->steps[i].ref_count; a++) {
            const plan_ref *r = &s->steps[i].refs[a];
            for (int b = 0; b < m->bucket_count; b++) {
                struct grad_bucket *g = &m->buckets[b];
                if (r->kind == REF_GRADS ||
                    (r->kind == REF_GRAD && r->index >= g->offset && r->index < g->offset + g->count))
                    g->ready = i;
            }
        }
    for (int b = 0; b < m->bucket_count; b++)
        if (m->buckets[b].ready < 0) m->buckets[b].ready = update - 1;
    qsort(m->buckets, (size_t)m->bucket_count, sizeof *m->buckets, by_ready);
    return PP_OK;
}

pp_status pp_model_create(pp_context *ctx, const pp_model_options *options, pp_model **out)
{
    if (!ctx || !options || !out) return PP_ERR_INVALID_ARGUMENT;
    *out = NULL;
    ctx_clear_error(ctx);
    if (!ctx->ops)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "pp_model_create: the context has no backend to run on");
    pp_model *m = calloc(1, sizeof *m);
    if (!m) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    m->ctx = ctx;
    if (options->comm && comm_context(options->comm) != ctx) {
        free(m);
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "pp_model_create: the communicator belongs to another context");
    }
    m->comm = options->comm;
    gen_plan_request req;
    model_plan_request(options, 1, &req);
    pp_status st = tune_lookup(ctx, &req);
    if (st == PP_OK) st = gen_plan_train(ctx, &req, &m->plan);
    tune_lookup_free(&req);
    if (st != PP_OK) {
        free(m);
        return st;
    }
    gen_plan *p = &m->plan;
    pp_memory_report r;
    report_from(p, &r);
    st = check_fits(ctx, p, &r);
    if (st != PP_OK) {
        pp_model_destroy(m);
        return st;
    }
    m->modules = calloc((size_t)p->kernel_count + 1, sizeof *m->modules);
    m->functions = calloc((size_t)p->kernel_count + 1, sizeof *m->functions);
    if (!m->modules || !m->functions) st = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    /* Compile on every CPU into the cache first; the loop below then loads. */
    pp_compile_request *reqs = calloc((size_t)p->kernel_count + 1, sizeof *reqs);
    char(*req_names)[300] = calloc((size_t)p->kernel_count + 1, sizeof *req_names);
    if (st == PP_OK && reqs && req_names) {
        for (int i = 0; i < p->kernel_count; i++) {
            snprintf(req_names[i], sizeof req_names[i], "%s.cu", p->kernels[i].name);
            reqs[i] = (pp_compile_request){p->kernels[i].source, req_names[i], NULL, 0};
        }
        compile_prefetch(ctx, reqs, p->kernel_count, 0);
    }
    free(reqs), free(req_names);
    for (int i = 0; i < p->kernel_count && st == PP_OK; i++) {
        const gen_kernel *k = &p->kernels[i];
        char source_name[300];
        snprintf(source_name, sizeof source_name, "%s.cu", k->name);
        const char *names[1] = {k->name};
        pp_compile_request creq = {k->source, source_name, names, 1};
        pp_compile_result res;
        st = ctx->ops->compile(ctx, &creq, &m->modules[i], &res);
        if (st == PP_OK) st = ctx->ops->get_function(ctx, m->modules[i], k->name, k->dynamic_shared, &m->functions[i]);
        if (st != PP_OK) ctx_wrap(ctx, st, "model %s, kernel %s", p->model, k->name);
    }
    m->arena_bytes = r.arena;
    if (st == PP_OK) st = device_alloc(ctx, p->param_count * 4, &m->params);
    if (st == PP_OK) st = device_alloc(ctx, p->param_count * 4, &m->grads);
    if (st == PP_OK) st = device_alloc(ctx, p->param_count * 4, &m->momentum);
    if (st == PP_OK) st = device_alloc(ctx, p->state_count * 4, &m->state);
    if (st == PP_OK) st = device_alloc(ctx, m->arena_bytes, &m->arena);
    if (st == PP_OK && p->act_bf16) st = device_alloc(ctx, p->param_count * 2, &m->shadow);
    if (st == PP_OK && p->act_bf16) st = ctx->ops->memset_zero(ctx, m->shadow, p->param_count * 2);
    if (st == PP_OK) st = ctx->ops->memset_zero(ctx, m->params, p->param_count * 4);
    if (st == PP_OK) st = ctx->ops->memset_zero(ctx, m->grads, p->param_count * 4);
    if (st == PP_OK) st = ctx->ops->memset_zero(ctx, m->momentum, p->param_count * 4);
    if (st == PP_OK) st = ctx->ops->memset_zero(ctx, m->state, p->state_count * 4);
    if (st == PP_OK && m->comm) st = make_buckets(m);
    if (st == PP_ERR_OUT_OF_MEMORY)
        ctx_wrap(ctx, st, "model %s needs %zu bytes of device memory (planned peak)", p->model, r.peak);
    if (st != PP_OK) {
        pp_model_destroy(m);
        return st;
    }
    *out = m;
    return PP_OK;
}

pp_status pp_model_bundle_write(pp_context *ctx, const pp_model_options *options, const char *out_dir,
                                pp_model_bundle_info *info)
{
    if (!ctx || !options || !out_dir || !out_dir[0]) return PP_ERR_INVALID_ARGUMENT;
    ctx_clear_error(ctx);
    if (info) memset(info, 0, sizeof *info);
    /* The request pp_model_create makes, with the same tuning lookup. */
    gen_plan_request req;
    model_plan_request(options, 1, &req);
    pp_status st = tune_lookup(ctx, &req);
    const int tuned_entries = req.tuned_count;
    gen_bundle b;
    memset(&b, 0, sizeof b);
    if (st == PP_OK) st = gen_plan_bundle(ctx, &req, &b);
    tune_lookup_free(&req);
    /* Written into a staging folder that replaces out_dir only when complete (bundle_dir.h). */
    char path[4800], staging[4400] = "";
    if (st == PP_OK) st = bundle_dir_stage(ctx, out_dir, staging, sizeof staging);
    for (int i = 0; i < b.file_count && st == PP_OK; i++) {
        if ((size_t)snprintf(path, sizeof path, "%s/%s", staging, b.files[i].path) >= sizeof path)
            st = ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "output path is too long: %s/%s", out_dir, b.files[i].path);
        else if ((st = file_write_atomic(ctx, path, b.files[i].text, b.files[i].len)) != PP_OK)
            st = ctx_wrap(ctx, st, "cannot write the bundle %s (nothing was changed there)", out_dir);
    }
    if (st == PP_OK)
        st = bundle_dir_commit(ctx, out_dir, staging);
    else if (staging[0])
        bundle_dir_discard(staging);
    if (st == PP_OK && info) {
        info->kernels = b.kernels;
        info->launches = b.launches;
        info->tuned_entries = tuned_entries;
        info->batch = b.batch, info->height = b.height, info->width = b.width, info->classes = b.classes;
        snprintf(info->math, sizeof info->math, "%s", b.math);
    }
    gen_plan_bundle_free(&b);
    return st;
}

pp_status pp_model_conv_list_get(pp_context *ctx, const pp_model_options *options, pp_model_conv_list *out)
{
    if (!out) return PP_ERR_INVALID_ARGUMENT;
    memset(out, 0, sizeof *out);
    if (!ctx || !options) return PP_ERR_INVALID_ARGUMENT;
    ctx_clear_error(ctx);
    /* The request pp_model_create makes, with the same tuning lookup, without sources. */
    gen_plan_request req;
    model_plan_request(options, 0, &req);
    pp_status st = tune_lookup(ctx, &req);
    out->tuned_entries = req.tuned_count;
    gen_plan plan;
    memset(&plan, 0, sizeof plan);
    if (st == PP_OK) st = gen_plan_train(ctx, &req, &plan);
    tune_lookup_free(&req);
    if (st != PP_OK) return st;
    out->batch = plan.batch, out->height = plan.height, out->width = plan.width;
    out->channels = plan.channels, out->classes = plan.classes;
    snprintf(out->math, sizeof out->math, "%s", plan.math);
    out->convs = calloc((size_t)plan.layer_count + 1, sizeof *out->convs);
    if (!out->convs) st = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < plan.layer_count && st == PP_OK; i++) {
        const plan_layer *l = &plan.layers[i];
        if (strcmp(l->op, "conv") != 0) continue;
        pp_model_conv *c = &out->convs[out->count];
        pp_layer_desc *d = &c->desc;
        pp_layer_desc_init(d);
        d->n = l->n, d->c = l->c, d->h = l->h, d->w = l->w, d->k = l->k, d->r = l->r, d->s = l->s;
        d->stride = l->stride, d->pad = l->pad, d->pool = l->pool;
        d->pool_mode = l->pool_max ? PP_POOL_MAX : PP_POOL_AVG;
        d->variant_fwd = l->variant_fwd, d->variant_bwd_data = l->variant_bwd_data;
        d->variant_bwd_weight = l->variant_bwd_weight;
        d->storage = plan.act_bf16 ? PP_STORAGE_BF16 : PP_STORAGE_F32; /* as the step runs them */
        size_t len = strlen(l->name) + 1;
        char *name = malloc(len);
        if (!name) {
            st = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
            break;
        }
        memcpy(name, l->name, len);
        d->name = name;
        c->p = l->p, c->q = l->q;
        out->count++;
    }
    gen_plan_free(&plan);
    return st;
}

void pp_model_conv_list_free(pp_model_conv_list *list)
{
    if (!list) return;
    for (int i = 0; list->convs && i < list->count; i++) free((char *)list->convs[i].desc.name);
    free(list->convs);
    memset(list, 0, sizeof *list);
}

pp_status pp_model_kernel_count(const pp_model *m, int *out)
{
    if (!m || !out) return PP_ERR_INVALID_ARGUMENT;
    *out = m->plan.kernel_count;
    return PP_OK;
}

pp_status pp_model_kernel_info_get(const pp_model *m, int index, pp_kernel_info *out)
{
    if (!m || !out) return PP_ERR_INVALID_ARGUMENT;
    if (index < 0 || index >= m->plan.kernel_count)
        return ctx_fail(m->ctx, PP_ERR_INVALID_ARGUMENT, "kernel index %d out of range 0..%d", index,
                        m->plan.kernel_count - 1);
    const gen_kernel *k = &m->plan.kernels[index];
    memset(out, 0, sizeof *out);
    out->name = k->name;
    out->op = k->op;
    out->math = k->math;
    memcpy(out->grid, k->grid, sizeof out->grid);
    memcpy(out->block, k->block, sizeof out->block);
    out->registers = out->spill_store_bytes = out->spill_load_bytes = out->shared_bytes = out->stack_bytes = -1;
    return PP_OK;
}

pp_status pp_model_memory_report(const pp_model *m, pp_memory_report *out)
{
    if (!m || !out) return PP_ERR_INVALID_ARGUMENT;
    report_from(&m->plan, out);
    return PP_OK;
}

pp_status pp_model_param_count(const pp_model *m, int *out)
{
    if (!m || !out) return PP_ERR_INVALID_ARGUMENT;
    *out = m->plan.param_count_keys + m->plan.state_count_keys;
    return PP_OK;
}

/* The i-th entry in state_dict order: parameters, then each BN layer's statistics right
 * after its bias, as torchvision orders them. */
static const plan_tensor_info *entry(const gen_plan *p, int index, int *is_state)
{
    int seen = 0;
    for (int i = 0; i < p->param_count_keys; i++) {
        if (seen++ == index) {
            *is_state = 0;
            return &p->params[i];
        }
        const char *key = p->params[i].key;
        size_t n = strlen(key);
        if (n > 5 && strcmp(key + n - 5, ".bias") == 0) {
            for (int j = 0; j < p->state_count_keys; j++) {
                if (strncmp(p->state[j].key, key, n - 4) != 0) continue;
                if (seen++ == index) {
                    *is_state = 1;
                    return &p->state[j];
                }
            }
        }
    }
    return NULL;
}

pp_status pp_model_param_info(const pp_model *m, int index, pp_param_info *out)
{
    if (!m || !out) return PP_ERR_INVALID_ARGUMENT;
    int is_state;
    const plan_tensor_info *e = entry(&m->plan, index, &is_state);
    if (!e) return ctx_fail(m->ctx, PP_ERR_INVALID_ARGUMENT, "parameter index %d out of range", index);
    out->key = e->key;
    out->rank = e->rank;
    memcpy(out->shape, e->shape, sizeof out->shape);
    out->count = e->count;
    out->is_statistic = is_state;
    return PP_OK;
}

/* Finds key among parameters (base = params array) or statistics (base = state array);
 * *info (if not NULL) receives its description. */
static pp_status locate(pp_model *m, const char *key, size_t count, int allow_state, pp_devptr *at,
                        const plan_tensor_info **info)
{
    const gen_plan *p = &m->plan;
    if (!key) return ctx_fail(m->ctx, PP_ERR_INVALID_ARGUMENT, "NULL parameter key");
    for (int pass = 0; pass < 2; pass++) {
        const plan_tensor_info *list = pass ? p->state : p->params;
        int n = pass ? p->state_count_keys : p->param_count_keys;
        if (pass && !allow_state) break;
        for (int i = 0; i < n; i++) {
            if (strcmp(list[i].key, key) != 0) continue;
            if (count != list[i].count)
                return ctx_fail(m->ctx, PP_ERR_SHAPE, "%s has %zu elements, got %zu", key, list[i].count, count);
            *at = (pass ? m->state : m->params) + list[i].offset * 4;
            if (info) *info = &list[i];
            return PP_OK;
        }
    }
    return ctx_fail(m->ctx, PP_ERR_INVALID_ARGUMENT, "%s has no %s '%s'", p->model,
                    allow_state ? "parameter or statistic" : "trainable parameter", key);
}

/* Convolution weights (rank 4) are KCRS outside and KRSC on the device (layout.h);
 * every other tensor has one layout. */
static int is_conv_weight(const plan_tensor_info *t) { return t->rank == 4; }

/* Downloads count floats at `at` into out, in the user-facing layout of t. */
static pp_status download_tensor(pp_model *m, const plan_tensor_info *t, pp_devptr at, float *out, size_t count)
{
    pp_context *ctx = m->ctx;
    if (!is_conv_weight(t)) return ctx->ops->download(ctx, out, at, count * 4);
    float *staging = malloc(count * sizeof *staging);
    if (!staging) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory (%zu floats of %s)", count, t->key);
    pp_status st = ctx->ops->download(ctx, staging, at, count * 4);
    if (st == PP_OK) layout_from_channels_last(staging, out, t->shape[0], t->shape[1], t->shape[2], t->shape[3]);
    free(staging);
    return st;
}

/* Under act=bf16: the bf16 copy of params [offset, offset + count) from their values in
 * the device layout. */
static pp_status refresh_shadow(pp_model *m, size_t offset, const float *values, size_t count)
{
    if (!m->shadow) return PP_OK;
    uint16_t *bits = malloc((count + 1) * sizeof *bits);
    if (!bits) return ctx_fail(m->ctx, PP_ERR_OUT_OF_MEMORY, "out of memory (bf16 copy of %zu parameters)", count);
    layout_to_bf16(values, bits, count);
    pp_status st = m->ctx->ops->upload(m->ctx, m->shadow + offset * 2, bits, count * 2);
    free(bits);
    return st;
}

/* Uploads count floats of values (user-facing layout of t) to `at`, and (a parameter) to
 * its bf16 copy. */
static pp_status upload_tensor(pp_model *m, const plan_tensor_info *t, pp_devptr at, const float *values, size_t count)
{
    pp_context *ctx = m->ctx;
    const int is_param = at >= m->params && at < m->params + m->plan.param_count * 4;
    const float *device_layout = values;
    float *staging = NULL;
    if (is_conv_weight(t)) {
        staging = malloc(count * sizeof *staging);
        if (!staging) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory (%zu floats of %s)", count, t->key);
        layout_to_channels_last(values, staging, t->shape[0], t->shape[1], t->shape[2], t->shape[3]);
        device_layout = staging;
    }
    pp_status st = ctx->ops->upload(ctx, at, device_layout, count * 4);
    if (st == PP_OK && is_param) st = refresh_shadow(m, t->offset, device_layout, count);
    free(staging);
    return st;
}

/* Permutes every convolution weight of a flat parameter-shaped array in place (to or from
 * channels last); scratch holds the largest parameter. */
static void permute_params(const gen_plan *p, float *values, float *scratch, int to_channels_last)
{
    for (int i = 0; i < p->param_count_keys; i++) {
        const plan_tensor_info *t = &p->params[i];
        if (!is_conv_weight(t)) continue;
        float *v = values + t->offset;
        if (to_channels_last)
            layout_to_channels_last(v, scratch, t->shape[0], t->shape[1], t->shape[2], t->shape[3]);
        else
            layout_from_channels_last(v, scratch, t->shape[0], t->shape[1], t->shape[2], t->shape[3]);
        memcpy(v, scratch, t->count * sizeof *v);
    }
}

static size_t largest_param(const gen_plan *p)
{
    size_t most = 1;
    for (int i = 0; i < p->param_count_keys; i++)
        if (p->params[i].count > most) most = p->params[i].count;
    return most;
}

pp_status pp_model_param_read(pp_model *m, const char *key, float *out, size_t count)
{
    if (!m || !out) return PP_ERR_INVALID_ARGUMENT;
    pp_devptr at = 0;
    const plan_tensor_info *t = NULL;
    PP_TRY(locate(m, key, count, 1, &at, &t));
    return download_tensor(m, t, at, out, count);
}

pp_status pp_model_param_write(pp_model *m, const char *key, const float *values, size_t count)
{
    if (!m || !values) return PP_ERR_INVALID_ARGUMENT;
    pp_devptr at = 0;
    const plan_tensor_info *t = NULL;
    PP_TRY(locate(m, key, count, 1, &at, &t));
    return upload_tensor(m, t, at, values, count);
}

pp_status pp_model_grad_read(pp_model *m, const char *key, float *out, size_t count)
{
    if (!m || !out) return PP_ERR_INVALID_ARGUMENT;
    pp_devptr at = 0;
    const plan_tensor_info *t = NULL;
    PP_TRY(locate(m, key, count, 0, &at, &t));
    return download_tensor(m, t, m->grads + (at - m->params), out, count);
}

pp_status pp_model_optimizer_size(const pp_model *m, size_t *count)
{
    if (!m || !count) return PP_ERR_INVALID_ARGUMENT;
    *count = m->plan.param_count;
    return PP_OK;
}

/* The momentum is exchanged in the parameters' user-facing layouts, like the parameters. */
pp_status pp_model_optimizer_read(pp_model *m, float *out, size_t count)
{
    if (!m || !out) return PP_ERR_INVALID_ARGUMENT;
    if (count != m->plan.param_count)
        return ctx_fail(m->ctx, PP_ERR_SHAPE, "optimizer state has %zu elements, got %zu", m->plan.param_count, count);
    float *scratch = malloc(largest_param(&m->plan) * sizeof *scratch);
    if (!scratch) return ctx_fail(m->ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    pp_status st = m->ctx->ops->download(m->ctx, out, m->momentum, count * 4);
    if (st == PP_OK) permute_params(&m->plan, out, scratch, 0);
    free(scratch);
    return st;
}

pp_status pp_model_optimizer_write(pp_model *m, const float *values, size_t count)
{
    if (!m || !values) return PP_ERR_INVALID_ARGUMENT;
    if (count != m->plan.param_count)
        return ctx_fail(m->ctx, PP_ERR_SHAPE, "optimizer state has %zu elements, got %zu", m->plan.param_count, count);
    float *copy = malloc((count + largest_param(&m->plan)) * sizeof *copy);
    if (!copy) return ctx_fail(m->ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    memcpy(copy, values, count * sizeof *copy);
    permute_params(&m->plan, copy, copy + count, 1);
    pp_status st = m->ctx->ops->upload(m->ctx, m->momentum, copy, count * 4);
    free(copy);
    return st;
}

/* splitmix64: a small, well-mixed deterministic generator for initialisation. */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s) { return ((next_u64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

/* Fills params (param_count floats) and state (state_count floats) as torchvision
 * initialises them, deterministically from seed. */
static void init_host(const gen_plan *p, uint64_t seed, float *params, float *state)
{
    uint64_t s = seed ^ 0x5eed5eed5eedULL;
    for (int i = 0; i < p->param_count_keys; i++) {
        const plan_tensor_info *t = &p->params[i];
        float *dst = params + t->offset;
        if (strcmp(t->init, "kaiming_normal_fan_out") == 0) {
            /* std = sqrt(2 / fan_out), fan_out = K*R*S (mode='fan_out', nonlinearity='relu') */
            double std = sqrt(2.0 / (double)(t->shape[0] * t->shape[2] * t->shape[3]));
            for (size_t j = 0; j < t->count; j++) {
                double u1 = uniform01(&s), u2 = uniform01(&s);
                dst[j] = (float)(std * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
            }
        } else if (strcmp(t->init, "linear_weight") == 0 || strcmp(t->init, "linear_bias") == 0) {
            /* nn.Linear: kaiming_uniform(a=sqrt(5)) and bias: both U(-1/sqrt(fan_in), +). */
            size_t fan_in = strcmp(t->init, "linear_weight") == 0 ? t->shape[1] : p->params[i - 1].shape[1];
            double bound = 1.0 / sqrt((double)fan_in);
            for (size_t j = 0; j < t->count; j++) dst[j] = (float)((2.0 * uniform01(&s) - 1.0) * bound);
        } else {
            float v = strcmp(t->init, "ones") == 0 ? 1.0f : 0.0f;
            for (size_t j = 0; j < t->count; j++) dst[j] = v;
        }
    }
    for (int i = 0; i < p->state_count_keys; i++) {
        const plan_tensor_info *t = &p->state[i];
        float v = strcmp(t->init, "ones") == 0 ? 1.0f : 0.0f;
        for (size_t j = 0; j < t->count; j++) state[t->offset + j] = v;
    }
}

pp_status pp_model_init_params(pp_model *m, uint64_t seed)
{
    if (!m) return PP_ERR_INVALID_ARGUMENT;
    const gen_plan *p = &m->plan;
    float *host = malloc((p->param_count + p->state_count + largest_param(p)) * sizeof *host);
    if (!host) return ctx_fail(m->ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    float *state = host + p->param_count;
    init_host(p, seed, host, state); /* torchvision's values, KCRS */
    permute_params(p, host, state + p->state_count, 1);
    pp_context *ctx = m->ctx;
    pp_status st = ctx->ops->upload(ctx, m->params, host, p->param_count * 4);
    if (st == PP_OK) st = refresh_shadow(m, 0, host, p->param_count);
    if (st == PP_OK) st = ctx->ops->upload(ctx, m->state, state, p->state_count * 4);
    if (st == PP_OK) st = ctx->ops->memset_zero(ctx, m->momentum, p->param_count * 4);
    free(host);
    return st;
}

struct pp_params {
    gen_plan plan;
    float *values; /* parameters, then statistics */
};

pp_status pp_params_init(pp_context *ctx, const pp_model_options *options, uint64_t seed, pp_params **out)
{
    if (!ctx || !options || !out) return PP_ERR_INVALID_ARGUMENT;
    *out = NULL;
    ctx_clear_error(ctx);
    pp_params *ps = calloc(1, sizeof *ps);
    if (!ps) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    gen_plan_request req;
    model_plan_request(options, 0, &req);
    pp_status st = gen_plan_train(ctx, &req, &ps->plan);
    if (st != PP_OK) {
        free(ps);
        return st;
    }
    ps->values = malloc((ps->plan.param_count + ps->plan.state_count + 1) * sizeof *ps->values);
    if (!ps->values) {
        pp_params_destroy(ps);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "out of memory");
    }
    init_host(&ps->plan, seed, ps->values, ps->values + ps->plan.param_count);
    *out = ps;
    return PP_OK;
}

pp_status pp_params_count(const pp_params *ps, int *out)
{
    if (!ps || !out) return PP_ERR_INVALID_ARGUMENT;
    *out = ps->plan.param_count_keys + ps->plan.state_count_keys;
    return PP_OK;
}

pp_status pp_params_get(const pp_params *ps, int index, pp_param_info *info, const float **data)
{
    if (!ps || !info || !data) return PP_ERR_INVALID_ARGUMENT;
    int is_state;
    const plan_tensor_info *e = entry(&ps->plan, index, &is_state);
    if (!e) return PP_ERR_INVALID_ARGUMENT;
    info->key = e->key;
    info->rank = e->rank;
    memcpy(info->shape, e->shape, sizeof info->shape);
    info->count = e->count;
    info->is_statistic = is_state;
    *data = ps->values + (is_state ? ps->plan.param_count : 0) + e->offset;
    return PP_OK;
}

void pp_params_destroy(pp_params *ps)
{
    if (!ps) return;
    gen_plan_free(&ps->plan);
    free(ps->values);
    free(ps);
}

/* Uploads a batch of images, NCHW, to the channels-last input buffer at `at` (rounded to
 * bf16 under act=bf16). */
static pp_status upload_images(pp_model *m, pp_devptr at, const float *x, size_t bytes)
{
    const gen_plan *p = &m->plan;
    const size_t count = (size_t)p->batch * p->channels * p->height * p->width;
    const size_t elem = p->act_bf16 ? 2 : 4;
    if (count * elem != bytes)
        return ctx_fail(m->ctx, PP_ERR_INTERNAL, "input buffer of %zu bytes for a batch of %zu %s values", bytes, count,
                        p->act_bf16 ? "bf16" : "float");
    if (!m->staging) m->staging = malloc((count + 1) * sizeof *m->staging);
    if (p->act_bf16 && !m->staging_bits) m->staging_bits = malloc((count + 1) * sizeof *m->staging_bits);
    if (!m->staging || (p->act_bf16 && !m->staging_bits))
        return ctx_fail(m->ctx, PP_ERR_OUT_OF_MEMORY, "out of memory (input batch of %zu floats)", count);
    float *staging = m->staging;
    uint16_t *bits = p->act_bf16 ? m->staging_bits : NULL;
    layout_to_channels_last(x, staging, (size_t)p->batch, (size_t)p->channels, (size_t)p->height, (size_t)p->width);
    if (bits) layout_to_bf16(staging, bits, count);
    return m->ctx->ops->upload(m->ctx, at, bits ? (const void *)bits : (const void *)staging, bytes);
}

pp_status pp_model_set_batch(pp_model *m, const float *x, const int32_t *labels)
{
    if (!m || !x || !labels) return PP_ERR_INVALID_ARGUMENT;
    const gen_plan *p = &m->plan;
    for (int i = 0; i < p->batch; i++)
        if (labels[i] < 0 || labels[i] >= p->classes)
            return ctx_fail(m->ctx, PP_ERR_INVALID_ARGUMENT, "label %d of the batch is %d, outside [0, %d)", i,
                            (int)labels[i], p->classes);
    const plan_buffer *xb = &p->train.buffers[p->x_buffer], *lb = &p->train.buffers[p->labels_buffer];
    pp_context *ctx = m->ctx;
    PP_TRY(upload_images(m, m->arena + xb->offset, x, xb->bytes));
    PP_TRY(ctx->ops->upload(ctx, m->arena + lb->offset, labels, lb->bytes));
    m->batch_set = 1;
    return PP_OK;
}

/* Launches steps[from, to) of s; with wait, then waits for the device to finish them. */
static pp_status run_steps(pp_model *m, const plan_steps *s, int from, int to, const float scalars[3], int wait)
{
    pp_context *ctx = m->ctx;
    for (int i = from; i < to; i++) {
        const plan_step *step = &s->steps[i];
        const gen_kernel *k = &m->plan.kernels[step->kernel];
        pp_devptr values[GEN_MAX_ARGS];
        void *args[GEN_MAX_ARGS];
        for (int a = 0; a < step->ref_count; a++) {
            const plan_ref *r = &step->refs[a];
            values[a] = 0;
            args[a] = &values[a];
            switch (r->kind) {
            case REF_NULL: break;
            case REF_BUFFER: values[a] = m->arena + s->buffers[r->index].offset; break;
            case REF_PARAM: values[a] = m->params + r->index * 4; break;
            case REF_GRAD: values[a] = m->grads + r->index * 4; break;
            case REF_STATE: values[a] = m->state + r->index * 4; break;
            case REF_PARAMS: values[a] = m->params; break;
            case REF_GRADS: values[a] = m->grads; break;
            case REF_MOMENTUM: values[a] = m->momentum; break;
            case REF_SHADOW: values[a] = m->shadow; break;
            case REF_SHADOW_PARAM: values[a] = m->shadow + r->index * 2; break;
            case REF_SCALAR: args[a] = (void *)&scalars[r->index]; break;
            }
        }
        if (step->sync != SYNC_NONE && m->comm) {
            /* The partials this step merges come from the steps before: complete them, then
             * merge the ranks' (the launches so far are in order on one stream). */
            pp_status st = ctx->ops->synchronize(ctx);
            if (st == PP_OK)
                st = comm_sync_partials(m->comm, step->sync, values[step->sync_arg], step->sync_parts,
                                        step->sync_channels, step->sync_shift);
            if (st != PP_OK) return ctx_wrap(ctx, st, "synchronised BN, %s step %d (%s)", step->phase, i, step->layer);
        }
        pp_status st = ctx->ops->launch(ctx, m->functions[step->kernel], k->grid, k->block, args, NULL);
        if (st != PP_OK) return ctx_wrap(ctx, st, "%s step %d (%s, %s)", step->phase, i, step->layer, k->name);
    }
    return wait ? ctx->ops->synchronize(ctx) : PP_OK;
}

pp_status pp_model_train_step(pp_model *m, const pp_sgd_options *sgd, float *loss)
{
    if (!m) return PP_ERR_INVALID_ARGUMENT;
    pp_context *ctx = m->ctx;
    ctx_clear_error(ctx);
    if (!m->batch_set) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "no batch: call pp_model_set_batch first");
    const plan_steps *s = &m->plan.train;
    int end = s->step_count;
    if (!sgd)
        while (end > 0 && strcmp(s->steps[end - 1].phase, "update") == 0) end--;
    float scalars[3] = {sgd ? sgd->lr : 0, sgd ? sgd->momentum : 0, sgd ? sgd->weight_decay : 0};
    /* Data parallel: the gradients are averaged over the ranks between the backward pass and
     * the update, so every rank updates the same parameters with the same step. */
    int update = s->step_count;
    while (update > 0 && strcmp(s->steps[update - 1].phase, "update") == 0) update--;
    int from = 0;
    /* Each stage's gradients start their average as soon as they are final, while the
     * backward pass goes on (on cuda a stream of their own; on the host MPI's requests). */
    for (int b = 0; m->comm && b < m->bucket_count; b++) {
        const struct grad_bucket *g = &m->buckets[b];
        if (g->ready + 1 > from) PP_TRY(run_steps(m, s, from, g->ready + 1, scalars, 0));
        if (g->ready + 1 > from) from = g->ready + 1;
        pp_status st = comm_allreduce_start(m->comm, m->grads + g->offset * 4, g->count);
        if (st != PP_OK) return ctx_wrap(ctx, st, "averaging the gradients of model %s", m->plan.model);
    }
    /* One wait per step, at its end: a wait between the backward pass and the update would
     * leave the device idle while the update's launches are issued. */
    PP_TRY(run_steps(m, s, from, update, scalars, 0));
    if (m->comm) {
        pp_status st = comm_allreduce_wait(m->comm);
        if (st != PP_OK) return ctx_wrap(ctx, st, "averaging the gradients of model %s", m->plan.model);
    }
    PP_TRY(run_steps(m, s, update, end, scalars, 1));
    const plan_buffer *lb = &s->buffers[m->plan.loss_buffer];
    float result[2];
    PP_TRY(ctx->ops->download(ctx, result, m->arena + lb->offset, sizeof result));
    if (loss) *loss = result[0];
    m->last_correct = (int)result[1];
    return PP_OK;
}

pp_status pp_model_last_correct(const pp_model *m, int *out)
{
    if (!m || !out) return PP_ERR_INVALID_ARGUMENT;
    *out = m->last_correct;
    return PP_OK;
}

pp_status pp_model_sync_statistics(pp_model *m)
{
    if (!m) return PP_ERR_INVALID_ARGUMENT;
    ctx_clear_error(m->ctx);
    if (!m->comm || m->plan.state_count == 0) return PP_OK;
    return comm_broadcast(m->comm, m->state, m->plan.state_count);
}

pp_status pp_model_infer(pp_model *m, const float *x, float *logits)
{
    if (!m || !x || !logits) return PP_ERR_INVALID_ARGUMENT;
    pp_context *ctx = m->ctx;
    ctx_clear_error(ctx);
    const plan_steps *s = &m->plan.infer;
    int xi = -1;
    for (int i = 0; i < s->buffer_count; i++)
        if (strcmp(s->buffers[i].name, "x") == 0) xi = i;
    if (xi < 0 || m->plan.logits_buffer < 0) return ctx_fail(ctx, PP_ERR_INTERNAL, "inference plan lacks x or logits");
    m->batch_set = 0;
    PP_TRY(upload_images(m, m->arena + s->buffers[xi].offset, x, s->buffers[xi].bytes));
    const float none[3] = {0, 0, 0};
    PP_TRY(run_steps(m, s, 0, s->step_count, none, 1));
    const plan_buffer *lb = &s->buffers[m->plan.logits_buffer];
    return ctx->ops->download(ctx, logits, m->arena + lb->offset, lb->bytes);
}

void pp_model_destroy(pp_model *m)
{
    if (!m) return;
    pp_context *ctx = m->ctx;
    const gen_plan *p = &m->plan;
    device_free(ctx, m->params, p->param_count * 4);
    device_free(ctx, m->grads, p->param_count * 4);
    device_free(ctx, m->momentum, p->param_count * 4);
    device_free(ctx, m->state, p->state_count * 4);
    device_free(ctx, m->arena, m->arena_bytes);
    free(m->buckets);
    free(m->staging);
    free(m->staging_bits);
    if (m->shadow) device_free(ctx, m->shadow, p->param_count * 2);
    for (int i = 0; m->modules && i < p->kernel_count; i++)
        if (m->modules[i]) ctx->ops->module_destroy(ctx, m->modules[i]);
    free(m->modules);
    free(m->functions);
    gen_plan_free(&m->plan);
    free(m);
}
