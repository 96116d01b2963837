/* poolprop.h - the one public header of the poolprop runtime.
 *
 * poolprop trains CNNs with pooled saved activations: every convolution's forward
 * pass is exact, but the copy of its input kept for the weight gradient is stored
 * average- (or max-) pooled by a factor f and un-pooled inside the weight-gradient
 * kernel. Kernels are generated per layer shape by the Lua generator, compiled at run
 * time (NVRTC for the cuda backend, the host C++ compiler for the host emulation
 * backend) and cached on disk.
 *
 * Conventions: every function returns pp_status and writes results through trailing
 * pointers; on failure the context keeps a message, read with pp_last_error(). The
 * library never prints and never exits. Handles are opaque. */
#ifndef POOLPROP_H
#define POOLPROP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Symbols of the shared library; everything else in it is hidden. */
#if defined(__GNUC__)
#define PP_API __attribute__((visibility("default")))
#else
#define PP_API
#endif

#define PP_VERSION_MAJOR 0
#define PP_VERSION_MINOR 1
#define PP_VERSION_PATCH 0
#define PP_VERSION_STRING "0.1.0"

typedef enum pp_status {
    PP_OK = 0,
    PP_ERR_INVALID_ARGUMENT, /* a NULL handle, an option out of range */
    PP_ERR_PARSE,            /* a malformed description, policy or data file */
    PP_ERR_SHAPE,            /* shapes that are impossible or do not fit each other */
    PP_ERR_IO,               /* a file could not be read or written */
    PP_ERR_OUT_OF_MEMORY,    /* host or device allocation failed */
    PP_ERR_NO_DEVICE,        /* cuda backend selected where no usable GPU or driver exists */
    PP_ERR_COMPILE,          /* NVRTC or the host compiler rejected a kernel (log in message) */
    PP_ERR_DRIVER,           /* a CUDA driver call failed */
    PP_ERR_KERNEL,           /* an emulated kernel faulted: deadlock, divergent barrier */
    PP_ERR_GENERATOR,        /* the Lua generator failed */
    PP_ERR_INTERNAL
} pp_status;

PP_API const char *pp_status_string(pp_status status);

typedef enum pp_backend {
    PP_BACKEND_NONE = 0, /* generation and planning only: nothing is compiled or run */
    PP_BACKEND_HOST = 1, /* CPU emulation of the generated CUDA source: a test instrument */
    PP_BACKEND_CUDA = 2, /* NVRTC + CUDA driver API on a GPU */
    /* cuda where a usable GPU and driver are found, else host (the default of
     * pp_context_options_init); pp_context_backend then says which, and
     * pp_context_backend_reason why. */
    PP_BACKEND_AUTO = 3
} pp_backend;

/* Order in which the host backend runs the emulated threads of a block between
 * barriers. A kernel with a missing __syncthreads gives different results under
 * different schedules. */
typedef enum pp_schedule {
    PP_SCHEDULE_FORWARD = 0,
    PP_SCHEDULE_REVERSE = 1,
    PP_SCHEDULE_SHUFFLED = 2
} pp_schedule;

typedef enum pp_log_level {
    PP_LOG_INFO = 0,
    PP_LOG_WARNING = 1
} pp_log_level;
typedef void (*pp_log_fn)(void *user, pp_log_level level, const char *message);

typedef struct pp_context_options {
    pp_backend backend;
    int cuda_device;       /* cuda: device ordinal */
    int arch;              /* target sm_XY as XY; 0 = the device's (cuda) or 90 (host compile checks) */
    const char *cache_dir; /* NULL: $POOLPROP_CACHE_DIR, else $XDG_CACHE_HOME/poolprop, else $HOME/.cache/poolprop */
    int disable_cache;     /* non-zero: never read or write the on-disk cache */
    pp_schedule host_schedule;
    uint32_t host_seed; /* for PP_SCHEDULE_SHUFFLED */
    int host_threads;   /* OS threads running emulated blocks; 0 = number of CPUs */
    pp_log_fn log;      /* optional: warnings (a corrupt cache entry rebuilt, ...) */
    void *log_user;
    /* Where tuning databases live (one file per device): NULL: $POOLPROP_TUNING_DIR, else
     * <cache dir>/tuning. Models use the database of the context's device when it has an
     * entry for a kernel, the default variant otherwise. */
    const char *tuning_dir;
    int ignore_tuning; /* non-zero: models use the default variants only */
    /* Bytes of device memory (host memory on the host backend) the context may hold at once;
     * 0: no limit but what the device has available. pp_model_create checks a model's planned
     * peak against the smaller of the two before it compiles or allocates anything, and fails
     * with PP_ERR_OUT_OF_MEMORY and the plan's figures where it does not fit. */
    size_t memory_limit;
} pp_context_options;

typedef struct pp_context pp_context;

PP_API void pp_context_options_init(pp_context_options *options);
/* On failure *out is still set (unless memory ran out) so that pp_last_error(*out) can be
 * read; such a context has no backend, every other call on it fails, and it must be
 * released with pp_context_destroy(). */
