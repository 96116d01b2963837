/* test_layer_memory.c - a layer's kernels on the caller's memory (pp_layer_forward,
 * pp_layer_backward_data, pp_layer_backward_weight, pp_layer_workspace_size), on the host
 * backend: for a pooling layer with a split-K weight gradient and a non-pooling strided one,
 * the three calls on channels-last arrays the test owns give bit for bit what
 * pp_layer_run gives (the same kernels, which test_conv_kernels checks against the C
 * reference), with the workspace placed at the caller's pointer; missing tensors, a missing
 * workspace and an xp for a layer that does not pool are refused by name. */
#include "layout.h"
#include "test_util.h"

static pp_context *ctx;

typedef struct layer_case {
    const char *name;
    int n, c, h, w, k, r, s, stride, pad, pool;
} layer_case;

static const layer_case cases[] = {
    {"pooled", 2, 16, 8, 8, 32, 3, 3, 1, 1, 2},
    {"strided", 3, 8, 9, 7, 16, 3, 3, 2, 1, 1},
};

static void same_as_layer_run(const layer_case *lc, size_t *workspace_out)
{
    pp_layer_desc d;
    pp_layer_desc_init(&d);
    d.name = lc->name, d.n = lc->n, d.c = lc->c, d.h = lc->h, d.w = lc->w, d.k = lc->k, d.r = lc->r, d.s = lc->s;
    d.stride = lc->stride, d.pad = lc->pad, d.pool = lc->pool;
    pp_layer *layer = NULL;
    CHECK_OK(ctx, pp_layer_create(ctx, &d, &layer));
    pp_layer_shape sh;
    CHECK_OK(ctx, pp_layer_shape_get(layer, &sh));
    uint64_t rng = 0x1234567u + (uint64_t)lc->pool;
    float *x = test_rand_floats(&rng, sh.x_elems, -1, 1), *w = test_rand_floats(&rng, sh.w_elems, -1, 1);
    float *dy = test_rand_floats(&rng, sh.y_elems, -1, 1);
    float *y = test_xmalloc(sh.y_elems * 4), *xp = test_xmalloc(sh.xp_elems * 4), *dx = test_xmalloc(sh.x_elems * 4);
    float *dw = test_xmalloc(sh.w_elems * 4);
    CHECK_OK(ctx, pp_layer_run(layer, x, w, dy, y, xp, dx, dw));

    /* The caller's arrays, channels last, as a framework holds them. */
    size_t n = (size_t)lc->n, c = (size_t)lc->c, k = (size_t)lc->k;
    float *x_cl = test_xmalloc(sh.x_elems * 4), *w_cl = test_xmalloc(sh.w_elems * 4);
    float *dy_cl = test_xmalloc(sh.y_elems * 4);
    layout_to_channels_last(x, x_cl, n, c, (size_t)lc->h, (size_t)lc->w);
    layout_to_channels_last(w, w_cl, k, c, (size_t)lc->r, (size_t)lc->s);
    layout_to_channels_last(dy, dy_cl, n, k, (size_t)sh.p, (size_t)sh.q);
    float *y_cl = test_xmalloc(sh.y_elems * 4), *xp_cl = test_xmalloc(sh.xp_elems * 4);
    float *dx_cl = test_xmalloc(sh.x_elems * 4), *dw_cl = test_xmalloc(sh.w_elems * 4);
    size_t workspace_bytes = 0;
    CHECK_OK(ctx, pp_layer_workspace_size(layer, &workspace_bytes));
    *workspace_out = workspace_bytes;
    unsigned char *workspace = test_xmalloc(workspace_bytes);
    const int pooled = lc->pool > 1;
    CHECK_OK(ctx, pp_layer_forward(layer, x_cl, w_cl, y_cl, pooled ? xp_cl : NULL, workspace, NULL));
    CHECK_OK(ctx, pp_layer_backward_data(layer, dy_cl, w_cl, dx_cl, workspace, NULL));
    CHECK_OK(ctx, pp_layer_backward_weight(layer, pooled ? xp_cl : x_cl, dy_cl, dw_cl, workspace, NULL));

    float *back = test_xmalloc((sh.x_elems > sh.y_elems ? sh.x_elems : sh.y_elems) * 4 + sh.w_elems * 4);
    layout_from_channels_last(y_cl, back, n, k, (size_t)sh.p, (size_t)sh.q);
    CHECK(memcmp(back, y, sh.y_elems * 4) == 0, "%s: y differs from pp_layer_run's", lc->name);
    layout_from_channels_last(dx_cl, back, n, c, (size_t)lc->h, (size_t)lc->w);
    CHECK(memcmp(back, dx, sh.x_elems * 4) == 0, "%s: dx differs from pp_layer_run's", lc->name);
    layout_from_channels_last(dw_cl, back, k, c, (size_t)lc->r, (size_t)lc->s);
    CHECK(memcmp(back, dw, sh.w_elems * 4) == 0, "%s: dw differs from pp_layer_run's", lc->name);
    if (pooled) {
        layout_from_channels_last(xp_cl, back, n, c, (size_t)sh.hp, (size_t)sh.wp);
        CHECK(memcmp(back, xp, sh.xp_elems * 4) == 0, "%s: xp differs from pp_layer_run's", lc->name);
    }
    printf("%s: y, dx, dw%s bit-identical to pp_layer_run; workspace %zu bytes\n", lc->name, pooled ? ", xp" : "",
           workspace_bytes);

    /* Refusals name what is missing. */
    CHECK(pp_layer_forward(layer, x_cl, NULL, y_cl, pooled ? xp_cl : NULL, workspace, NULL) ==
                  PP_ERR_INVALID_ARGUMENT &&
              strstr(pp_last_error(ctx), "tensor w is NULL"),
          "%s: a NULL w: %s", lc->name, pp_last_error(ctx));
    if (pooled) {
        CHECK(pp_layer_forward(layer, x_cl, w_cl, y_cl, NULL, workspace, NULL) == PP_ERR_INVALID_ARGUMENT &&
                  strstr(pp_last_error(ctx), "tensor xp is NULL"),
              "%s: a NULL xp: %s", lc->name, pp_last_error(ctx));
    } else {
        CHECK(pp_layer_forward(layer, x_cl, w_cl, y_cl, xp_cl, workspace, NULL) == PP_ERR_INVALID_ARGUMENT &&
                  strstr(pp_last_error(ctx), "does not pool"),
              "%s: an xp for a layer without pooling: %s", lc->name, pp_last_error(ctx));
    }
    if (workspace_bytes) {
        CHECK(pp_layer_backward_weight(layer, xp_cl, dy_cl, dw_cl, NULL, NULL) == PP_ERR_INVALID_ARGUMENT &&
                  strstr(pp_last_error(ctx), "needs a workspace of"),
              "%s: a NULL workspace: %s", lc->name, pp_last_error(ctx));
    }
    free(x), free(w), free(dy), free(y), free(xp), free(dx), free(dw), free(x_cl), free(w_cl), free(dy_cl);
    free(y_cl), free(xp_cl), free(dx_cl), free(dw_cl), free(workspace), free(back);
    pp_layer_destroy(layer);
}

static void pooled_layer(void)
{
    size_t workspace = 0;
    same_as_layer_run(&cases[0], &workspace);
    CHECK(workspace > 0, "the pooled layer's split-K weight gradient asks for no workspace");
}

static void strided_layer(void)
{
    size_t workspace = 0;
    same_as_layer_run(&cases[1], &workspace);
}

static const test_case tests[] = {
    TEST_CASE(pooled_layer, "f=2 with split-K: caller memory gives pp_layer_run's y, xp, dx, dw bit for bit"),
    TEST_CASE(strided_layer, "stride 2, no pooling: x is the save; an xp is refused"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_HOST;
    o.host_threads = 2;
    CHECK_OK(ctx, pp_context_create(&o, &ctx));
    int status = TEST_RUN(tests, only);
    pp_context_destroy(ctx);
    return status;
}
