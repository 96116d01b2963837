/* poolprop.c - the poolprop command-line tool.
 *   poolprop verify [--layers FILE] ...   generate, compile (NVRTC + host) and check kernels
 *   poolprop layer --x X.npy --w W.npy --dy DY.npy ... --out DIR   run one layer on your data
 *   poolprop gen [FILE] --out DIR          write the generated kernels and plan (a bundle)
 *   poolprop gen --model M ... --out DIR   the same for every kernel of a model's training step
 * Every failure prints one clear message (file:line for descriptions) and exits non-zero. */
#include "layer_check.h"
#include "options.h"
#include "npy.h"
#include "poolprop.h"
#include "report.h"
#include "bench.h"
#include "tune.h"
#include "train.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char usage_text[] =
    "usage: poolprop <command> [options]\n"
    "\n"
    "commands:\n"
    "  verify [--layers FILE] [--arch sm_XY] [--schedule forward|reverse|shuffled]\n"
    "         [--threads N] [--no-cache]\n"
    "      Generate the kernels of every layer in FILE (default: the embedded layer set),\n"
    "      compile each with NVRTC (static check: registers, spills) and on the host\n"
    "      backend, run them and compare with the C reference. Prints a table.\n"
    "  layer --x X.npy --w W.npy --dy DY.npy --stride S --pad P --pool F\n"
    "        [--pool-mode avg|max] [--backend auto|host|cuda] --out DIR\n"
    "      Run one convolution: writes DIR/y.npy, xp.npy, dx.npy, dw.npy. Arrays are\n"
    "      float32 C-order: X (N,C,H,W), W (K,C,R,S), DY (N,K,P,Q).\n"
    "  gen [FILE] --out DIR\n"
    "      Write the generated kernels of every layer of a description file (default: the\n"
    "      embedded layer set) to DIR/kernels/*.cu and the plan to DIR/plan.lua.\n"
    "  gen --model M [--policy P] [--batch B] [--image HxW] [--classes N]\n"
    "      [--backend none|host|cuda] [--tuning-dir DIR] --out DIR\n"
    "      Write every kernel of one training step of model M, with the variants a model build\n"
    "      uses, and its plan (same kernel lines, plus the launches in order and the buffers).\n"
    "      Defaults: policy 1, batch 32 (as train), the model's image size and classes;\n"
    "      backend none: the policy's math-mode defaults (no device); host or cuda: that\n"
    "      device's tuning database where it has an entry, as a model build there does.\n"
    "  plan MODEL --batch B [--image HxW] [--classes N] [--policy P] [--budget BYTES] [--json]\n"
    "      Plan the memory of a training step for the policy and for the uncompressed\n"
    "      baseline; with --budget, the largest batch that fits.\n"
    "  init MODEL [--classes N] [--seed S] --out DIR\n"
    "      Write freshly initialised parameters (torchvision's initialisation), one .npy\n"
    "      per state_dict key (conv1.weight.npy, bn1.running_mean.npy, ...).\n"
    "  step MODEL --params DIR --x X.npy --labels L.npy [--policy P] [--backend auto|host|cuda] --out DIR\n"
    "      One training step without the update: writes loss.npy, grad/<key>.npy and the\n"
    "      updated BN statistics running/<key>.npy. Labels: int64 or int32 class indices.\n"
    "  demo [--model M] [--policy P] [--batch B] [--image HxW] [--steps S] [--backend auto|host|cuda]\n"
    "      Memory report and a few SGD steps of a CIFAR ResNet (default cifar_resnet20,\n"
    "      policy 2, batch 8, 16x16) on synthetic data.\n"
    "  report RUN.csv [RUN.csv ...] -o CHART.svg\n"
    "      Draw the loss and accuracy curves of several runs on one SVG chart.\n"
    "  train MODEL [--data synthetic|cifar10:DIR] [--policy P] [--epochs E] [--batch B] [--lr LR]\n"
    "        [--momentum M] [--weight-decay WD] [--schedule cosine|step] [--warmup EPOCHS]\n"
    "        [--backend auto|host|cuda] [--seed S] [--log RUN.csv] [--checkpoint DIR] [--resume DIR]\n"
    "        [--image HxW] [--steps N] [--train-size N] [--val-size N]\n"
    "      Train with SGD; progress on the terminal, one CSV row per epoch, checkpoints that\n"
    "      resume exactly; Ctrl-C stops after writing a checkpoint.\n"
    "  bench [MODEL] [--batch B] [--image HxW] [--policy P] [--backend auto|host|cuda] [--repeats N]\n"
    "        [--steps N] [--layers-only|--step-only] [--tuning-dir DIR] [--json OUT.json]\n"
    "      Time every distinct conv shape (forward+pool, input and weight gradients) and a\n"
    "      training step (images/s, peak memory). Default: resnet50, batch 64, policy 2.\n"
    "  tune MODEL [--policy P] [--batch B] [--image HxW] [--budget-seconds T] [--max-variants N]\n"
    "       [--warmup N] [--repeats N] [--backend auto|host|cuda] [--tuning-dir DIR] [--quiet]\n"
    "      For every distinct conv kernel of the model: compile the variants the policy's\n"
    "      math mode allows (math=fp32|tf32|bf16), check each against the fp32 reference,\n"
    "      time the ones that pass, and keep the fastest in the device's tuning database,\n"
    "      which later model builds on that device use.\n"
    "  version\n"
    "\n"
    "--backend: auto (the default) runs on the GPU where a usable one and its driver are found,\n"
    "           else on the host emulation, and says which on stderr; host and cuda insist.\n"
    "environment: POOLPROP_CACHE_DIR (kernel cache), POOLPROP_TUNING_DIR (tuning databases),\n"
    "             POOLPROP_HOST_CXX (host compiler)\n";