PP_API pp_status pp_context_create(const pp_context_options *options, pp_context **out);
PP_API void pp_context_destroy(pp_context *ctx);
/* The message of the last failed call on ctx ("" if none). Valid until the next call. */
PP_API const char *pp_last_error(const pp_context *ctx);
/* The backend the context runs on (PP_BACKEND_AUTO resolved to cuda or host). */
PP_API pp_backend pp_context_backend(const pp_context *ctx);
/* Why: "requested" unless the options asked for PP_BACKEND_AUTO; then what it found
 * ("a usable GPU", or "no usable GPU: <why the cuda backend could not start>"). */
PP_API const char *pp_context_backend_reason(const pp_context *ctx);
/* A one-line description of the device ("host emulation, 2 threads", "NVIDIA H200 sm_90"). */
PP_API const char *pp_context_device_name(const pp_context *ctx);

/* Counters of the on-disk kernel cache since the context was created. */
typedef struct pp_cache_stats {
    int hits;
    int misses;
    int corrupt; /* entries found damaged, reported, and rebuilt */
    int writes;
} pp_cache_stats;
PP_API pp_status pp_context_cache_stats(const pp_context *ctx, pp_cache_stats *out);

/* ---- One convolution layer: fused forward + pool-save, input gradient, weight gradient ---- */

typedef enum pp_pool_mode {
    PP_POOL_AVG = 0,
    PP_POOL_MAX = 1
} pp_pool_mode;

/* How a layer's kernels store its tensors on the device.
 * PP_STORAGE_F32: everything float32.
 * PP_STORAGE_BF16: the activations x, the output y, the pooled save xp, the output
 *   gradient dy, the input gradient dx and the weights the kernels read are bf16 (rounded
 *   to nearest even), halving their memory and traffic; the weight gradient dw stays
 *   float32, and every product is accumulated in float32. Only the BF16 tensor-core
 *   variants (math "bf16", sm_80 and later) take it. */
typedef enum pp_storage {
    PP_STORAGE_F32 = 0,
    PP_STORAGE_BF16 = 1
} pp_storage;

/* X: (n,c,h,w)  W: (k,c,r,s)  Y/dY: (n,k,p,q)  Xp: (n,c,ceil(h/pool),ceil(w/pool)). */
typedef struct pp_layer_desc {
    const char *name; /* optional, used in generated file headers */
    int n, c, h, w;
    int k, r, s;
    int stride, pad;
    int pool; /* 1, 2, 4 or 8 */
    pp_pool_mode pool_mode;
    pp_storage storage; /* PP_STORAGE_F32 (pp_layer_desc_init's) or PP_STORAGE_BF16 */
    /* Tile variant per kernel: 0 = default, i > 0 = the i-th entry of that kernel's
     * declared search space (pp_layer_variant_count). With PP_STORAGE_BF16, 0 is the
     * BF16 default and i > 0 must be a BF16 variant (pp_variant_info.math "bf16"):
     * pp_layer_create rejects any other with PP_ERR_INVALID_ARGUMENT. */
    int variant_fwd, variant_bwd_data, variant_bwd_weight;
} pp_layer_desc;

typedef struct pp_layer pp_layer;

typedef struct pp_layer_shape {
    int p, q;   /* output height and width */
    int hp, wp; /* pooled input height and width */
    size_t x_elems, w_elems, y_elems, xp_elems;
} pp_layer_shape;

typedef struct pp_kernel_info {
    const char *name;
    const char *op; /* "conv_fwd", "conv_bwd_data", "conv_bwd_weight", "splitk_reduce" */
    unsigned grid[3], block[3];
    /* From ptxas -v: the NVRTC static check for the context's arch (the device's; sm_90 on
     * the host backend), which pp_layer_kernel_check makes; -1 until then. */
    int registers, spill_store_bytes, spill_load_bytes, shared_bytes, stack_bytes;
    double compile_ms; /* backend compile time (0 when served from the cache) */
    int cache_hit;
    double nvrtc_ms;  /* NVRTC time of the static check on the host backend (0 when cached) */
    const char *math; /* precision of the products: "fp32" (FFMA), "tf32" or "bf16" (tensor cores) */
} pp_kernel_info;

PP_API void pp_layer_desc_init(pp_layer_desc *desc);
/* Number of declared tile variants for an op ("conv_fwd", ...); variant indices are 1..count. */
PP_API pp_status pp_layer_variant_count(pp_context *ctx, const char *op, int *out);
/* What a variant of an op is: its threads per block, pipeline stages (2 = cp.async double
 * buffering), the precision of its products ("fp32" FFMA, "tf32" or "bf16" tensor cores,
 * which need sm_80), the shared memory of its tiles with PP_STORAGE_F32 (shared_bytes)
 * and with PP_STORAGE_BF16 (shared_bytes_bf16: half, as the tiles hold bf16; 0 for a
 * variant that does not take bf16 storage), and its whole configuration as text
 * ("BK=16 BM=64 BN=32 MATH=0 STAGES=1 TM=8 TN=4"). index 0 is the default (of
 * PP_STORAGE_F32). Tiles above 48 KB are dynamic shared memory, the rest static. */
