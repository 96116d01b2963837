/* cmd_init.c - `poolprop init`: freshly initialised parameters of a model, one .npy file per
 * state_dict key, written as one output set (outfile.h). */
#include "cmd_init.h"

#include "npy.h"
#include "options.h"
#include "outfile.h"
#include "poolprop.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>

int cmd_init(int argc, char **argv)
{
    cli_option opts[] = {{"classes", 0, 0, 0}, {"seed", 0, 0, 0}, {"out", 0, 0, 0}};
    int nopts = sizeof opts / sizeof opts[0];
    const char *model = NULL;
    if (cli_parse_options(argc, argv, opts, nopts, &model)) return 1;
    if (!model) return cli_fail("init: which model? e.g. poolprop init resnet18 --out params/");
    const char *out_dir = cli_opt(opts, nopts, "out");
    if (!out_dir) return cli_fail("missing --out DIR");
    pp_model_options mo;
    pp_model_options_init(&mo);
    mo.model = model;
    if (cli_opt(opts, nopts, "classes") &&
        cli_parse_int("classes", cli_opt(opts, nopts, "classes"), 1, 1 << 24, &mo.classes))
        return 1;
    int seed = 0;
    if (cli_opt(opts, nopts, "seed") && cli_parse_int("seed", cli_opt(opts, nopts, "seed"), 0, INT_MAX, &seed))
        return 1;
    pp_context_options co;
    pp_context_options_init(&co);
    co.backend = PP_BACKEND_NONE;
    co.disable_cache = 1;
    pp_context *ctx = cli_context(&co);
    if (!ctx) return 1;
    pp_params *ps = NULL;
    pp_status st = pp_params_init(ctx, &mo, (uint64_t)seed, &ps);
    outfile_set set = {0};
    int rc = st == PP_OK ? outfile_set_dir(&set, out_dir) : cli_fail_ctx(ctx, st);
    int n = 0;
    if (!rc) pp_params_count(ps, &n);
    for (int i = 0; i < n && !rc; i++) {
        pp_param_info info;
        const float *data;
        pp_params_get(ps, i, &info, &data);
        rc = npy_stage_param(&set, out_dir, &info, data);
    }
    rc = rc ? (outfile_set_discard(&set), rc) : outfile_set_commit(&set);
    if (!rc) printf("poolprop init: wrote %d arrays (parameters and BN statistics) of %s to %s/\n", n, model, out_dir);
    pp_params_destroy(ps);
    pp_context_destroy(ctx);
    return rc;
}
