/* plan.h - a training plan in C: what the generator's train.lua produced (launches in
 * order with their kernels and argument bindings, buffers with sizes and lifetimes,
 * parameters), and the arena placement the runtime computes from it (planner.c). */
#ifndef PP_PLAN_H
#define PP_PLAN_H

#include "context.h"
#include "gen_layer.h"

#define PLAN_MAX_STAGES 16

typedef enum plan_ref_kind {
    REF_NULL = 0,
    REF_BUFFER, /* index into the plan's buffers */
    REF_PARAM,  /* float offset into the flat parameter array */
    REF_GRAD,   /* float offset into the flat gradient array */
    REF_STATE,  /* float offset into the flat BN-statistics array */
    REF_PARAMS, /* the whole flat arrays */
    REF_GRADS,
    REF_MOMENTUM,
    REF_SHADOW,       /* the flat bf16 copy of the parameters (act=bf16) */
    REF_SHADOW_PARAM, /* element offset into it */
    REF_SCALAR        /* index: 0 lr, 1 momentum, 2 weight_decay */
} plan_ref_kind;

typedef struct plan_ref {
    plan_ref_kind kind;
    size_t index;
} plan_ref;

typedef struct plan_buffer {
    char name[96];
    char kind[16]; /* io, activation, saved, gradient, workspace */
    char stage[16];
    size_t bytes;
    int first, last; /* step indices, 0-based, inclusive */
    int saved;       /* live across the forward/backward boundary */
    size_t offset;   /* in the arena (planner.c) */
} plan_buffer;

typedef struct plan_step {
    char phase[12];
    char layer[64];
    int kernel; /* index into the plan's kernels, -1 when built without sources */
    int ref_count;
    plan_ref refs[GEN_MAX_ARGS];
    /* Synchronised BN: before this step the ranks exchange the partials its kernel's
     * "partials" argument reads (sync_arg: that argument's index): SYNC_BN_STATS merges
     * (count, mean, M2) triples, SYNC_BN_SUMS adds (sum, sum) pairs; sync_parts x
     * sync_channels of them, and with sync_shift a shift per channel after the triples. */
    int sync, sync_arg, sync_parts, sync_channels, sync_shift;
} plan_step;

enum {
    SYNC_NONE = 0,
    SYNC_BN_STATS = 1,
    SYNC_BN_SUMS = 2
};

typedef struct plan_tensor_info {
    char key[96];
    int rank;
    size_t shape[4];
    size_t offset, count; /* in floats */
    char init[32];
} plan_tensor_info;

typedef struct plan_steps {
    plan_step *steps;
    int step_count;
    plan_buffer *buffers;
    int buffer_count;
    size_t arena_bytes; /* planner.c */
} plan_steps;

/* One layer of the network graph (network.lua), for references and reports. */
typedef struct plan_layer {
    char op[16]; /* conv, bn, maxpool, avgpool, fc, softmax_ce */
    char name[64];
    int input, output, residual;                /* tensor ids; 0 is the input x; residual -1 if none */
    int n, c, h, w, k, r, s, stride, pad, p, q; /* as the graph has them (bn: hw in h) */
    int in, out, classes;                       /* fc, softmax_ce */
    int relu, pool, pool_max;
    int variant_fwd, variant_bwd_data, variant_bwd_weight; /* conv: as built (tuned or default) */
    size_t weight, bias, running_mean, running_var;        /* float offsets into params / state */
} plan_layer;

typedef struct gen_plan {
    char model[64];
    int batch, height, width, classes, channels;
    plan_steps train, infer;
    int forward_end;     /* steps [0, forward_end) of train are the forward pass */
    int sync_world;      /* the request's: > 1 under synchronised BN */
    gen_kernel *kernels; /* distinct kernels, by name */
    int kernel_count;
    plan_tensor_info *params, *state;
    int param_count_keys, state_count_keys;
    size_t param_count, state_count;                         /* floats */
    int x_buffer, labels_buffer, loss_buffer, logits_buffer; /* in train (logits: infer) */
    plan_layer *layers;
    int layer_count;
    size_t *tensor_elems; /* per tensor id */
    int tensor_count;
    /* Placement-independent memory figures (bytes). */
    size_t weights, gradients, optimizer, state_bytes, saved, largest_transient, live_peak;
    int stage_count;
    char stage_names[PLAN_MAX_STAGES][16];
    size_t saved_by_stage[PLAN_MAX_STAGES];
    char math[8];             /* the policy's math mode: "fp32", "tf32" or "bf16" */
    char baseline_policy[32]; /* the policy this one compares against (pp_memory_report) */
    int act_bf16;             /* policy act=bf16: activations (and the input x) stored in bf16; a
                   * bf16 copy of the parameters ("shadow", counted in weights) */
} gen_plan;

typedef struct gen_plan_request {
    const char *model;                 /* built-in name or a model file path */
    const char *policy;                /* policy text, or a path ending in .lua; NULL: "1" */
    int batch, height, width, classes; /* 0: the model's defaults */
    int sources;                       /* build kernel sources (needed to run; not to plan) */
    /* Tuned variants (layer.lua tuning_key -> variant index); others use the defaults. */
    const char *const *tuned_keys;
    const int *tuned_variants;
    int tuned_count;
    int sync_world; /* > 1: synchronised BN over this many ranks (train.lua sync_world) */
} gen_plan_request;

/* A model's training step as `poolprop gen --model` writes it (gen_plan_bundle), in
 * memory: files[i].path is relative to the bundle's folder ("kernels/<name>.cu", then
 * "plan.lua"). */
typedef struct gen_bundle_file {
    char *path, *text;
    size_t len;
} gen_bundle_file;

typedef struct gen_bundle {
    gen_bundle_file *files;
    int file_count;
    int kernels, launches;             /* distinct kernels; launches of one training step */
    int batch, height, width, classes; /* as generated (defaults resolved) */
    char math[8];
} gen_bundle;

/* One kernel the tuner measures: a conv op on one layer shape of the model. */
typedef struct gen_tuning_target {
    char key[256];      /* tuning-database key (layer.lua tuning_key) */
    char op[24];        /* conv_fwd, conv_bwd_data, conv_bwd_weight */
    char name[64];      /* the first layer of the model with this shape */
    int count;          /* layers of the model with this shape */
    pp_layer_desc desc; /* variants 0 */
    int *candidates;    /* variant indices the policy's math mode allows, the mode's default first */
    int candidate_count;
} gen_tuning_target;

typedef struct gen_tuning {
    char math[8];     /* the policy's math mode */
    char version[64]; /* generator and variant-space version (api.lua tuning_version) */
    gen_tuning_target *targets;
    int count;
} gen_tuning;

/* Places the buffers of steps in one arena: buffers whose lifetimes overlap never share
 * bytes; offsets aligned to 256 bytes. Sets each offset and steps->arena_bytes. */
pp_status planner_place(pp_context *ctx, plan_steps *steps);

#endif
