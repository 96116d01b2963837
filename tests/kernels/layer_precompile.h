/* layer_precompile.h - pass 1 of the host-backend kernel tests (test_conv_kernels,
 * test_conv_variants), as in test_kernel_compile: every kernel of the layers a test is about
 * to run, compiled into the kernel cache on every CPU at once (compile_prefetch), so that
 * pp_layer_create, which compiles a layer's kernels one after the other, loads them from
 * there. Generating and compiling a kernel here is what pp_layer_create does (same context,
 * same source, same cache key); a kernel that fails here fails there again, with its error.
 * Header-only, like test_util.h. */
#ifndef PP_LAYER_PRECOMPILE_H
#define PP_LAYER_PRECOMPILE_H

#include "compile.h"
#include "context.h"
#include "gen_layer.h"
#include "test_util.h"

/* The kernels of descs[0..count), each distinct one once; with static_check, also the NVRTC
 * static check pp_layer_kernel_check makes (for the context's arch, sm_90 without one). */
static inline void layer_precompile(pp_context *ctx, const pp_layer_desc *descs, int count, int static_check)
{
    double t0 = test_now_s();
    int n = 0, cap = 0;
    gen_layer *layers = calloc((size_t)count + 1, sizeof *layers);
    CHECK(layers != NULL, "out of memory");
    for (int i = 0; i < count; i++)
        if (gen_layer_from_desc(ctx, &descs[i], &layers[i]) == PP_OK) cap += layers[i].kernel_count;
    pp_compile_request *reqs = calloc((size_t)cap + 1, sizeof *reqs);
    char(*names)[300] = calloc((size_t)cap + 1, sizeof *names);
    CHECK(reqs && names, "out of memory");
    for (int i = 0; i < count; i++)
        for (int k = 0; k < layers[i].kernel_count; k++) {
            const gen_kernel *g = &layers[i].kernels[k];
            int seen = 0;
            for (int j = 0; j < n && !seen; j++) seen = strcmp(reqs[j].source, g->source) == 0;
            if (seen) continue;
            snprintf(names[n], sizeof names[n], "%s.cu", g->name);
            reqs[n] = (pp_compile_request){g->source, names[n], NULL, 0};
            n++;
        }
    compile_prefetch(ctx, reqs, n, static_check ? (ctx->arch ? ctx->arch : 90) : 0);
    printf("pass 1: %d distinct kernels of %d layers compiled into the cache%s in %.1f s\n", n, count,
           static_check ? " (and checked with NVRTC)" : "", test_now_s() - t0);
    for (int i = 0; i < count; i++) gen_layer_free(&layers[i]);
    free(layers), free(reqs), free(names);
}

#endif
