/* gen_layer.h - one layer's kernels and buffers from the generator (api.lua layer, op_kernel,
 * variant spaces), layer description files (load_layers, write_bundle), and the one place
 * a pp_layer_desc crosses between C and Lua. */
#ifndef PP_GEN_LAYER_H
#define PP_GEN_LAYER_H

#include "context.h"

/* As lua.h has it: files that use this header need not see Lua's headers. */
typedef struct lua_State lua_State;

#define GEN_MAX_ARGS 12

typedef struct gen_kernel {
    char *name, *op, *source;
    int variant;
    char math[8]; /* "fp32", "tf32" or "bf16": the precision of the kernel's products */
    unsigned grid[3], block[3];
    int dynamic_shared; /* bytes of dynamic shared memory the launch gives it (0: static only) */
    int arg_count;
    char args[GEN_MAX_ARGS][64]; /* parameter names in order, "null" for an unused pointer */
} gen_kernel;

typedef struct gen_buffer {
    char name[32];
    size_t elems;   /* elements */
    int elem_bytes; /* 4 (float32) or 2 (bf16 bits, a layer's bf16 storage) */
} gen_buffer;

typedef struct gen_layer {
    char signature[256];
    int p, q, hp, wp;
    gen_kernel *kernels; /* in launch order */
    int kernel_count;
    gen_buffer *buffers;
    int buffer_count;
} gen_layer;

pp_status gen_layer_from_desc(pp_context *ctx, const pp_layer_desc *desc, gen_layer *out);
void gen_layer_free(gen_layer *layer);
/* One kernel from generator/poolprop/ops.lua; params_lua is a Lua table constructor
 * such as "{ N = 2, C = 3, HW = 16 }". Release with gen_layer_kernel_free. */
pp_status gen_layer_op_kernel(pp_context *ctx, const char *op, const char *params_lua, gen_kernel *out);
void gen_layer_kernel_free(gen_kernel *k);
/* The row slices the training plan gives a BN over m = N*HW rows of c channels (ops.lua
 * bn_slices): 1 for the one-pass bn_stats / bn_backward, else the sliced pairs' SLICES. */
pp_status gen_layer_bn_slices(pp_context *ctx, int m, int c, int *out);
pp_status gen_layer_variant_count(pp_context *ctx, const char *op, int *out);
pp_status gen_layer_variant_info(pp_context *ctx, const char *op, int index, pp_variant_info *out);
/* path NULL: the embedded default layer set. Names are malloc'ed (pp_layer_descs_free). */
pp_status gen_layer_load_descs(pp_context *ctx, const char *path, pp_layer_desc **descs, int *count);
/* out_dir NULL: generate everything, write nothing (a dry run). */
pp_status gen_layer_write_bundle(pp_context *ctx, const char *path, const char *out_dir, int *files_written);

/* The kernel table at stack index t into k (its strings malloc'ed); 0 on out of memory. */
int gen_layer_read_kernel(lua_State *L, int t, gen_kernel *k);
/* The description fields of the layer table at stack index t (describe.lua's, as the
 * generator's results carry them: N..pad, pool, pool_mode, storage, variant), on top of
 * pp_layer_desc_init's defaults; absent numbers read 0. The name is left NULL. */
void gen_layer_read_desc(lua_State *L, int t, pp_layer_desc *d);

#endif
