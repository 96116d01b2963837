/* cmd_verify.c - `poolprop verify`: generates the kernels of every layer of a description file,
 * compiles each with NVRTC (registers, spills) and on the host backend, runs them and compares
 * them with the C reference (reference/layer_check.h: the CLI's one use of the test reference,
 * which is what this command is), printing a table. */
#include "cmd_verify.h"

#include "layer_check.h"
#include "options.h"
#include "poolprop.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int parse_arch(const char *text, int *out)
{
    *out = 0;
    if (!text) return 0;
    const char *digits = strncmp(text, "sm_", 3) == 0 ? text + 3 : text;
    return cli_parse_int("arch", digits, 50, 200, out);
}

int cmd_verify(int argc, char **argv)
{
    cli_option opts[] = {
        {"layers", 0, 0, 0}, {"arch", 0, 0, 0}, {"schedule", 0, 0, 0}, {"threads", 0, 0, 0}, {"no-cache", 0, 1, 0}};
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
    if (cli_opt(opts, nopts, "threads") &&
        cli_parse_int("threads", cli_opt(opts, nopts, "threads"), 1, 1024, &o.host_threads))
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
           path ? path : "the embedded default set (models/layers_default.lua)", o.arch, pp_context_device_name(ctx));
    printf("%-16s %-16s %9s %5s %6s %6s %9s %9s %10s %10s  %s\n", "layer", "kernel", "grid", "block", "regs", "spill",
           "smem", "nvrtc ms", "host ms", "max error", "tolerance");
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
                   descs[i].name ? descs[i].name : "-", info.op, grid, info.block[0], info.registers, spills,
                   info.shared_bytes, info.nvrtc_ms, info.compile_ms, err, tol, spills != 0 ? "  SPILLS" : "");
            if (spills != 0) failures++;
            nvrtc_ms += info.nvrtc_ms;
            host_ms += info.compile_ms;
            kernels++;
        }
        if (!r.passed) {
            printf("  FAILED: y %.2e (tol %.2e), xp %.2e (tol %.2e), dx %.2e (tol %.2e), dw %.2e (tol %.2e)\n", r.err_y,
                   r.tol_y, r.err_xp, r.tol_xp, r.err_dx, r.tol_dx, r.err_dw, r.tol_dw);
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