typedef struct pp_variant_info {
    int threads, stages, shared_bytes;
    const char *math;
    char config[160];
    int shared_bytes_bf16;
} pp_variant_info;
PP_API pp_status pp_layer_variant_info(pp_context *ctx, const char *op, int index, pp_variant_info *out);
/* Generates, compiles and loads the layer's kernels. */
PP_API pp_status pp_layer_create(pp_context *ctx, const pp_layer_desc *desc, pp_layer **out);
PP_API pp_status pp_layer_shape_get(const pp_layer *layer, pp_layer_shape *out);
PP_API pp_status pp_layer_kernel_count(const pp_layer *layer, int *out);
PP_API pp_status pp_layer_kernel_info_get(const pp_layer *layer, int index, pp_kernel_info *out);
/* pp_layer_kernel_info_get with the static check's fields (registers, spills, shared
 * memory, stack, nvrtc_ms): made on the first call per kernel, an NVRTC compile of its own
 * on the host backend (about as long as the host compile, hence not made by
 * pp_layer_create), a cache read of the module's compile on the cuda backend. An NVRTC
 * error is returned as such. */
PP_API pp_status pp_layer_kernel_check(pp_layer *layer, int index, pp_kernel_info *out);
/* Runs the three kernels on host arrays (copied to and from the device).
 * xp receives the pooled input (for pool == 1: a copy of x, which is what is saved).
 * The arrays are float32 whatever the storage: with PP_STORAGE_BF16 the runtime rounds x,
 * w and dy to bf16 (to nearest even) on the way to the device, and widens y, xp and dx
 * (bf16 there) back to float32 exactly; dw is float32 on the device too. */
PP_API pp_status pp_layer_run(pp_layer *layer, const float *x, const float *w, const float *dy, float *y, float *xp,
                              float *dx, float *dw);
PP_API void pp_layer_destroy(pp_layer *layer);

/* ---- The layer's kernels on the caller's memory and stream ----
 * For a framework that owns the memory (poolprop.torch): each call launches one op's
 * kernels on device pointers the caller allocated (host pointers on the host backend) and
 * returns. On cuda the launches are asynchronous on `stream` (a CUstream; NULL: the
 * default stream) and pointers come from the device's primary context, the one the CUDA
 * runtime uses; on the host the kernels have run when the call returns and stream is
 * ignored. Nothing is allocated on the device and nothing is synchronised.
 * Tensors are in the kernels' layout, contiguous, float32 or (PP_STORAGE_BF16) bf16 bits
 * except dw (always float32):
 *   x, dx: (N,H,W,C)   w, dw: (K,R,S,C)   y, dy: (N,P,Q,K)   xp: (N,HP,WP,C)
 * which is PyTorch's channels_last memory format for activations and for weights. */

/* Bytes of scratch (split-K partials of the weight gradient) the calls below need, the
 * largest over the three ops; 0 when none. One workspace may serve every call of the
 * layer that is not running at the same time. */
PP_API pp_status pp_layer_workspace_size(const pp_layer *layer, size_t *bytes);
/* y = conv(x, w); xp = the pooled input (pool > 1; with pool == 1, xp must be NULL: x
 * itself is what the weight gradient reads). */
PP_API pp_status pp_layer_forward(pp_layer *layer, const void *x, const void *w, void *y, void *xp, void *workspace,
                                  void *stream);
/* dx = the exact input gradient of dy through w. */
PP_API pp_status pp_layer_backward_data(pp_layer *layer, const void *dy, const void *w, void *dx, void *workspace,
                                        void *stream);
/* dw = the weight gradient from the saved input (xp when pool > 1, un-pooled on the fly;
 * x when pool == 1) and dy. dw is overwritten, not accumulated. */
PP_API pp_status pp_layer_backward_weight(pp_layer *layer, const void *saved, const void *dy, void *dw, void *workspace,
                                          void *stream);

/* Times the layer's kernels on device-resident data: warmup runs, then the median of
 * `repeats` runs of each kernel (cuda: CUDA events around each launch, so the device's time
 * without the launch overhead; host: wall clock of the emulated launch). ms[i] is kernel
 * i's time in launch order (pp_layer_kernel_count entries; at most 8). */
PP_API pp_status pp_layer_benchmark(pp_layer *layer, int warmup, int repeats, double *ms);

/* Reads a layer description file: Lua with one layer{N=..., C=..., ...} call per layer
 * (fields as pp_layer_desc, plus pool_mode = "avg"|"max", storage = "fp32"|"bf16" and
 * variant = {conv_fwd = i}). Any other storage is an error at its file:line.
 * path NULL reads the embedded default layer set. Errors read "file:line: error: ...".
 * Release the list with pp_layer_descs_free. */
