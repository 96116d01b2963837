/* backend_host.c - stub, to be written */
#include "context.h"
pp_status backend_host_init(pp_context *ctx) { return ctx_fail(ctx, PP_ERR_INTERNAL, "host backend: not written yet"); }
