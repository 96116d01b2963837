/* cmd_gen.c - `poolprop gen`: the bundle (kernels/<kernel>.cu and plan.lua) of a layer description
 * file or of a model's training step; written by the runtime into a staging folder that
 * replaces --out whole (runtime/src/bundle_dir.h). */
#include "cmd_gen.h"

#include "options.h"
#include "poolprop.h"

#include <stdio.h>
#include <string.h>

/* gen --model: the kernels and plan of one training step, as a model build on the chosen
 * backend would make them. */
static int gen_model(const cli_option *opts, int nopts, const char *out_dir)
{
    pp_model_options mo;
    pp_model_options_init(&mo);
    mo.model = cli_opt(opts, nopts, "model");
    mo.policy = cli_opt(opts, nopts, "policy") ? cli_opt(opts, nopts, "policy") : "1";
    mo.batch = 32;
    const char *v;
    if ((v = cli_opt(opts, nopts, "batch")) && cli_parse_int("batch", v, 1, 1 << 16, &mo.batch)) return 1;
    if (cli_parse_image(cli_opt(opts, nopts, "image"), &mo.height, &mo.width)) return 1;
    if ((v = cli_opt(opts, nopts, "classes")) && cli_parse_int("classes", v, 1, 1 << 24, &mo.classes)) return 1;
    pp_context_options co;
    pp_context_options_init(&co);
    co.log = cli_log_to_stderr;
    const char *backend = cli_opt(opts, nopts, "backend");
    if (!backend || strcmp(backend, "none") == 0)
        co.backend = PP_BACKEND_NONE;
    else if (strcmp(backend, "host") == 0)
        co.backend = PP_BACKEND_HOST;
    else if (strcmp(backend, "cuda") == 0)
        co.backend = PP_BACKEND_CUDA;
    else
        return cli_fail("--backend: expected none, host or cuda, got '%s'", backend);
    co.tuning_dir = cli_opt(opts, nopts, "tuning-dir");
    if (co.tuning_dir && co.backend == PP_BACKEND_NONE)
        return cli_fail("--tuning-dir: tuning databases belong to a device; give --backend host or cuda");
    /* Without a device there is no tuning database to read, and nothing is compiled. */
    co.disable_cache = co.backend == PP_BACKEND_NONE;
    pp_context *ctx = cli_context(&co);
    if (!ctx) return 1;
    pp_model_bundle_info info;
    pp_status st = pp_model_bundle_write(ctx, &mo, out_dir, &info);
    int rc = 0;
    if (st != PP_OK) {
        rc = cli_fail_ctx(ctx, st);
    } else {
        printf("poolprop gen: %s, batch %d, %dx%d, %d classes, policy %s (math %s)\n", mo.model, info.batch,
               info.height, info.width, info.classes, mo.policy, info.math);
        if (co.backend == PP_BACKEND_NONE)
            printf("variants: the math mode's defaults (no device, so no tuning database)\n");
        else if (info.tuned_entries == 0)
            printf("variants: the math mode's defaults (no tuning database entries for %s)\n",
                   pp_context_device_name(ctx));
        else
            printf("variants: tuned where the tuning database of %s has them (%d entries), else the defaults\n",
                   pp_context_device_name(ctx), info.tuned_entries);
        printf("wrote %d kernels (%d launches per training step) to %s/kernels/ and the plan to %s/plan.lua\n",
               info.kernels, info.launches, out_dir, out_dir);
    }
    pp_context_destroy(ctx);
    return rc;
}

int cmd_gen(int argc, char **argv)
{
    cli_option opts[] = {{"out", 0, 0, 0},   {"model", 0, 0, 0},   {"policy", 0, 0, 0},  {"batch", 0, 0, 0},
                         {"image", 0, 0, 0}, {"classes", 0, 0, 0}, {"backend", 0, 0, 0}, {"tuning-dir", 0, 0, 0}};
    int nopts = sizeof opts / sizeof opts[0];
    const char *path = NULL;
    if (cli_parse_options(argc, argv, opts, nopts, &path)) return 1;
    const char *out_dir = cli_opt(opts, nopts, "out");
    if (!out_dir) return cli_fail("missing --out DIR");
    if (cli_opt(opts, nopts, "model")) {
        if (path)
            return cli_fail("gen: give a layer description file (%s) or --model %s, not both", path,
                            cli_opt(opts, nopts, "model"));
        return gen_model(opts, nopts, out_dir);
    }
    for (int i = 0; i < nopts; i++)
        if (opts[i].seen && strcmp(opts[i].name, "out") != 0)
            return cli_fail("gen: --%s applies to --model only", opts[i].name);
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_NONE;
    o.disable_cache = 1;
    pp_context *ctx = NULL;
    pp_status st = pp_context_create(&o, &ctx);
    if (st == PP_OK) st = pp_bundle_write(ctx, path, out_dir);
    int rc = 0;
    if (st != PP_OK)
        rc = cli_fail_ctx(ctx, st);
    else
        printf("poolprop gen: wrote %s/plan.lua and %s/kernels/ from %s\n", out_dir, out_dir,
               path ? path : "the embedded default layer set");
    pp_context_destroy(ctx);
    return rc;
}
