/* cmd_layer.c - `poolprop layer`: one convolution on the user's arrays (X, W, dY as .npy),
 * writing y, xp, dx and dw as one output set (outfile.h). */
#include "cmd_layer.h"

#include "npy.h"
#include "options.h"
#include "outfile.h"
#include "poolprop.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_layer(int argc, char **argv)
{
    cli_option opts[] = {{"x", 0, 0, 0},   {"w", 0, 0, 0},       {"dy", 0, 0, 0},        {"stride", 0, 0, 0},
                         {"pad", 0, 0, 0}, {"pool", 0, 0, 0},    {"pool-mode", 0, 0, 0}, {"backend", 0, 0, 0},
                         {"out", 0, 0, 0}, {"schedule", 0, 0, 0}};
    int nopts = sizeof opts / sizeof opts[0];
    if (cli_parse_options(argc, argv, opts, nopts, NULL)) return 1;
    pp_layer_desc d;
    pp_layer_desc_init(&d);
    if (cli_parse_int("stride", cli_opt(opts, nopts, "stride"), 1, 1 << 20, &d.stride)) return 1;
    if (cli_parse_int("pad", cli_opt(opts, nopts, "pad"), 0, 1 << 20, &d.pad)) return 1;
    if (cli_parse_int("pool", cli_opt(opts, nopts, "pool"), 1, 8, &d.pool)) return 1;
    const char *mode = cli_opt(opts, nopts, "pool-mode");
    if (!mode || strcmp(mode, "avg") == 0)
        d.pool_mode = PP_POOL_AVG;
    else if (strcmp(mode, "max") == 0)
        d.pool_mode = PP_POOL_MAX;
    else
        return cli_fail("--pool-mode: expected avg or max, got '%s'", mode);
    const char *out_dir = cli_opt(opts, nopts, "out");
    if (!out_dir) return cli_fail("missing --out DIR");

    pp_context_options o;
    if (cli_run_options(opts, nopts, &o)) return 1;

    pp_context *ctx = cli_context(&o);
    if (!ctx) return 1;
    pp_status st = PP_OK;
    npy_array x = {0}, w = {0}, dy = {0};
    int rc = npy_read_option("x", cli_opt(opts, nopts, "x"), 4, &x) ||
             npy_read_option("w", cli_opt(opts, nopts, "w"), 4, &w) ||
             npy_read_option("dy", cli_opt(opts, nopts, "dy"), 4, &dy);
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
            rc = cli_fail(
                "--dy: expected shape (%d, %d, %d, %d) = (N, K, P, Q) for this convolution, got (%zu, %zu, %zu, %zu)",
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
        outfile_set set = {0};
        if (!rc) rc = outfile_set_dir(&set, out_dir);
        if (!rc) {
            char path[4200];
            const size_t y_shape[4] = {(size_t)d.n, (size_t)d.k, (size_t)s.p, (size_t)s.q};
            const size_t xp_shape[4] = {(size_t)d.n, (size_t)d.c, (size_t)s.hp, (size_t)s.wp};
            const struct {
                const char *name;
                const size_t *shape;
                const float *data;
            } outs[] = {
                {"y.npy", y_shape, y}, {"xp.npy", x.shape, NULL}, {"dx.npy", x.shape, dx}, {"dw.npy", w.shape, dw}};
            for (int i = 0; i < 4 && !rc; i++) {
                snprintf(path, sizeof path, "%s/%s", out_dir, outs[i].name);
                const size_t *shape = i == 1 ? xp_shape : outs[i].shape;
                rc = npy_stage(&set, path, 4, shape, i == 1 ? xp : outs[i].data);
            }
            rc = rc ? (outfile_set_discard(&set), rc) : outfile_set_commit(&set);
            if (!rc)
                printf("poolprop layer: N=%d C=%d H=%d W=%d K=%d R=%d S=%d stride=%d pad=%d pool=%d %s on %s\n"
                       "wrote %s/{y,xp,dx,dw}.npy: y (%d,%d,%d,%d) xp (%d,%d,%d,%d)\n",
                       d.n, d.c, d.h, d.w, d.k, d.r, d.s, d.stride, d.pad, d.pool,
                       d.pool_mode == PP_POOL_MAX ? "max" : "avg", pp_context_device_name(ctx), out_dir, d.n, d.k, s.p,
                       s.q, d.n, d.c, s.hp, s.wp);
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
