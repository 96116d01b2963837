/* cmd_policy.c - `poolprop policy`: per-layer pooling factors for a memory budget at the
 * least weight-gradient error (pp_policy_choose), measured on probe batches of the chosen
 * data; prints the choice against the uniform policies and writes it as a .lua policy file
 * that plan, train, the C API and poolprop.torch.convert accept. */
#include "cmd_policy.h"

#include "data.h"
#include "options.h"
#include "outfile.h"
#include "poolprop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "1,2,4" into factors; non-zero after printing the problem. */
static int parse_factors(const char *text, pp_choice_options *o)
{
    o->factor_count = 0;
    const char *p = text;
    while (*p) {
        char *end;
        long f = strtol(p, &end, 10);
        if (end == p || (*end && *end != ',') || (f != 1 && f != 2 && f != 4 && f != 8))
            return cli_fail("--factors: expected factors among 1, 2, 4, 8 separated by commas, got '%s'", text);
        if (o->factor_count == PP_CHOICE_MAX_FACTORS) return cli_fail("--factors: at most 4 factors, got '%s'", text);
        for (int i = 0; i < o->factor_count; i++)
            if (o->factors[i] == f) return cli_fail("--factors: %ld given twice in '%s'", f, text);
        o->factors[o->factor_count++] = (int)f;
        p = *end ? end + 1 : end;
        if (*end && !*p) return cli_fail("--factors: a trailing comma in '%s'", text);
    }
    for (int i = 0; i < o->factor_count; i++)
        if (o->factors[i] == 1) return 0;
    return cli_fail("--factors: the candidates must include 1 (no pooling), got '%s'", text);
}

/* Whether a comma-separated list has an empty item (",,", or a comma at either end). */
static int has_empty_item(const char *text)
{
    size_t n = strlen(text);
    return n == 0 || text[0] == ',' || text[n - 1] == ',' || strstr(text, ",,") != NULL;
}

static int parse_modes(const char *text, int *modes)
{
    *modes = 0;
    if (has_empty_item(text)) return cli_fail("--modes: an empty item in '%s'", text);
    char buf[64];
    snprintf(buf, sizeof buf, "%s", text);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (strcmp(tok, "avg") == 0)
            *modes |= 1;
        else if (strcmp(tok, "max") == 0)
            *modes |= 2;
        else
            return cli_fail("--modes: expected avg, max or avg,max, got '%s'", text);
    }
    return *modes ? 0 : cli_fail("--modes: expected avg, max or avg,max, got '%s'", text);
}