/* ---- verify ---- */

static int parse_arch(const char *text, int *out)
{
    *out = 0;
    if (!text) return 0;
    const char *digits = strncmp(text, "sm_", 3) == 0 ? text + 3 : text;
    return cli_parse_int("arch", digits, 50, 200, out);
}

static int cmd_verify(int argc, char **argv)
{
    cli_option opts[] = {{"layers", 0, 0, 0}, {"arch", 0, 0, 0}, {"schedule", 0, 0, 0},
                     {"threads", 0, 0, 0}, {"no-cache", 0, 1, 0}};
    int nopts = sizeof opts / sizeof opts[0];
    if (cli_parse_options(argc, argv, opts, nopts, NULL)) return 1;
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_HOST;
    o.log = cli_log_to_stderr;
    o.disable_cache = cli_opt(opts, nopts, "no-cache") != NULL;
    if (parse_arch(cli_opt(opts, nopts, "arch"), &o.arch)) return 1;
    if (!o.arch) o.arch = 90;
    if (cli_parse_schedule(cli_opt(opts, nopts, "schedule"), &o.host_schedule)) return 1;
    if (cli_opt(opts, nopts, "threads") && cli_parse_int("threads", cli_opt(opts, nopts, "threads"), 1, 1024, &o.host_threads))
        return 1;

    double t0 = cli_now_ms();
    pp_context *ctx = cli_context(&o);
    if (!ctx) return 1;
    const char *path = cli_opt(opts, nopts, "layers");
    pp_layer_desc *descs = NULL;
    int count = 0;
    pp_status st = pp_layer_file_load(ctx, path, &descs, &count);
    if (st != PP_OK) {
        int rc = cli_fail_ctx(ctx, st);
        pp_context_destroy(ctx);
        return rc;
    }
    printf("poolprop verify: %d layers from %s; NVRTC static check for sm_%d; run on %s\n", count,
           path ? path : "the embedded default set (models/layers_default.lua)", o.arch,
           pp_context_device_name(ctx));
    printf("%-16s %-16s %9s %5s %6s %6s %9s %9s %10s %10s  %s\n", "layer", "kernel", "grid", "block", "regs",
           "spill", "smem", "nvrtc ms", "host ms", "max error", "tolerance");
    int failures = 0, kernels = 0;
    double nvrtc_ms = 0, host_ms = 0;
    for (int i = 0; i < count; i++) {
        pp_layer *layer = NULL;
        st = pp_layer_create(ctx, &descs[i], &layer);
        if (st != PP_OK) {
            fprintf(stderr, "poolprop: layer %s: %s\n", descs[i].name ? descs[i].name : "?", pp_last_error(ctx));
            failures++;
            continue;
        }
        layer_check_result r;
        st = layer_check_run(ctx, layer, &descs[i], 1234u + (uint32_t)i, &r);
        if (st != PP_OK) {
            fprintf(stderr, "poolprop: layer %s: %s\n", descs[i].name ? descs[i].name : "?", pp_last_error(ctx));
            failures++;
            pp_layer_destroy(layer);
            continue;
        }
        int n;
        pp_layer_kernel_count(layer, &n);
        for (int k = 0; k < n; k++) {
            pp_kernel_info info;
            if (pp_layer_kernel_check(layer, k, &info) != PP_OK) {
                fprintf(stderr, "poolprop: layer %s: %s\n", descs[i].name ? descs[i].name : "?", pp_last_error(ctx));
                failures++;
                continue;
            }
            double err = 0, tol = 0;
            if (strcmp(info.op, "conv_fwd") == 0) {
                err = r.err_y > r.err_xp ? r.err_y : r.err_xp;
                tol = r.tol_y;
            } else if (strcmp(info.op, "conv_bwd_data") == 0) {
                err = r.err_dx;
                tol = r.tol_dx;
            } else {
                err = r.err_dw;
                tol = r.tol_dw;
            }
            char grid[32];
            snprintf(grid, sizeof grid, "%ux%ux%u", info.grid[0], info.grid[1], info.grid[2]);
            int spills = info.spill_store_bytes + info.spill_load_bytes;
            printf("%-16.16s %-16s %9s %5u %6d %6d %9d %9.1f %10.1f %10.2e  %.2e%s\n",
                   descs[i].name ? descs[i].name : "-", info.op, grid, info.block[0], info.registers,
                   spills, info.shared_bytes, info.nvrtc_ms, info.compile_ms, err, tol,
                   spills != 0 ? "  SPILLS" : "");
            if (spills != 0) failures++;
            nvrtc_ms += info.nvrtc_ms;
            host_ms += info.compile_ms;
            kernels++;
        }
        if (!r.passed) {
            printf("  FAILED: y %.2e (tol %.2e), xp %.2e (tol %.2e), dx %.2e (tol %.2e), dw %.2e (tol %.2e)\n",
                   r.err_y, r.tol_y, r.err_xp, r.tol_xp, r.err_dx, r.tol_dx, r.err_dw, r.tol_dw);
            failures++;
        }
        pp_layer_destroy(layer);
    }
    pp_cache_stats cs;
    pp_context_cache_stats(ctx, &cs);
    printf("%d kernels in %.0f ms (NVRTC %.0f ms, host compiler %.0f ms; cache: %d hits, %d misses, %d corrupt)\n",
           kernels, cli_now_ms() - t0, nvrtc_ms, host_ms, cs.hits, cs.misses, cs.corrupt);
    printf("%s\n", failures ? "verify: FAILED" : "verify: all kernels match the reference, no spills");
    pp_layer_descs_free(descs, count);
    pp_context_destroy(ctx);
    return failures ? 1 : 0;
}