PP_API pp_status pp_layer_file_load(pp_context *ctx, const char *path, pp_layer_desc **descs, int *count);
PP_API void pp_layer_descs_free(pp_layer_desc *descs, int count);
/* Generates the kernels of every layer of a description file (NULL: the default set) and
 * writes the bundle: out_dir/kernels/<kernel>.cu and out_dir/plan.lua. The bundle is
 * written into a staging folder next to out_dir and renamed to out_dir when complete: on
 * any error (a full disk included) out_dir is left as it was. out_dir may be absent, an
 * empty folder or a previous bundle (replaced whole: no stale kernels); any other existing
 * out_dir is refused with PP_ERR_IO. */
PP_API pp_status pp_bundle_write(pp_context *ctx, const char *path, const char *out_dir);

/* ---- Whole networks: models, pooling policies, memory plans, training steps ---- */

typedef struct pp_model_options {
    /* A built-in model ("resnet18" .. "resnet152", "cifar_resnet8" .. "cifar_resnet110")
     * or the path of a model file (Lua: `return resnet { block = ..., layers = {...} }`). */
    const char *model;
    /* Pooling policy: "2" (every conv input pooled by 2), "stem=1,stage1=4,default=2",
     * "layer1.0.conv1=4", options "mode=max", "bn=bf16", "relu=full"; "baseline" (what a
     * framework saves, for comparison); or the path of a policy file ending in .lua.
     * NULL: "1" (no pooling, ReLU saved as a 1-bit mask). */
    const char *policy;
    int batch;         /* with a communicator: each rank's batch (the global one / world size) */
    int height, width; /* 0: the model's default (224 for ImageNet ResNets, 32 for CIFAR) */
    int classes;       /* 0: 1000 for ImageNet ResNets, 10 for CIFAR */
    /* Data parallel (pp_comm_create): every training step averages the gradients over the
     * communicator's ranks before the update, so that all ranks hold the same parameters.
     * NULL: one process. */
    struct pp_comm *comm;
    /* With comm: synchronised BN, batch statistics (and their backward sums) over the
     * global batch, as one process would compute them over it (up to the order of the
     * reductions). Without: each rank normalises with its own batch, as PyTorch's DDP. */
    int sync_bn;
    int world_size; /* pp_plan_memory only, which takes no comm: plan for this many ranks (0: 1) */
} pp_model_options;

PP_API void pp_model_options_init(pp_model_options *options);

#define PP_MAX_STAGES 16

/* Bytes of everything a training step keeps on the device. */
typedef struct pp_memory_report {
    int batch, height, width, classes; /* as planned (defaults resolved) */
    size_t weights, gradients, optimizer, bn_statistics;
    size_t saved; /* kept from the forward for the backward pass (at its peak) */
    int stage_count;
    char stage_names[PP_MAX_STAGES][16];
    size_t saved_by_stage[PP_MAX_STAGES];
    size_t largest_transient; /* the largest working set of the other buffers at one step */
    size_t arena;             /* activations, saved tensors, their gradients, workspaces, placed */
    /* Data parallel: the device buffer synchronised BN gathers the ranks' partial statistics
     * into (world size x the largest partials); the gradients are reduced in place. */
    size_t communication;
    size_t peak; /* weights + gradients + optimizer + bn_statistics + arena + communication */
    /* The policy a user compares this one against: "baseline" (what a framework saves), with
     * the same activation storage ("baseline,act=bf16", the AMP-like baseline, when the policy
     * stores activations in bf16). weights include the bf16 copy of the weights under
     * act=bf16. */
    char baseline_policy[32];
} pp_memory_report;

/* Plans the memory of a training step without compiling or allocating anything (any
 * context, including PP_BACKEND_NONE). Errors name the model or policy problem. */
PP_API pp_status pp_plan_memory(pp_context *ctx, const pp_model_options *options, pp_memory_report *out);

/* ---- Choosing a policy for a memory budget ----
 * Per-layer pooling factors that fit a planned peak into a budget at the least total
 * weight-gradient error, measured on probe batches. The forward pass and every input
 * gradient are exact whatever the pooling, so a layer's weight gradient under a policy
 * differs from f=1's only through its own pooled input: one step of a uniform policy
 * measures every layer's error at that factor at once. */
#define PP_CHOICE_MAX_FACTORS 4

typedef struct pp_choice_options {
    pp_model_options model; /* the run to fit: model, batch, image, classes (its policy is ignored) */
    size_t budget;          /* bytes the planned peak may reach */
    int factors[PP_CHOICE_MAX_FACTORS], factor_count; /* candidates among 1, 2, 4, 8 (1 is always one) */
    int modes;         /* bit 0: avg, bit 1: max (the mode is one for the whole policy) */
    int allow_bn_bf16; /* also consider bn=bf16 (BN inputs saved in bf16) */
    /* The probes: probe_count batches of probe_batch images of probe_height x probe_width
     * (NCHW float32) and their labels; 0 sizes: the model's. Errors are measured there and
     * memory at the model's shape. */
    int probe_count, probe_batch, probe_height, probe_width;
    const float *const *probe_x;
    const int32_t *const *probe_labels;
    uint64_t seed; /* the parameters the probes run with (pp_model_init_params) */
    /* The measurements of an earlier choice for the same model, factors, modes and bn
     * option, taken instead of probing again (a curve over several budgets); NULL: probe. */
    const struct pp_choice *measured;
} pp_choice_options;

