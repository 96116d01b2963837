/* compile.h - compiling many kernels at once (compile.c). */
#ifndef PP_COMPILE_H
#define PP_COMPILE_H

#include "backend.h"

/* Fills the on-disk cache with the compiled form of n requests on several threads (at most
 * one per CPU), so that the compiles that follow load from the cache: DESIGN.md section
 * 8, compile independent kernels in parallel. static_check_arch > 0 also runs the NVRTC
 * static check for that arch (what pp_layer_create does). Failures are not
 * reported here: the sequential compile that follows meets them again and reports them.
 * Nothing happens without a cache. */
void compile_prefetch(pp_context *ctx, const pp_compile_request *reqs, int n, int static_check_arch);

#endif