/* ---- layer ---- */

static int read_npy(pp_context *ctx, const char *role, const char *path, pp_npy_array *out)
{
    if (!path) return cli_fail("missing --%s", role);
    pp_status st = npy_read_f32(ctx, path, 4, out);
    if (st != PP_OK) return cli_fail("--%s: %s", role, pp_last_error(ctx));
    return 0;
}

static int cmd_layer(int argc, char **argv)
{
    cli_option opts[] = {{"x", 0, 0, 0},      {"w", 0, 0, 0},         {"dy", 0, 0, 0},
                     {"stride", 0, 0, 0}, {"pad", 0, 0, 0},       {"pool", 0, 0, 0},
                     {"pool-mode", 0, 0, 0}, {"backend", 0, 0, 0}, {"out", 0, 0, 0},
                     {"schedule", 0, 0, 0}};
    int nopts = sizeof opts / sizeof opts[0];
    if (cli_parse_options(argc, argv, opts, nopts, NULL)) return 1;
    pp_layer_desc d;
    pp_layer_desc_init(&d);
    if (cli_parse_int("stride", cli_opt(opts, nopts, "stride"), 1, 1 << 20, &d.stride)) return 1;
    if (cli_parse_int("pad", cli_opt(opts, nopts, "pad"), 0, 1 << 20, &d.pad)) return 1;
    if (cli_parse_int("pool", cli_opt(opts, nopts, "pool"), 1, 8, &d.pool)) return 1;
    const char *mode = cli_opt(opts, nopts, "pool-mode");
    if (!mode || strcmp(mode, "avg") == 0) d.pool_mode = PP_POOL_AVG;
    else if (strcmp(mode, "max") == 0) d.pool_mode = PP_POOL_MAX;
    else return cli_fail("--pool-mode: expected avg or max, got '%s'", mode);
    const char *out_dir = cli_opt(opts, nopts, "out");
    if (!out_dir) return cli_fail("missing --out DIR");

    pp_context_options o;
    if (cli_run_options(opts, nopts, &o)) return 1;

    pp_context *ctx = cli_context(&o);
    if (!ctx) return 1;
    pp_status st = PP_OK;
    pp_npy_array x = {0}, w = {0}, dy = {0};
    int rc = read_npy(ctx, "x", cli_opt(opts, nopts, "x"), &x) || read_npy(ctx, "w", cli_opt(opts, nopts, "w"), &w) ||
             read_npy(ctx, "dy", cli_opt(opts, nopts, "dy"), &dy);
    if (!rc) {
        if (x.shape[1] != w.shape[1])
            rc = cli_fail("--w: W has %zu input channels but X has %zu (W is (K,C,R,S), X is (N,C,H,W))", w.shape[1],
                      x.shape[1]);
        for (int i = 0; i < 4 && !rc; i++)
            if (x.shape[i] > INT_MAX || w.shape[i] > INT_MAX) rc = cli_fail("--x/--w: a dimension exceeds 2^31-1");
    }
    pp_layer *layer = NULL;
    if (!rc) {
        d.n = (int)x.shape[0];
        d.c = (int)x.shape[1];
        d.h = (int)x.shape[2];
        d.w = (int)x.shape[3];
        d.k = (int)w.shape[0];
        d.r = (int)w.shape[2];
        d.s = (int)w.shape[3];
        st = pp_layer_create(ctx, &d, &layer);
        if (st != PP_OK) rc = cli_fail_ctx(ctx, st);
    }
    pp_layer_shape s;
    if (!rc) {
        pp_layer_shape_get(layer, &s);
        if (dy.shape[0] != x.shape[0] || dy.shape[1] != w.shape[0] || dy.shape[2] != (size_t)s.p ||
            dy.shape[3] != (size_t)s.q)
            rc = cli_fail("--dy: expected shape (%d, %d, %d, %d) = (N, K, P, Q) for this convolution, got (%zu, %zu, %zu, %zu)",
                      d.n, d.k, s.p, s.q, dy.shape[0], dy.shape[1], dy.shape[2], dy.shape[3]);
    }
    if (!rc) {
        float *y = malloc(s.y_elems * sizeof(float)), *xp = malloc(s.xp_elems * sizeof(float));
        float *dx = malloc(s.x_elems * sizeof(float)), *dw = malloc(s.w_elems * sizeof(float));
        if (!y || !xp || !dx || !dw) rc = cli_fail("out of memory");
        if (!rc) {
            st = pp_layer_run(layer, x.data, w.data, dy.data, y, xp, dx, dw);
            if (st != PP_OK) rc = cli_fail_ctx(ctx, st);
        }
        if (!rc) rc = cli_make_dir(out_dir);
        if (!rc) {
            char path[4200];
            const size_t y_shape[4] = {(size_t)d.n, (size_t)d.k, (size_t)s.p, (size_t)s.q};
            const size_t xp_shape[4] = {(size_t)d.n, (size_t)d.c, (size_t)s.hp, (size_t)s.wp};
            const struct { const char *name; const size_t *shape; const float *data; } outs[] = {
                {"y.npy", y_shape, y}, {"xp.npy", x.shape, NULL}, {"dx.npy", x.shape, dx}, {"dw.npy", w.shape, dw}};
            for (int i = 0; i < 4 && !rc; i++) {
                snprintf(path, sizeof path, "%s/%s", out_dir, outs[i].name);
                const size_t *shape = i == 1 ? xp_shape : outs[i].shape;
                st = npy_write_f32(ctx, path, 4, shape, i == 1 ? xp : outs[i].data);
                if (st != PP_OK) rc = cli_fail_ctx(ctx, st);
            }
            if (!rc)
                printf("poolprop layer: N=%d C=%d H=%d W=%d K=%d R=%d S=%d stride=%d pad=%d pool=%d %s on %s\n"
                       "wrote %s/{y,xp,dx,dw}.npy: y (%d,%d,%d,%d) xp (%d,%d,%d,%d)\n",
                       d.n, d.c, d.h, d.w, d.k, d.r, d.s, d.stride, d.pad, d.pool,
                       d.pool_mode == PP_POOL_MAX ? "max" : "avg", pp_context_device_name(ctx), out_dir, d.n,
                       d.k, s.p, s.q, d.n, d.c, s.hp, s.wp);
        }
        free(y);
        free(xp);
        free(dx);
        free(dw);
    }
    pp_layer_destroy(layer);
    npy_array_free(&x);
    npy_array_free(&w);
    npy_array_free(&dy);
    pp_context_destroy(ctx);
    return rc;
}