typedef struct pp_choice_layer {
    char name[64];
    int factor;                              /* chosen */
    size_t bytes_saved;                      /* planned saving against f=1, as the chooser counts it */
    double error[PP_CHOICE_MAX_FACTORS][2];  /* relative L2 error of dW per candidate factor and mode */
    double cosine[PP_CHOICE_MAX_FACTORS][2]; /* cosine of dW against f=1's */
    double spread[PP_CHOICE_MAX_FACTORS][2]; /* standard deviation of the error over the probes */
} pp_choice_layer;

typedef struct pp_choice {
    int layer_count;
    pp_choice_layer *layers;
    int mode;        /* 0 avg, 1 max */
    int bn_bf16;     /* chosen */
    double bn_error; /* the total error bn=bf16 adds (when allowed) */
    size_t peak;     /* the chosen policy's planned peak (<= budget) */
    double total_error;
    char *policy;      /* the policy as text ("default=1,mode=avg,layer1.0.conv1=4,...") */
    char *policy_file; /* the same as a .lua policy file, a comment per layer */
    /* The uniform policies at the same budget: factor, peak, total error, whether it fits. */
    int uniform_count;
    struct pp_choice_uniform {
        int factor;
        size_t peak;
        double total_error;
        int fits;
    } uniform[PP_CHOICE_MAX_FACTORS];
    double seconds; /* probing and choosing */
} pp_choice;

PP_API void pp_choice_options_init(pp_choice_options *options);
/* Fails with PP_ERR_OUT_OF_MEMORY, saying by how much and the largest batch that fits,
 * where even the most aggressive allowed policy exceeds the budget; with
 * PP_ERR_INVALID_ARGUMENT for a budget below the weights' own size, unknown factors or
 * modes, and a probe whose loss is not finite. Release with pp_choice_free. */
PP_API pp_status pp_policy_choose(pp_context *ctx, const pp_choice_options *options, pp_choice *out);
PP_API void pp_choice_free(pp_choice *choice);

/* ---- Data-parallel training across processes ----
 * A communicator joins the ranks of one job. On the host backend MPI carries the
 * reductions (MPI_COMM_WORLD; the library initialises MPI where the application has not,
 * and finalises it then); on cuda NCCL does (libnccl.so.2, loaded with dlopen), its unique
 * id handed from rank 0 to the others over MPI or, without MPI, through a rendezvous file.
 * A collective that fails (a rank died, a timeout) is an error on the ranks that see it. */
typedef struct pp_comm pp_comm;

typedef struct pp_comm_options {
    /* -1 (pp_comm_options_init): from MPI. Otherwise this process's rank and the job's size,
     * as a launcher that is not mpirun gives them (then rendezvous is needed on cuda). */
    int rank, world_size;
    /* "file:PATH": a path all ranks see, for NCCL without MPI. NULL: MPI. */
    const char *rendezvous;
    double timeout_seconds; /* bound on the rendezvous wait; 0: 300 */
} pp_comm_options;

PP_API void pp_comm_options_init(pp_comm_options *options);
/* Fails with PP_ERR_INVALID_ARGUMENT where the build has no MPI and none of rank/world
 * size/rendezvous replaces it, PP_ERR_NO_DEVICE where a cuda context has no NCCL. */
PP_API pp_status pp_comm_create(pp_context *ctx, const pp_comm_options *options, pp_comm **out);
PP_API pp_status pp_comm_rank(const pp_comm *comm, int *rank, int *world_size);
/* values[i] = their sum over the ranks (each rank's in rank order: the same bits on all). */
PP_API pp_status pp_comm_allreduce_sum(pp_comm *comm, double *values, int count);
/* values[i] = their largest over the ranks (a stop request any rank saw, say). */
PP_API pp_status pp_comm_allreduce_max(pp_comm *comm, int *values, int count);
PP_API void pp_comm_destroy(pp_comm *comm);

