/* gen_plan.h - a model's results from the generator (gen_plan.c): its training plan, the
 * training bundle `poolprop gen --model` writes, and the tuner's targets. The structures
 * are plan.h's. */
#ifndef PP_GEN_PLAN_H
#define PP_GEN_PLAN_H

#include "plan.h"

/* The plan of req, its buffers placed (planner_place). Release with gen_plan_free. */
pp_status gen_plan_train(pp_context *ctx, const gen_plan_request *req, gen_plan *out);
void gen_plan_free(gen_plan *plan);

/* The bundle for req, which must ask for sources; its tuned variants apply as in
 * gen_plan_train. Release with gen_plan_bundle_free. */
pp_status gen_plan_bundle(pp_context *ctx, const gen_plan_request *req, gen_bundle *out);
void gen_plan_bundle_free(gen_bundle *bundle);

pp_status gen_plan_tuning_targets(pp_context *ctx, const gen_plan_request *req, gen_tuning *out);
void gen_plan_tuning_free(gen_tuning *t);
/* The generator and variant-space version tuning databases are keyed by. */
/* api.lua policy_for_layers: pp_policy_resolve's work (arguments checked there). */
pp_status gen_plan_policy_for_layers(pp_context *ctx, const char *policy, int count, const char *const *names,
                                     const char *const *stages, int *factors, pp_policy_options *options);
pp_status gen_plan_tuning_version(pp_context *ctx, char *out, size_t size);

#endif