/* ---- plan ---- */

/* "123", "10GB" (10^9), "16GiB" (2^30), K/M/G/T with or without B/iB. */
static int parse_bytes(const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    double scale = 1;
    const char *units[] = {"", "K", "M", "G", "T"};
    if (errno || end == text || !isfinite(v) || v <= 0)
        return cli_fail("--budget: expected a byte count such as 16GiB, got '%s'", text);
    if (*end) {
        int found = 0;
        for (int i = 1; i < 5 && !found; i++) {
            char a[8], b[8], c[8];
            snprintf(a, sizeof a, "%s", units[i]);
            snprintf(b, sizeof b, "%sB", units[i]);
            snprintf(c, sizeof c, "%siB", units[i]);
            if (strcmp(end, c) == 0) scale = ldexp(1.0, 10 * i), found = 1;
            else if (strcmp(end, a) == 0 || strcmp(end, b) == 0) scale = pow(1000.0, i), found = 1;
        }
        if (!found && strcmp(end, "B") != 0) return cli_fail("--budget: unknown unit in '%s'", text);
    }
    *out = v * scale;
    return 0;
}

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
    printf("}, \"largest_transient\": %zu, \"arena\": %zu, \"peak\": %zu}%s\n", r->largest_transient, r->arena,
           r->peak, last ? "" : ",");
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