/* ---- Element-wise and pooling ops on the caller's memory and stream ----
 * The ops of a training step besides the convolutions, in the lean forms poolprop saves,
 * for a framework that owns the memory (poolprop.torch); the same calling rules as
 * pp_layer_forward: caller's pointers (host pointers on the host backend), launches
 * asynchronous on `stream` on cuda, complete on return on the host, no allocation, no
 * synchronisation. Activations are float32, channels last: x (N,H,W,C).
 *   ReLU:       y = max(x, 0) (NaN stays NaN); mask: ceil(N*H*W*C / 32) uint32 words, bit
 *               i%32 of word i/32 = (y_i > 0) over the flat index i; dx = dy where the
 *               bit is set, else 0. Element-wise, so any layout works if both calls agree.
 *               y may be x and dx may be dy (in place).
 *   Max pool:   window `window` x `window`, stride, padding, floor mode (PyTorch's
 *               MaxPool2d without ceil_mode); y (N,P,Q,C); argmax (N,P,Q,C) uint8, the
 *               window position r*window + t of the maximum (the first in r-major order;
 *               a NaN wins); dx (N,H,W,C) gets each dy at its argmax (sums where windows
 *               overlap).
 *   Batch norm (training): mean and biased variance per channel over N*H*W; y = gamma *
 *               (x - mean) * invstd + beta, invstd = 1/sqrt(var + eps); running_mean and
 *               running_var (unbiased variance) move by momentum as PyTorch's do; mean and
 *               invstd (C floats) are written for the backward call. With save_bf16,
 *               x_bf16 receives x rounded to bf16 (N*H*W*C uint16, nearest even), which the
 *               backward call reads in place of x; without, the backward call reads x.
 *               Backward: dx, dgamma and dbeta (overwritten) from dy and the saved input.
 */
typedef enum pp_op_kind {
    PP_OP_RELU = 0,
    PP_OP_MAXPOOL = 1,
    PP_OP_BATCHNORM = 2
} pp_op_kind;

typedef struct pp_op_desc {
    pp_op_kind kind;
    int n, c, h, w;              /* the input's shape, stored (N,H,W,C) */
    int window, stride, padding; /* max pool */
    double eps, momentum;        /* batch norm: PyTorch's (1e-5, 0.1 by pp_op_desc_init) */
    int save_bf16;               /* batch norm: save its input as bf16 (policy bn=bf16) */
} pp_op_desc;

typedef struct pp_op pp_op;

PP_API void pp_op_desc_init(pp_op_desc *desc, pp_op_kind kind);
/* Generates, compiles and loads the op's kernels (cached as a layer's are). */
PP_API pp_status pp_op_create(pp_context *ctx, const pp_op_desc *desc, pp_op **out);
/* The output's height and width (max pool: P, Q; the others: H, W). */
PP_API pp_status pp_op_output_size(const pp_op *op, int *height, int *width);
/* Bytes of scratch the op's calls need (0 when none); one workspace serves every call. */
PP_API pp_status pp_op_workspace_size(const pp_op *op, size_t *bytes);
PP_API void pp_op_destroy(pp_op *op);

PP_API pp_status pp_relu_forward(pp_op *op, const void *x, void *y, uint32_t *mask, void *stream);
PP_API pp_status pp_relu_backward(pp_op *op, const void *dy, const uint32_t *mask, void *dx, void *stream);
PP_API pp_status pp_maxpool_forward(pp_op *op, const void *x, void *y, uint8_t *argmax, void *stream);
PP_API pp_status pp_maxpool_backward(pp_op *op, const void *dy, const uint8_t *argmax, void *dx, void *workspace,
                                     void *stream);
/* x_bf16: NULL unless the op saves bf16. */
PP_API pp_status pp_batchnorm_forward(pp_op *op, const void *x, const float *gamma, const float *beta,
                                      float *running_mean, float *running_var, void *y, float *mean, float *invstd,
                                      uint16_t *x_bf16, void *workspace, void *stream);
/* saved: x_bf16 when the op saves bf16, else x. */
PP_API pp_status pp_batchnorm_backward(pp_op *op, const void *dy, const void *saved, const float *gamma,
                                       const float *mean, const float *invstd, void *dx, float *dgamma, float *dbeta,
                                       void *workspace, void *stream);

/* ---- A policy applied to a framework's own model ---- */

/* A policy's options beside the pooling factors. */
typedef struct pp_policy_options {
    pp_pool_mode mode; /* mode=avg|max */
    int bn_bf16;       /* bn=bf16: BN inputs saved in bf16 */
    int act_bf16;      /* act=bf16: activations stored in bf16 */
    int relu_mask;     /* ReLUs save a 1-bit mask (every policy but baseline) */
    char math[8];      /* "fp32", "tf32" or "bf16" */
} pp_policy_options;

/* What a policy (text or a .lua file, as pp_model_options.policy) gives the convolutions
 * of a model poolprop did not describe: layer i, named names[i] ("layer1.0.conv1") in
 * stage stages[i] ("stem", "stage1".., "head", or "" for none), gets factors[i]: the
 * policy's entry for its name, else for its stage, else the default (1 under baseline).
 * A policy naming a layer or stage that none of them has is PP_ERR_PARSE, as for a
 * model. Works on any context, PP_BACKEND_NONE included. */
PP_API pp_status pp_policy_resolve(pp_context *ctx, const char *policy, int count, const char *const *names,
                                   const char *const *stages, int *factors, pp_policy_options *options);

typedef struct pp_model pp_model;

