/* cmd_plan.c - `poolprop plan`: the planned memory of a training step for a policy and its
 * baseline, as a table or JSON; with --budget, the largest batch that fits. */
#include "cmd_plan.h"

#include "options.h"
#include "poolprop.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "123", "10GB" (10^9), "16GiB" (2^30), K/M/G/T with or without B/iB. */

static void print_row(const char *label, size_t a, size_t b, double unit)
{
    printf("  %-26s %12.1f %12.1f\n", label, a / unit, b / unit);
}

static void json_report(const char *name, const pp_memory_report *r, int last)
{
    printf("  \"%s\": {\"weights\": %zu, \"gradients\": %zu, \"optimizer\": %zu, \"bn_statistics\": %zu, "
           "\"saved\": %zu, \"saved_by_stage\": {",
           name, r->weights, r->gradients, r->optimizer, r->bn_statistics, r->saved);
    for (int i = 0; i < r->stage_count; i++) {
        printf("%s", i ? ", " : "");
        cli_json_string(stdout, r->stage_names[i]);
        printf(": %zu", r->saved_by_stage[i]);
    }
    printf("}, \"largest_transient\": %zu, \"arena\": %zu, \"communication\": %zu, \"peak\": %zu}%s\n",
           r->largest_transient, r->arena, r->communication, r->peak, last ? "" : ",");
}

/* Largest batch in [1, 65536] whose planned peak fits in budget; 0 if none. */
static int largest_batch(pp_context *ctx, pp_model_options o, double budget, int *failed)
{
    int lo = 0, hi = 65536;
    *failed = 0;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        o.batch = mid;
        pp_memory_report r;
        pp_status st = pp_plan_memory(ctx, &o, &r);
        if (st == PP_OK && (double)r.peak <= budget)
            lo = mid;
        else if (st == PP_OK || st == PP_ERR_SHAPE || st == PP_ERR_PARSE)
            hi = mid - 1; /* too big, or a batch that overflows 32-bit indexing */
        else {
            *failed = 1;
            return 0;
        }
    }
    return lo;
}