static int cmd_plan(int argc, char **argv)
{
    cli_option opts[] = {{"batch", 0, 0, 0},  {"image", 0, 0, 0},  {"classes", 0, 0, 0},
                     {"policy", 0, 0, 0}, {"budget", 0, 0, 0}, {"json", 0, 1, 0}};
    int nopts = sizeof opts / sizeof opts[0];
    const char *model = NULL;
    if (cli_parse_options(argc, argv, opts, nopts, &model)) return 1;
    if (!model) return cli_fail("plan: which model? e.g. poolprop plan resnet50 --batch 64");
    pp_model_options mo;
    pp_model_options_init(&mo);
    mo.model = model;
    mo.policy = cli_opt(opts, nopts, "policy");
    if (cli_parse_int("batch", cli_opt(opts, nopts, "batch") ? cli_opt(opts, nopts, "batch") : "1", 0, 1 << 20, &mo.batch))
        return 1;
    if (mo.batch < 1) return cli_fail("--batch: a batch must hold at least one image, got %d", mo.batch);
    if (cli_parse_image(cli_opt(opts, nopts, "image"), &mo.height, &mo.width)) return 1;
    if (cli_opt(opts, nopts, "classes") && cli_parse_int("classes", cli_opt(opts, nopts, "classes"), 1, 1 << 24, &mo.classes))
        return 1;
    double budget = 0;
    if (cli_opt(opts, nopts, "budget") && parse_bytes(cli_opt(opts, nopts, "budget"), &budget)) return 1;
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
        printf(",\n  \"peak_bytes\": %zu, \"baseline_peak_bytes\": %zu, \"saving_percent\": %.2f, \"baseline_policy\": ",
               r.peak, b.peak, saving);
        cli_json_string(stdout, r.baseline_policy);
        printf(",\n");
        if (budget > 0)
            printf("  \"budget_bytes\": %.0f, \"max_batch\": %d, \"baseline_max_batch\": %d,\n", budget, max_batch,
                   max_batch_base);
        json_report("policy_report", &r, 0);
        json_report("baseline_report", &b, 1);
        printf("}\n");
    } else {
        double unit = b.peak >= (16u << 20) ? 1048576.0 : 1024.0;
        printf("poolprop plan: %s, batch %d, %dx%d images, %d classes, policy %s (memory in %s)\n", model, r.batch,
               r.height, r.width, r.classes, policy, unit > 1024 ? "MiB" : "KiB");
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
        print_row("peak", r.peak, b.peak, unit);
        printf("saving: %.1f%% of the baseline peak (%.1f %s less); baseline: policy %s\n", saving,
               (b.peak - (double)r.peak) / unit, unit > 1024 ? "MiB" : "KiB", r.baseline_policy);
        if (budget > 0)
            printf("largest batch within %.0f bytes: %d with the policy, %d for the baseline\n", budget, max_batch,
                   max_batch_base);
    }
    pp_context_destroy(ctx);
    return 0;
}

/* ---- init and step: parameters as one .npy file per state_dict key ---- */

static int write_param(pp_context *ctx, const char *dir, const pp_param_info *info, const float *data)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/%s.npy", dir, info->key);
    pp_status st = npy_write_f32(ctx, path, info->rank, info->shape, data);
    return st == PP_OK ? 0 : cli_fail_ctx(ctx, st);
}

static int cmd_init(int argc, char **argv)
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
    if (cli_opt(opts, nopts, "classes") && cli_parse_int("classes", cli_opt(opts, nopts, "classes"), 1, 1 << 24, &mo.classes))
        return 1;
    int seed = 0;
    if (cli_opt(opts, nopts, "seed") && cli_parse_int("seed", cli_opt(opts, nopts, "seed"), 0, INT_MAX, &seed)) return 1;
    pp_context_options co;
    pp_context_options_init(&co);
    co.backend = PP_BACKEND_NONE;
    co.disable_cache = 1;
    pp_context *ctx = cli_context(&co);
    if (!ctx) return 1;
    pp_params *ps = NULL;
    pp_status st = pp_params_init(ctx, &mo, (uint64_t)seed, &ps);
    int rc = st == PP_OK ? cli_make_dir(out_dir) : cli_fail_ctx(ctx, st);
    int n = 0;
    if (!rc) pp_params_count(ps, &n);
    for (int i = 0; i < n && !rc; i++) {
        pp_param_info info;
        const float *data;
        pp_params_get(ps, i, &info, &data);
        rc = write_param(ctx, out_dir, &info, data);
    }
    if (!rc) printf("poolprop init: wrote %d arrays (parameters and BN statistics) of %s to %s/\n", n, model, out_dir);
    pp_params_destroy(ps);
    pp_context_destroy(ctx);
    return rc;
}

