/* layout.c - NCHW/KCRS <-> NHWC/KRSC permutations at the runtime's edges (layout.h). */
#include "layout.h"

void layout_to_channels_last(const float *src, float *dst, size_t d0, size_t d1, size_t d2, size_t d3)
{
    const size_t plane = d2 * d3;
    for (size_t a = 0; a < d0; a++)
        for (size_t b = 0; b < d1; b++) {
            const float *in = src + (a * d1 + b) * plane;
            float *out = dst + a * d1 * plane + b;
            for (size_t i = 0; i < plane; i++) out[i * d1] = in[i];
        }
}

void layout_from_channels_last(const float *src, float *dst, size_t d0, size_t d1, size_t d2, size_t d3)
{
    const size_t plane = d2 * d3;
    for (size_t a = 0; a < d0; a++)
        for (size_t b = 0; b < d1; b++) {
            const float *in = src + a * d1 * plane + b;
            float *out = dst + (a * d1 + b) * plane;
            for (size_t i = 0; i < plane; i++) out[i] = in[i * d1];
        }
}
