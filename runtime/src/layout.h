/* layout.h - the conversion between the user-facing layouts and the runtime's internal
 * channels-last layout (DESIGN.md section 1). Users see activations NCHW and convolution
 * weights KCRS (.npy files, torchvision state_dict keys, pp_layer_run, pp_model_*); the
 * kernels keep activations NHWC and weights KRSC. Both are the same permutation of a 4-D
 * tensor (D0, D1, D2, D3) -> (D0, D2, D3, D1): the second dimension moves last. */
#ifndef PP_LAYOUT_H
#define PP_LAYOUT_H

#include <stddef.h>

/* dst (D0,D2,D3,D1) = src (D0,D1,D2,D3) permuted; src and dst do not overlap. */
void layout_to_channels_last(const float *src, float *dst, size_t d0, size_t d1, size_t d2, size_t d3);
/* dst (D0,D1,D2,D3) = src (D0,D2,D3,D1) permuted; src and dst do not overlap. */
void layout_from_channels_last(const float *src, float *dst, size_t d0, size_t d1, size_t d2, size_t d3);

#endif