static int cmd_step(int argc, char **argv)
{
    cli_option opts[] = {{"params", 0, 0, 0}, {"x", 0, 0, 0},       {"labels", 0, 0, 0}, {"policy", 0, 0, 0},
                     {"backend", 0, 0, 0}, {"out", 0, 0, 0}, {"schedule", 0, 0, 0}};
    int nopts = sizeof opts / sizeof opts[0];
    const char *model = NULL;
    if (cli_parse_options(argc, argv, opts, nopts, &model)) return 1;
    if (!model) return cli_fail("step: which model? e.g. poolprop step cifar_resnet20 --params p/ --x x.npy ...");
    const char *params_dir = cli_opt(opts, nopts, "params"), *out_dir = cli_opt(opts, nopts, "out");
    if (!params_dir) return cli_fail("missing --params DIR");
    if (!out_dir) return cli_fail("missing --out DIR");
    if (!cli_opt(opts, nopts, "labels")) return cli_fail("missing --labels L.npy");
    pp_context_options co;
    if (cli_run_options(opts, nopts, &co)) return 1;
    pp_context *ctx = cli_context(&co);
    if (!ctx) return 1;

    pp_npy_array x = {0}, fc = {0};
    pp_npy_labels labels = {0};
    int32_t *labels32 = NULL;
    pp_model *m = NULL;
    char path[4300];
    int rc = read_npy(ctx, "x", cli_opt(opts, nopts, "x"), &x);
    pp_status st = PP_OK;
    if (!rc) {
        st = npy_read_labels(ctx, cli_opt(opts, nopts, "labels"), &labels);
        if (st != PP_OK) rc = cli_fail("--labels: %s", pp_last_error(ctx));
    }
    if (!rc && x.shape[1] != 3)
        rc = cli_fail("--x: expected images of shape (N, 3, H, W), got %zu channels", x.shape[1]);
    if (!rc && labels.count != x.shape[0])
        rc = cli_fail("--labels: %zu labels for a batch of %zu images", labels.count, x.shape[0]);
    if (!rc) {
        /* The class count comes from the classifier's weight (classes, features). */
        snprintf(path, sizeof path, "%s/fc.weight.npy", params_dir);
        st = npy_read_f32(ctx, path, 2, &fc);
        if (st != PP_OK) rc = cli_fail("--params: %s", pp_last_error(ctx));
    }
    if (!rc) {
        pp_model_options mo;
        pp_model_options_init(&mo);
        mo.model = model;
        mo.policy = cli_opt(opts, nopts, "policy");
        mo.batch = (int)x.shape[0];
        mo.height = (int)x.shape[2];
        mo.width = (int)x.shape[3];
        mo.classes = (int)fc.shape[0];
        st = pp_model_create(ctx, &mo, &m);
        if (st != PP_OK) rc = cli_fail_ctx(ctx, st);
    }
    int n = 0;
    if (!rc) pp_model_param_count(m, &n);
    for (int i = 0; i < n && !rc; i++) {
        pp_param_info info;
        pp_model_param_info(m, i, &info);
        pp_npy_array a = {0};
        snprintf(path, sizeof path, "%s/%s.npy", params_dir, info.key);
        st = npy_read_f32(ctx, path, info.rank, &a);
        if (st != PP_OK) rc = cli_fail("--params: %s", pp_last_error(ctx));
        for (int d = 0; d < info.rank && !rc; d++)
            if (a.shape[d] != info.shape[d])
                rc = cli_fail("--params: %s: dimension %d is %zu, the model needs %zu", path, d, a.shape[d], info.shape[d]);
        if (!rc) {
            st = pp_model_param_write(m, info.key, a.data, a.count);
            if (st != PP_OK) rc = cli_fail_ctx(ctx, st);
        }
        npy_array_free(&a);
    }
    if (!rc) {
        labels32 = malloc(labels.count * sizeof *labels32 + 1);
        for (size_t i = 0; labels32 && i < labels.count; i++)
            labels32[i] = labels.data[i] < INT32_MIN || labels.data[i] > INT32_MAX ? -1 : (int32_t)labels.data[i];
        st = labels32 ? pp_model_set_batch(m, x.data, labels32) : PP_ERR_OUT_OF_MEMORY;
        if (st != PP_OK) rc = cli_fail("--labels: %s", pp_last_error(ctx));
    }
    float loss = 0;
    if (!rc) {
        st = pp_model_train_step(m, NULL, &loss);
        if (st != PP_OK) rc = cli_fail_ctx(ctx, st);
    }
    if (!rc) {
        char grad_dir[4200], stat_dir[4200];
        snprintf(grad_dir, sizeof grad_dir, "%s/grad", out_dir);
        snprintf(stat_dir, sizeof stat_dir, "%s/running", out_dir);
        rc = cli_make_dir(out_dir) || cli_make_dir(grad_dir) || cli_make_dir(stat_dir);
        snprintf(path, sizeof path, "%s/loss.npy", out_dir);
        if (!rc && (st = npy_write_f32(ctx, path, 0, NULL, &loss)) != PP_OK) rc = cli_fail_ctx(ctx, st);
        for (int i = 0; i < n && !rc; i++) {
            pp_param_info info;
            pp_model_param_info(m, i, &info);
            float *buf = malloc(info.count * sizeof *buf + 1);
            if (!buf) {
                rc = cli_fail("out of memory");
                break;
            }
            st = info.is_statistic ? pp_model_param_read(m, info.key, buf, info.count)
                                   : pp_model_grad_read(m, info.key, buf, info.count);
            if (st != PP_OK) rc = cli_fail_ctx(ctx, st);
            if (!rc) rc = write_param(ctx, info.is_statistic ? stat_dir : grad_dir, &info, buf);
            free(buf);
        }
        if (!rc)
            printf("poolprop step: %s, batch %zu, loss %.6f; wrote %s/loss.npy, %s/grad/<key>.npy and the updated BN "
                   "statistics in %s/running/\n",
                   model, x.shape[0], loss, out_dir, out_dir, out_dir);
    }
    free(labels32);
    npy_labels_free(&labels);
    npy_array_free(&x);
    npy_array_free(&fc);
    pp_model_destroy(m);
    pp_context_destroy(ctx);
    return rc;
}