typedef struct pp_param_info {
    const char *key; /* torchvision state_dict key: "conv1.weight", "layer1.0.bn1.running_mean" */
    int rank;
    size_t shape[4];
    size_t count;
    int is_statistic; /* a BN running statistic rather than a trainable parameter */
} pp_param_info;

typedef struct pp_sgd_options {
    float lr, momentum, weight_decay;
} pp_sgd_options;

/* Generates, compiles and allocates everything a training step needs. The device memory
 * it allocates equals the planned peak (pp_model_memory_report). Parameters start zero:
 * initialise them with pp_model_init_params or pp_model_param_write. */
PP_API pp_status pp_model_create(pp_context *ctx, const pp_model_options *options, pp_model **out);
PP_API pp_status pp_model_memory_report(const pp_model *model, pp_memory_report *out);
/* The model's distinct kernels (names end in _v<variant>: the tuned or default variant).
 * pp_kernel_info's ptxas and compile fields are -1 / 0 here. */
PP_API pp_status pp_model_kernel_count(const pp_model *model, int *out);
PP_API pp_status pp_model_kernel_info_get(const pp_model *model, int index, pp_kernel_info *out);
/* Parameters and BN statistics, in state_dict order: index 0 .. count-1. */
PP_API pp_status pp_model_param_count(const pp_model *model, int *out);
PP_API pp_status pp_model_param_info(const pp_model *model, int index, pp_param_info *out);
PP_API pp_status pp_model_param_read(pp_model *model, const char *key, float *out, size_t count);
PP_API pp_status pp_model_param_write(pp_model *model, const char *key, const float *values, size_t count);
/* The gradient of a trainable parameter from the last training step. */
PP_API pp_status pp_model_grad_read(pp_model *model, const char *key, float *out, size_t count);
/* The SGD momentum buffer, one float per trainable parameter element, in state_dict order
 * (for checkpoints); count must be the model's trainable element count. */
PP_API pp_status pp_model_optimizer_size(const pp_model *model, size_t *count);
PP_API pp_status pp_model_optimizer_read(pp_model *model, float *out, size_t count);
PP_API pp_status pp_model_optimizer_write(pp_model *model, const float *values, size_t count);
/* torchvision's initialisation (Kaiming-normal fan-out convolutions, BN 1/0, PyTorch's
 * Linear default), deterministic from seed; also resets BN statistics and momentum. */
PP_API pp_status pp_model_init_params(pp_model *model, uint64_t seed);
/* x: (batch, 3, height, width) float32; labels: batch class indices in [0, classes). */
PP_API pp_status pp_model_set_batch(pp_model *model, const float *x, const int32_t *labels);
/* Forward (BN in training mode, running statistics updated), loss (batch mean of the
 * softmax cross-entropy), backward, and, unless sgd is NULL, the SGD update (PyTorch's:
 * momentum buffer, weight decay added to the gradient). */
PP_API pp_status pp_model_train_step(pp_model *model, const pp_sgd_options *sgd, float *loss);
/* How many images of the last training step's batch were predicted right (the first
 * largest logit is the label), before that step's update. */
PP_API pp_status pp_model_last_correct(const pp_model *model, int *out);
/* Data parallel: every rank takes rank 0's BN running statistics (the end of an epoch,
 * before validation or a checkpoint, as PyTorch's DDP broadcasts buffers). */
PP_API pp_status pp_model_sync_statistics(pp_model *model);
/* Inference with BN running statistics; logits: (batch, classes). Overwrites the batch
 * set by pp_model_set_batch (set it again before the next training step). */
PP_API pp_status pp_model_infer(pp_model *model, const float *x, float *logits);
PP_API void pp_model_destroy(pp_model *model);

/* What pp_model_bundle_write wrote. */
typedef struct pp_model_bundle_info {
    int kernels;       /* distinct kernels: one file out_dir/kernels/<name>.cu each */
    int launches;      /* kernel launches of one training step: the kernel lines of plan.lua */
    int tuned_entries; /* tuned kernels the device's tuning database offered (0: the policy's defaults) */
    int batch, height, width, classes; /* as generated (the model's defaults resolved) */
    char math[8];                      /* the policy's math mode: "fp32", "tf32" or "bf16" */
} pp_model_bundle_info;

/* Writes the kernels of one training step of the model and its plan, exactly as
 * pp_model_create on this context builds them (same sources, same variants: the tuning
 * database of the context's device where it has an entry and the context does not ignore
 * tuning, the policy's math-mode defaults otherwise; a PP_BACKEND_NONE context has no device
 * and so uses the defaults). Nothing is compiled or allocated on a device. Writes
 * out_dir/kernels/<kernel>.cu for every distinct kernel, then out_dir/plan.lua: the layers
 * with their kernels in launch order, each kernel on one line of the same form as
 * pp_bundle_write's ({ name, op, file, grid, block, args }), plus the model's figures, every
 * launch of the step in order (steps) and the step's buffers. Written and replacing out_dir
 * as pp_bundle_write's bundle is (a staging folder renamed when complete). info may be NULL. */
