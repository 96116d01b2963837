/* layout.c - NCHW/KCRS <-> NHWC/KRSC permutations at the runtime's edges (layout.h). */
#include "layout.h"

#include <string.h>

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

void layout_to_bf16(const float *src, uint16_t *dst, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        uint32_t bits;
        memcpy(&bits, &src[i], sizeof bits);
        if ((bits & 0x7fffffffu) > 0x7f800000u)
            dst[i] = (uint16_t)((bits >> 16) | 0x40u); /* NaN: quiet */
        else
            dst[i] = (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
    }
}

void layout_from_bf16(const uint16_t *src, float *dst, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const uint32_t bits = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &bits, sizeof bits);
    }
}