/* ---- demo: a few training steps of a CIFAR ResNet on synthetic data ---- */

static int cmd_demo(int argc, char **argv)
{
    cli_option opts[] = {{"model", 0, 0, 0}, {"policy", 0, 0, 0},  {"batch", 0, 0, 0}, {"image", 0, 0, 0},
                     {"steps", 0, 0, 0}, {"backend", 0, 0, 0}, {"lr", 0, 0, 0}};
    int nopts = sizeof opts / sizeof opts[0];
    if (cli_parse_options(argc, argv, opts, nopts, NULL)) return 1;
    pp_model_options mo;
    pp_model_options_init(&mo);
    mo.model = cli_opt(opts, nopts, "model") ? cli_opt(opts, nopts, "model") : "cifar_resnet20";
    mo.policy = cli_opt(opts, nopts, "policy") ? cli_opt(opts, nopts, "policy") : "2";
    mo.batch = 8;
    int steps = 5;
    if (cli_opt(opts, nopts, "batch") && cli_parse_int("batch", cli_opt(opts, nopts, "batch"), 1, 1 << 16, &mo.batch)) return 1;
    if (cli_opt(opts, nopts, "steps") && cli_parse_int("steps", cli_opt(opts, nopts, "steps"), 1, 1 << 20, &steps)) return 1;
    if (cli_parse_image(cli_opt(opts, nopts, "image") ? cli_opt(opts, nopts, "image") : "16", &mo.height, &mo.width)) return 1;
    pp_sgd_options sgd = {0.05f, 0.9f, 5e-4f};
    if (cli_opt(opts, nopts, "lr")) {
        char *end;
        sgd.lr = strtof(cli_opt(opts, nopts, "lr"), &end);
        if (*end || !isfinite(sgd.lr) || !(sgd.lr > 0))
            return cli_fail("--lr: expected a positive finite number, got '%s'", cli_opt(opts, nopts, "lr"));
    }
    pp_context_options co;
    if (cli_run_options(opts, nopts, &co)) return 1;
    pp_context *ctx = cli_context(&co);
    if (!ctx) return 1;

    pp_memory_report r, b;
    pp_model_options base = mo;
    pp_model *m = NULL;
    pp_status st = pp_plan_memory(ctx, &mo, &r);
    base.policy = r.baseline_policy;
    if (st == PP_OK) st = pp_plan_memory(ctx, &base, &b);
    double t0 = cli_now_ms();
    if (st == PP_OK) st = pp_model_create(ctx, &mo, &m);
    if (st == PP_OK) st = pp_model_init_params(m, 1);
    if (st != PP_OK) {
        int rc = cli_fail_ctx(ctx, st);
        pp_model_destroy(m);
        pp_context_destroy(ctx);
        return rc;
    }
    printf("poolprop demo: %s, batch %d, %dx%d synthetic images, %d classes, policy %s, on %s\n", mo.model, r.batch,
           r.height, r.width, r.classes, mo.policy, pp_context_device_name(ctx));
    printf("built and compiled in %.0f ms\n", cli_now_ms() - t0);
    printf("memory (bytes)            %12s %12s\n", "policy", "baseline");
    printf("  weights+grads+momentum  %12zu %12zu\n", r.weights + r.gradients + r.optimizer,
           b.weights + b.gradients + b.optimizer);
    printf("  saved for backward      %12zu %12zu\n", r.saved, b.saved);
    printf("  largest transient       %12zu %12zu\n", r.largest_transient, b.largest_transient);
    printf("  peak                    %12zu %12zu  (%.1f%% less)\n", r.peak, b.peak,
           100.0 * (1.0 - (double)r.peak / (double)b.peak));
    /* Synthetic, learnable data: each class is a brightness ramp in its own direction. */
    size_t pixels = (size_t)r.height * r.width;
    float *x = malloc((size_t)r.batch * 3 * pixels * sizeof *x);
    int32_t *labels = malloc((size_t)r.batch * sizeof *labels);
    int rc = x && labels ? 0 : cli_fail("out of memory");
    for (int n = 0; n < r.batch && !rc; n++) {
        labels[n] = n % r.classes;
        double angle = 6.283185307179586 * labels[n] / r.classes;
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < r.height; i++)
                for (int j = 0; j < r.width; j++)
                    x[((size_t)n * 3 + c) * pixels + (size_t)i * r.width + j] =
                        (float)(cos(angle) * (i - r.height / 2.0) / r.height + sin(angle) * (j - r.width / 2.0) / r.width +
                                0.1 * c);
    }
    for (int step = 0; step < steps && !rc; step++) {
        float loss;
        double t = cli_now_ms();
        st = pp_model_set_batch(m, x, labels);
        if (st == PP_OK) st = pp_model_train_step(m, &sgd, &loss);
        if (st != PP_OK) rc = cli_fail_ctx(ctx, st);
        else printf("step %d: loss %.4f (%.0f ms)\n", step + 1, loss, cli_now_ms() - t);
    }
    free(x);
    free(labels);
    pp_model_destroy(m);
    pp_context_destroy(ctx);
    return rc;
}

