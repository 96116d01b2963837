/* layer_example.c - embedding poolprop through its one public header: generate, compile
 * and run one convolution layer with 2x2 average pooling of the saved input, on the host
 * emulation backend (or the cuda backend: pass "cuda" as the first argument). */
#include <poolprop.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    pp_context_options options;
    pp_context_options_init(&options);
    options.backend = argc > 1 && strcmp(argv[1], "cuda") == 0 ? PP_BACKEND_CUDA : PP_BACKEND_HOST;
    pp_context *ctx = NULL;
    if (pp_context_create(&options, &ctx) != PP_OK) {
        fprintf(stderr, "layer_example: %s\n", pp_last_error(ctx));
        pp_context_destroy(ctx);
        return 1;
    }

    pp_layer_desc desc;
    pp_layer_desc_init(&desc);
    desc.name = "example";
    desc.n = 2, desc.c = 16, desc.h = 28, desc.w = 28; /* X: (2,16,28,28) */
    desc.k = 32, desc.r = 3, desc.s = 3;               /* W: (32,16,3,3) */
    desc.stride = 1, desc.pad = 1, desc.pool = 2, desc.pool_mode = PP_POOL_AVG;

    pp_layer *layer = NULL;
    pp_layer_shape shape;
    if (pp_layer_create(ctx, &desc, &layer) != PP_OK || pp_layer_shape_get(layer, &shape) != PP_OK) {
        fprintf(stderr, "layer_example: %s\n", pp_last_error(ctx));
        pp_context_destroy(ctx);
        return 1;
    }
    float *x = malloc(shape.x_elems * sizeof *x), *w = malloc(shape.w_elems * sizeof *w);
    float *dy = malloc(shape.y_elems * sizeof *dy), *y = malloc(shape.y_elems * sizeof *y);
    float *xp = malloc(shape.xp_elems * sizeof *xp), *dx = malloc(shape.x_elems * sizeof *dx);
    float *dw = malloc(shape.w_elems * sizeof *dw);
    if (!x || !w || !dy || !y || !xp || !dx || !dw) return 1;
    for (size_t i = 0; i < shape.x_elems; i++) x[i] = (float)((i * 7919) % 17) / 17.0f - 0.5f;
    for (size_t i = 0; i < shape.w_elems; i++) w[i] = (float)((i * 104729) % 13) / 13.0f - 0.5f;
    for (size_t i = 0; i < shape.y_elems; i++) dy[i] = (float)((i * 31) % 7) / 7.0f - 0.5f;

    int rc = 0;
    if (pp_layer_run(layer, x, w, dy, y, xp, dx, dw) != PP_OK) {
        fprintf(stderr, "layer_example: %s\n", pp_last_error(ctx));
        rc = 1;
    } else {
        printf("ran on %s\n", pp_context_device_name(ctx));
        printf("saved input: %zu floats pooled instead of %zu (%.0f%% of the memory)\n", shape.xp_elems, shape.x_elems,
               100.0 * (double)shape.xp_elems / (double)shape.x_elems);
        printf("y[0] = %.6f  dx[0] = %.6f  dw[0] = %.6f\n", y[0], dx[0], dw[0]);
        int n;
        pp_layer_kernel_count(layer, &n);
        for (int i = 0; i < n; i++) {
            pp_kernel_info info;
            if (pp_layer_kernel_check(layer, i, &info) != PP_OK) {
                fprintf(stderr, "static check: %s\n", pp_last_error(ctx));
                rc = 1;
                break;
            }
            printf("  %-52s %3d registers, %5d B shared\n", info.name, info.registers, info.shared_bytes);
        }
    }
    free(x), free(w), free(dy), free(y), free(xp), free(dx), free(dw);
    pp_layer_destroy(layer);
    pp_context_destroy(ctx);
    return rc;
}
