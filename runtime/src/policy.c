/* policy.c - pp_policy_resolve: a pooling policy applied to the named convolutions of a
 * model that a framework owns (poolprop.torch), through the generator's own policy parser,
 * so that policy text and .lua policy files mean there what they mean to the CLI. */
#include "context.h"
#include "gen_plan.h"

#include <string.h>

pp_status pp_policy_resolve(pp_context *ctx, const char *policy, int count, const char *const *names,
                            const char *const *stages, int *factors, pp_policy_options *options)
{
    if (!ctx) return PP_ERR_INVALID_ARGUMENT;
    ctx_clear_error(ctx);
    if (!policy || count < 0 || (count > 0 && (!names || !stages || !factors)) || !options)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "pp_policy_resolve: NULL argument or negative count");
    for (int i = 0; i < count; i++)
        if (!names[i] || !names[i][0])
            return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "pp_policy_resolve: layer %d has no name", i);
    memset(options, 0, sizeof *options);
    return gen_plan_policy_for_layers(ctx, policy, count, names, stages, factors, options);
}