/* ---- gen ---- */

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
    if (!backend || strcmp(backend, "none") == 0) co.backend = PP_BACKEND_NONE;
    else if (strcmp(backend, "host") == 0) co.backend = PP_BACKEND_HOST;
    else if (strcmp(backend, "cuda") == 0) co.backend = PP_BACKEND_CUDA;
    else return cli_fail("--backend: expected none, host or cuda, got '%s'", backend);
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

static int cmd_gen(int argc, char **argv)
{
    cli_option opts[] = {{"out", 0, 0, 0},     {"model", 0, 0, 0},   {"policy", 0, 0, 0},
                         {"batch", 0, 0, 0},   {"image", 0, 0, 0},   {"classes", 0, 0, 0},
                         {"backend", 0, 0, 0}, {"tuning-dir", 0, 0, 0}};
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

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "verify") == 0) return cmd_verify(argc - 2, argv + 2);
    if (strcmp(cmd, "layer") == 0) return cmd_layer(argc - 2, argv + 2);
    if (strcmp(cmd, "gen") == 0) return cmd_gen(argc - 2, argv + 2);
    if (strcmp(cmd, "plan") == 0) return cmd_plan(argc - 2, argv + 2);
    if (strcmp(cmd, "init") == 0) return cmd_init(argc - 2, argv + 2);
    if (strcmp(cmd, "train") == 0) return train_main(argc - 2, argv + 2);
    if (strcmp(cmd, "bench") == 0) return bench_main(argc - 2, argv + 2);
    if (strcmp(cmd, "tune") == 0) return tune_main(argc - 2, argv + 2);
    if (strcmp(cmd, "demo") == 0) return cmd_demo(argc - 2, argv + 2);
    if (strcmp(cmd, "step") == 0) return cmd_step(argc - 2, argv + 2);
    if (strcmp(cmd, "report") == 0) return report_main(argc - 2, argv + 2);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("poolprop %s\n", PP_VERSION_STRING);
        return 0;
    }
    return cli_fail("unknown command '%s' (see poolprop --help)", cmd);
}
