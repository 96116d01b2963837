/* fuzz_model.c - libFuzzer target: model files (Lua: `return resnet {...}` or
 * `return cifar_resnet {...}`), through the public API: the input is written to model.lua
 * and planned with pp_plan_memory (policy 2, batch 1, 16x16 images, 10 classes) on a
 * generation-only context. A plan either fails with a message or gives figures that add
 * up. Hostile Lua (endless loops, memory growth) is bounded by the generator's instruction
 * budget and memory cap; libFuzzer's -timeout and -rss_limit_mb catch what escapes them. */
#include "fuzz_util.h"

#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384) return 0;
    pp_context *ctx = fuzz_util_context();
    char path[4200];
    snprintf(path, sizeof path, "%s", fuzz_util_write("model.lua", data, size));
    pp_model_options mo;
    pp_model_options_init(&mo);
    mo.model = path;
    mo.policy = "2";
    mo.batch = 1, mo.height = mo.width = 16, mo.classes = 10;
    pp_memory_report r;
    if (pp_plan_memory(ctx, &mo, &r) != PP_OK) {
        FUZZ_ASSERT(pp_last_error(ctx)[0] != '\0');
        return 0;
    }
    FUZZ_ASSERT(r.batch == 1 && r.height == 16 && r.width == 16 && r.classes == 10);
    FUZZ_ASSERT(r.peak == r.weights + r.gradients + r.optimizer + r.bn_statistics + r.arena);
    FUZZ_ASSERT(r.weights > 0 && r.stage_count >= 0 && r.stage_count <= PP_MAX_STAGES);
    return 0;
}