int cmd_plan(int argc, char **argv)
{
    cli_option opts[] = {{"batch", 0, 0, 0},  {"image", 0, 0, 0}, {"classes", 0, 0, 0}, {"policy", 0, 0, 0},
                         {"budget", 0, 0, 0}, {"json", 0, 1, 0},  {"world", 0, 0, 0},   {"sync-bn", 0, 1, 0}};
    int nopts = sizeof opts / sizeof opts[0];
    const char *model = NULL;
    if (cli_parse_options(argc, argv, opts, nopts, &model)) return 1;
    if (!model) return cli_fail("plan: which model? e.g. poolprop plan resnet50 --batch 64");
    pp_model_options mo;
    pp_model_options_init(&mo);
    mo.model = model;
    mo.policy = cli_opt(opts, nopts, "policy");
    if (cli_parse_int("batch", cli_opt(opts, nopts, "batch") ? cli_opt(opts, nopts, "batch") : "1", 0, 1 << 20,
                      &mo.batch))
        return 1;
    if (mo.batch < 1) return cli_fail("--batch: a batch must hold at least one image, got %d", mo.batch);
    if (cli_parse_image(cli_opt(opts, nopts, "image"), &mo.height, &mo.width)) return 1;
    if (cli_opt(opts, nopts, "classes") &&
        cli_parse_int("classes", cli_opt(opts, nopts, "classes"), 1, 1 << 24, &mo.classes))
        return 1;
    /* Data parallel: --batch is the global batch, each of --world ranks plans its share. */
    int world = 1;
    if (cli_opt(opts, nopts, "world") && cli_parse_int("world", cli_opt(opts, nopts, "world"), 1, 1 << 20, &world))
        return 1;
    if (mo.batch % world != 0)
        return cli_fail("--batch %d does not divide among %d ranks: give a global batch that is a multiple of %d",
                        mo.batch, world, world);
    mo.batch /= world;
    mo.world_size = world;
    mo.sync_bn = cli_opt(opts, nopts, "sync-bn") != NULL;
    double budget = 0;
    if (cli_opt(opts, nopts, "budget") && cli_parse_bytes("budget", cli_opt(opts, nopts, "budget"), &budget)) return 1;
    int json = cli_opt(opts, nopts, "json") != NULL;

    pp_context_options co;
    pp_context_options_init(&co);
    co.backend = PP_BACKEND_NONE;
    co.disable_cache = 1;
    pp_context *ctx = cli_context(&co);
    if (!ctx) return 1;
    pp_memory_report r, b;
    pp_model_options base = mo;
    pp_status st = pp_plan_memory(ctx, &mo, &r);
    base.policy = r.baseline_policy;
    if (st == PP_OK) st = pp_plan_memory(ctx, &base, &b);
    if (st != PP_OK) {
        int rc = cli_fail_ctx(ctx, st);
        pp_context_destroy(ctx);
        return rc;
    }
    double saving = 100.0 * (1.0 - (double)r.peak / (double)b.peak);
    int max_batch = 0, max_batch_base = 0, failed = 0;
    if (budget > 0) {
        max_batch = largest_batch(ctx, mo, budget, &failed);
        if (!failed) max_batch_base = largest_batch(ctx, base, budget, &failed);
        if (failed) {
            int rc = cli_fail_ctx(ctx, PP_ERR_GENERATOR);
            pp_context_destroy(ctx);
            return rc;
        }
    }
    const char *policy = mo.policy ? mo.policy : "1";
    if (json) {
        printf("{\n  \"model\": ");
        cli_json_string(stdout, model);
        printf(", \"batch\": %d, \"image\": [%d, %d], \"classes\": %d, \"policy\": ", r.batch, r.height, r.width,
               r.classes);
        cli_json_string(stdout, policy);
        printf(
            ",\n  \"peak_bytes\": %zu, \"baseline_peak_bytes\": %zu, \"saving_percent\": %.2f, \"baseline_policy\": ",
            r.peak, b.peak, saving);
        cli_json_string(stdout, r.baseline_policy);
        printf(",\n");
        if (budget > 0)
            printf("  \"budget_bytes\": %.0f, \"max_batch\": %d, \"baseline_max_batch\": %d,\n", budget,
                   max_batch * world, max_batch_base * world);
        json_report("policy_report", &r, 0);
        json_report("baseline_report", &b, 1);
        printf("}\n");
    } else {
        double unit = b.peak >= (16u << 20) ? 1048576.0 : 1024.0;
        printf("poolprop plan: %s, batch %d, %dx%d images, %d classes, policy %s (memory in %s)\n", model, r.batch,
               r.height, r.width, r.classes, policy, unit > 1024 ? "MiB" : "KiB");
        if (world > 1)
            printf("data parallel: %d ranks of batch %d%s; figures per rank (the gradients are reduced in place)\n",
                   world, r.batch, mo.sync_bn ? ", synchronised BN" : ", BN per rank");
        printf("  %-26s %12s %12s\n", "", "policy", "baseline");
        print_row("weights", r.weights, b.weights, unit);
        print_row("gradients", r.gradients, b.gradients, unit);
        print_row("optimizer (momentum)", r.optimizer, b.optimizer, unit);
        print_row("BN running statistics", r.bn_statistics, b.bn_statistics, unit);
        for (int i = 0; i < r.stage_count; i++) {
            char label[64];
            snprintf(label, sizeof label, "saved: %s", r.stage_names[i]);
            print_row(label, r.saved_by_stage[i], b.saved_by_stage[i], unit);
        }
        print_row("saved for backward, total", r.saved, b.saved, unit);
        print_row("largest transient", r.largest_transient, b.largest_transient, unit);
        print_row("activation arena", r.arena, b.arena, unit);
        if (world > 1) {
            char label[64];
            snprintf(label, sizeof label, "communication (%s)", mo.sync_bn ? "sync BN" : "none");
            print_row(label, r.communication, b.communication, unit);
        }
        print_row("peak", r.peak, b.peak, unit);
        printf("saving: %.1f%% of the baseline peak (%.1f %s less); baseline: policy %s\n", saving,
               (b.peak - (double)r.peak) / unit, unit > 1024 ? "MiB" : "KiB", r.baseline_policy);
        if (budget > 0)
            printf("largest %sbatch within %.0f bytes: %d with the policy, %d for the baseline\n",
                   world > 1 ? "global " : "", budget, max_batch * world, max_batch_base * world);
    }
    pp_context_destroy(ctx);
    return 0;
}
