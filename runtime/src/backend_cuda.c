/* backend_cuda.c - stub, to be written */
#include "context.h"
pp_status backend_cuda_init(pp_context *ctx) { return ctx_fail(ctx, PP_ERR_NO_DEVICE, "cuda backend: not written yet"); }
