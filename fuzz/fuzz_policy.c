/* fuzz_policy.c - libFuzzer target: pooling policies, through the public API. The input is
 * used twice on the smallest model (cifar_resnet8, batch 1, 8x8 images): as a policy text
 * (cut at its first NUL) and as the contents of a policy file (policy.lua), each planned
 * with pp_plan_memory on a generation-only context. A plan either fails with a message or
 * gives figures that add up. */
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void plan(const char *policy)
{
    pp_context *ctx = fuzz_util_context();
    pp_model_options mo;
    pp_model_options_init(&mo);
    mo.model = "cifar_resnet8";
    mo.policy = policy;
    mo.batch = 1, mo.height = mo.width = 8, mo.classes = 10;
    pp_memory_report r;
    if (pp_plan_memory(ctx, &mo, &r) != PP_OK) {
        FUZZ_ASSERT(pp_last_error(ctx)[0] != '\0');
        return;
    }
    FUZZ_ASSERT(r.batch == 1 && r.height == 8 && r.width == 8 && r.classes == 10);
    FUZZ_ASSERT(r.peak == r.weights + r.gradients + r.optimizer + r.bn_statistics + r.arena);
    FUZZ_ASSERT(r.stage_count >= 0 && r.stage_count <= PP_MAX_STAGES);
    FUZZ_ASSERT(memchr(r.baseline_policy, '\0', sizeof r.baseline_policy));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) return 0; /* policies are short; longer inputs only slow the search */
    char *text = fuzz_util_string(data, size);
    plan(text);
    free(text);
    char path[4200];
    snprintf(path, sizeof path, "%s", fuzz_util_write("policy.lua", data, size));
    plan(path);
    return 0;
}