int cmd_policy(int argc, char **argv)
{
    cli_option opts[] = {{"batch", 0, 0, 0},       {"image", 0, 0, 0},       {"classes", 0, 0, 0},
                         {"budget", 0, 0, 0},      {"data", 0, 0, 0},        {"probe-steps", 0, 0, 0},
                         {"probe-batch", 0, 0, 0}, {"probe-image", 0, 0, 0}, {"factors", 0, 0, 0},
                         {"modes", 0, 0, 0},       {"allow", 0, 0, 0},       {"out", 0, 0, 0},
                         {"backend", 0, 0, 0},     {"seed", 0, 0, 0}};
    int nopts = sizeof opts / sizeof opts[0];
    const char *model = NULL, *v;
    if (cli_parse_options(argc, argv, opts, nopts, &model)) return 1;
    if (!model) return cli_fail("policy: which model? e.g. poolprop policy resnet50 --batch 64 --budget 16GiB");
    pp_choice_options o;
    pp_choice_options_init(&o);
    o.model.model = model;
    o.model.batch = 32;
    if ((v = cli_opt(opts, nopts, "batch")) && cli_parse_int("batch", v, 1, 1 << 20, &o.model.batch)) return 1;
    if (cli_parse_image(cli_opt(opts, nopts, "image"), &o.model.height, &o.model.width)) return 1;
    if ((v = cli_opt(opts, nopts, "classes")) && cli_parse_int("classes", v, 1, 1 << 24, &o.model.classes)) return 1;
    if (!(v = cli_opt(opts, nopts, "budget"))) return cli_fail("policy: --budget BYTES is required (e.g. 16GiB)");
    /* Several budgets (a curve): probed once, chosen for each. */
    size_t budgets[16];
    int budget_count = 0;
    if (has_empty_item(v))
        return cli_fail("--budget: expected a byte count such as 16GiB, got an empty item in '%s'", v);
    char list[512];
    snprintf(list, sizeof list, "%s", v);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        double budget;
        if (budget_count == 16) return cli_fail("--budget: at most 16 budgets");
        if (cli_parse_bytes("budget", tok, &budget)) return 1;
        if (budget < 1 || budget > 1e18) return cli_fail("--budget: %s is not a usable number of bytes", tok);
        budgets[budget_count++] = (size_t)budget;
    }
    if (budget_count == 0) return cli_fail("--budget: expected a byte count such as 16GiB, got '%s'", v);
    if (budget_count > 1 && cli_opt(opts, nopts, "out"))
        return cli_fail("--out writes one policy: give one --budget with it");
    o.budget = budgets[0];
    int steps = 2;
    if ((v = cli_opt(opts, nopts, "probe-steps")) && cli_parse_int("probe-steps", v, 1, 1000, &steps)) return 1;
    o.probe_count = steps;
    if ((v = cli_opt(opts, nopts, "probe-batch")) && cli_parse_int("probe-batch", v, 1, 1 << 16, &o.probe_batch))
        return 1;
    if (cli_parse_image(cli_opt(opts, nopts, "probe-image"), &o.probe_height, &o.probe_width)) return 1;
    if ((v = cli_opt(opts, nopts, "factors")) && parse_factors(v, &o)) return 1;
    if ((v = cli_opt(opts, nopts, "modes")) && parse_modes(v, &o.modes)) return 1;
    if ((v = cli_opt(opts, nopts, "allow"))) {
        if (strcmp(v, "bn=bf16") != 0)
            return cli_fail("--allow: only bn=bf16 is offered (act=bf16 changes every product's precision, which "
                            "this choice does not measure), got '%s'",
                            v);
        o.allow_bn_bf16 = 1;
    }
    int seed = 1;
    if ((v = cli_opt(opts, nopts, "seed")) && cli_parse_int("seed", v, 0, 2147483647, &seed)) return 1;
    o.seed = (uint64_t)seed;
    pp_backend backend;
    if (cli_parse_backend(cli_opt(opts, nopts, "backend"), &backend)) return 1;

    pp_context_options co;
    pp_context_options_init(&co);
    co.backend = backend;
    co.log = cli_log_to_stderr;
    pp_context *ctx = cli_context(&co);
    if (!ctx) return 1;
    /* The probes' shape: the model's unless smaller ones are given. */
    pp_memory_report shape;
    pp_model_options so = o.model;
    if (pp_plan_memory(ctx, &so, &shape) != PP_OK) {
        int rc = cli_fail("%s", pp_last_error(ctx));
        pp_context_destroy(ctx);
        return rc;
    }
    int pb = o.probe_batch ? o.probe_batch : shape.batch;
    int ph = o.probe_height ? o.probe_height : shape.height, pw = o.probe_width ? o.probe_width : shape.width;
    o.probe_batch = pb, o.probe_height = ph, o.probe_width = pw;
    data_options dopt;
    data_options_init(&dopt);
    dopt.height = ph, dopt.width = pw, dopt.seed = o.seed;
    dataset *ds = NULL;
    char err[1024];
    const char *spec = cli_opt(opts, nopts, "data") ? cli_opt(opts, nopts, "data") : "synthetic";
    float **xs = calloc((size_t)steps, sizeof *xs);
    int32_t **labels = calloc((size_t)steps, sizeof *labels);
    int rc = 0;
    if (!xs || !labels) rc = cli_fail("out of memory");
    if (!rc && data_open(spec, &dopt, &ds, err, sizeof err)) rc = cli_fail("--data: %s", err);
    if (!rc && data_batches(ds, DATA_TRAIN, pb) < steps)
        rc = cli_fail("--data %s holds fewer than %d batches of %d for the probes", spec, steps, pb);
    for (int b = 0; b < steps && !rc; b++) {
        xs[b] = malloc((size_t)pb * 3 * (size_t)ph * (size_t)pw * sizeof **xs);
        labels[b] = malloc((size_t)pb * sizeof **labels);
        if (!xs[b] || !labels[b]) rc = cli_fail("out of memory for the probe batches");
        if (!rc && data_batch(ds, DATA_TRAIN, 0, b, pb, xs[b], labels[b], err, sizeof err) < 0)
            rc = cli_fail("%s", err);
    }
    o.probe_x = (const float *const *)xs, o.probe_labels = (const int32_t *const *)labels;
    pp_choice c, first;
    memset(&c, 0, sizeof c);
    memset(&first, 0, sizeof first);
    if (!rc) {
        printf("poolprop policy: %s, batch %d, %dx%d, budget %zu bytes; probing %d batch%s of %d at %dx%d on %s\n",
               model, shape.batch, shape.height, shape.width, o.budget, steps, steps == 1 ? "" : "es", pb, ph, pw,
               pp_context_device_name(ctx));
        fflush(stdout);
        if (pp_policy_choose(ctx, &o, &c) != PP_OK) rc = cli_fail("%s", pp_last_error(ctx));
    }
    if (!rc && budget_count > 1) {
        /* The curve: each budget's choice against the uniform policies, from one probe. */
        printf("%14s %14s %12s", "budget", "auto peak", "auto error");
        for (int i = 0; i < c.uniform_count; i++) printf("   f=%d peak      error", c.uniform[i].factor);
        printf("\n");
        first = c;
        memset(&c, 0, sizeof c);
        o.measured = &first;
        for (int b = 0; b < budget_count && !rc; b++) {
            o.budget = budgets[b];
            pp_choice one;
            pp_status st = pp_policy_choose(ctx, &o, &one);
            if (st == PP_ERR_OUT_OF_MEMORY) {
                printf("%14zu  (no allowed policy fits)\n", budgets[b]);
                continue;
            }
            if (st != PP_OK) {
                rc = cli_fail("%s", pp_last_error(ctx));
                break;
            }
            printf("%14zu %14zu %12.6f", budgets[b], one.peak, one.total_error);
            for (int i = 0; i < one.uniform_count; i++)
                printf(" %12zu%s %9.6f", one.uniform[i].peak, one.uniform[i].fits ? " " : "*",
                       one.uniform[i].total_error);
            printf("\n");
            pp_choice_free(&one);
        }
        printf("(* over the budget)\n");
        pp_choice_free(&first);
        pp_context_destroy(ctx);
        for (int b = 0; b < steps && xs && labels; b++) free(xs[b]), free(labels[b]);
        free(xs), free(labels);
        data_close(ds);
        return rc;
    }
    if (!rc) {
        printf("  %-28s %6s %10s %10s %14s\n", "layer", "factor", "error", "spread", "bytes saved");
        for (int l = 0; l < c.layer_count; l++) {
            const pp_choice_layer *cl = &c.layers[l];
            int i = 0;
            while (o.factors[i] != cl->factor) i++;
            printf("  %-28s %6d %10.6f %10.6f %14zu\n", cl->name, cl->factor, cl->error[i][c.mode],
                   cl->spread[i][c.mode], cl->bytes_saved);
        }
        printf("chosen: mode %s%s, planned peak %zu bytes (budget %zu), total error %.6f, %.1f s\n",
               c.mode ? "max" : "avg", c.bn_bf16 ? ", bn=bf16" : "", c.peak, o.budget, c.total_error, c.seconds);
        for (int i = 0; i < c.uniform_count; i++)
            printf("uniform f=%d: planned peak %zu bytes (%s), total error %.6f\n", c.uniform[i].factor,
                   c.uniform[i].peak, c.uniform[i].fits ? "fits" : "over the budget", c.uniform[i].total_error);
        printf("policy: %s\n", c.policy);
        const char *out = cli_opt(opts, nopts, "out");
        if (out) {
            if (outfile_write(out, c.policy_file, strlen(c.policy_file)))
                rc = 1;
            else
                printf("wrote %s\n", out);
        }
    }
    pp_choice_free(&c);
    for (int b = 0; b < steps && xs && labels; b++) free(xs[b]), free(labels[b]);
    free(xs), free(labels);
    data_close(ds);
    pp_context_destroy(ctx);
    return rc;
}