PP_API pp_status pp_model_bundle_write(pp_context *ctx, const pp_model_options *options, const char *out_dir,
                                       pp_model_bundle_info *info);

/* The convolutions of one training step of a model, as pp_model_create on this context
 * builds them (the variants as pp_model_bundle_write chooses them), without generating or
 * compiling kernels. */
typedef struct pp_model_conv {
    pp_layer_desc desc; /* shape, pooling, storage (bf16 with act=bf16) and variants; desc.name: the layer */
    int p, q;           /* output height and width */
} pp_model_conv;

typedef struct pp_model_conv_list {
    int batch, height, width, channels, classes; /* as planned (the model's defaults resolved) */
    char math[8];                                /* the policy's math mode: "fp32", "tf32" or "bf16" */
    int tuned_entries;                           /* tuned kernels the device's tuning database offered */
    int count;
    pp_model_conv *convs; /* count convolutions in the order the step first runs them */
} pp_model_conv_list;

/* Fills out (release with pp_model_conv_list_free, also after a failure). */
PP_API pp_status pp_model_conv_list_get(pp_context *ctx, const pp_model_options *options, pp_model_conv_list *out);
PP_API void pp_model_conv_list_free(pp_model_conv_list *list);

/* A model's parameters and BN statistics in host memory, initialised as torchvision does
 * (see pp_model_init_params), without compiling or allocating anything on a device. */
typedef struct pp_params pp_params;
PP_API pp_status pp_params_init(pp_context *ctx, const pp_model_options *options, uint64_t seed, pp_params **out);
PP_API pp_status pp_params_count(const pp_params *params, int *out);
/* The index-th entry in state_dict order; data stays valid until pp_params_destroy. */
PP_API pp_status pp_params_get(const pp_params *params, int index, pp_param_info *info, const float **data);
PP_API void pp_params_destroy(pp_params *params);

/* ---- Tuning: the fastest verified variant of every convolution kernel of a model ---- */

typedef struct pp_tune_options {
    pp_model_options model; /* model, policy (its math= option bounds the variants), batch, image */
    double budget_seconds;  /* 0: no limit; once spent, the variants left are recorded as skipped */
    int max_variants;       /* per kernel, counting the default; 0: every variant the policy allows */
    int warmup, repeats;    /* timing: warmup launches, then the median of repeats (0: 2 and 7) */
    uint32_t seed;          /* inputs of the verification runs (0: 1) */
} pp_tune_options;

/* Reported after every variant tried (variant >= 0) and when a kernel is done (-1). */
typedef struct pp_tune_event {
    int kernel, kernel_count;   /* 0-based index of the kernel being tuned, of how many */
    const char *key;            /* its tuning-database key: "conv_fwd_n64c64h56w56_k64r3s3_s1p1_f2avg:tf32" */
    const char *layer;          /* the first layer of the model with that shape */
    int variant;                /* the variant just tried, -1 when the kernel is done */
    int tried, candidates;      /* variants tried so far of this kernel, of how many allowed */
    const char *status;         /* "ok", "wrong", "compile_failed", "launch_failed", "skipped" */
    double ms;                  /* its median time, -1 when not timed */
    double error;               /* its largest error as a fraction of the tolerance, -1 when not checked */
    const char *note;           /* why it failed, "" otherwise */
    int best_variant;           /* so far; -1 if none */
    double best_ms, default_ms; /* default_ms: the variant a model uses without tuning */
} pp_tune_event;
typedef void (*pp_tune_progress_fn)(void *user, const pp_tune_event *event);

typedef struct pp_tune_report {
    int kernels;                             /* distinct kernels of the model */
    int tried, ok, wrong, unusable, skipped; /* variants, over all kernels */
    int improved;                            /* kernels whose best variant beats the default */
    double seconds;
    double default_ms, best_ms; /* sums over the kernels (each once) that were measured */
    char database[4096];        /* the file written */
} pp_tune_report;

PP_API void pp_tune_options_init(pp_tune_options *options);
/* For each distinct convolution kernel of the model (forward with pool-save, input
 * gradient, weight gradient with un-pool, per layer shape): compiles the variants the
 * policy's math mode allows, runs each on random inputs and checks it against the fp32
 * reference variant (0), times the ones that pass (warmup, then the median of repeats),
 * and records every result and the fastest in the device's tuning database, which is
 * written (atomically) after each kernel. A variant that does not compile or launch is
 * recorded as unusable, not fatal. progress may be NULL. */
PP_API pp_status pp_tune(pp_context *ctx, const pp_tune_options *options, pp_tune_progress_fn progress, void *user,
                         pp_tune_report *report);
/* The tuning database file of the context's device (it may not exist yet). */
PP_API pp_status pp_context_tuning_database(pp_context *ctx, char *path, size_t size);

/* Device bytes allocated through the context now and at most so far. */
PP_API pp_status pp_context_memory_stats(const pp_context *ctx, size_t *in_use, size_t *peak);

#ifdef __cplusplus
}
#endif
#endif /* POOLPROP_H */
