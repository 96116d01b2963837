// maxpool_window.cuh - one output element of the max pooling, shared by maxpool_fwd.cu (one
// output element per thread) and maxpool_fwd_pool.cu (whole pooling windows of the output
// per thread), so both write bitwise the same y and argmax.
//   image: x + n*H*W*C + c, the channel's plane of one image (channels-last: element (h,w)
//   at (h*W + w)*C); T: float, or unsigned short for bf16 storage (elements widened to float,
//   exactly, so the maximum is one of the stored values)
//   returns max over r,t in [0,R) of image[STRIDE*oy + r - PAD, STRIDE*ox + t - PAD] and sets
//   arg = r*R + t of the chosen element.
// Padding never wins (positions outside x are skipped; PAD <= R/2 keeps one inside every
// window). The first maximum in r-major order wins ties; a NaN wins over numbers (the
// first NaN of the window), so a NaN input propagates like torch's max pooling.
// Generator constants: H W C R STRIDE PAD
template <class T>
__device__ __forceinline__ float maxpool_at(const T *image, int oy, int ox, unsigned char &arg)
{
    float best = 0.0f;
    int a = -1;
    for (int r = 0; r < R; ++r) {
        const int h = oy * STRIDE + r - PAD;
        if (h < 0 || h >= H) continue;
        for (int t = 0; t < R; ++t) {
            const int w = ox * STRIDE + t - PAD;
            if (w < 0 || w >= W) continue;
            const float v = act_load(image, (h * W + w) * C);
            if (a < 0 || v > best || (v != v && best == best)) {
                best = v;
                a = r * R + t;
            }
        }
    }
    arg = (unsigned char)a;
    return best;
}
