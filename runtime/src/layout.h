/* layout.h - the conversions at the runtime's edges between the user-facing layouts and
 * storage (float32, NCHW/KCRS) and the internal ones (DESIGN.md section 1): channels last,
 * and bf16 storage (policy act=bf16, bf16-storage layers). Users see activations NCHW and convolution
 * weights KCRS (.npy files, torchvision state_dict keys, pp_layer_run, pp_model_*); the
 * kernels keep activations NHWC and weights KRSC. Both are the same permutation of a 4-D
 * tensor (D0, D1, D2, D3) -> (D0, D2, D3, D1): the second dimension moves last. */
#ifndef PP_LAYOUT_H
#define PP_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

/* dst (D0,D2,D3,D1) = src (D0,D1,D2,D3) permuted; src and dst do not overlap. */
void layout_to_channels_last(const float *src, float *dst, size_t d0, size_t d1, size_t d2, size_t d3);
/* dst (D0,D1,D2,D3) = src (D0,D2,D3,D1) permuted; src and dst do not overlap. */
void layout_from_channels_last(const float *src, float *dst, size_t d0, size_t d1, size_t d2, size_t d3);

/* dst[i] = src[i] rounded to bf16 (nearest even, as the kernels' bf16_round; a NaN stays a
 * quiet NaN), as uint16 bit patterns. */
void layout_to_bf16(const float *src, uint16_t *dst, size_t count);
/* dst[i] = the float value of the bf16 bit pattern src[i] (exact). */
void layout_from_bf16(const uint16_t *src, float *dst, size_t count);

#endif
