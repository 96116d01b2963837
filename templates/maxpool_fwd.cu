// maxpool_fwd.cu - max pooling, R x R window at stride STRIDE with padding PAD, floor mode
// (P = (H + 2*PAD - R)/STRIDE + 1, Q likewise), one output element per thread.
//   x: (N,C,H,W)  y: (N,C,P,Q)  argmax: (N,C,P,Q) bytes
//   y[n,c,oy,ox] = max over r,t in [0,R) of x[n,c, STRIDE*oy + r - PAD, STRIDE*ox + t - PAD]
//   argmax = r*R + t of the chosen element.
// Padding never wins (positions outside x are skipped; PAD <= R/2 keeps one inside every
// window). The first maximum in r-major order wins ties; a NaN wins over numbers (the
// first NaN of the window), so a NaN input propagates like torch's max pooling.
// Generator constants: N C H W R STRIDE PAD P Q COUNT (= N*C*P*Q) THREADS
// Launch: grid (ceil(COUNT/THREADS)), block (THREADS).
extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const float *__restrict__ x, float *__restrict__ y, unsigned char *__restrict__ argmax)
{
    const int o = blockIdx.x * THREADS + threadIdx.x;
    if (o >= COUNT) return;
    const int ox = o % Q, oy = (o / Q) % P, nc = o / (P * Q);
    const float *plane = x + nc * (H * W);
    float best = 0.0f;
    int arg = -1;
    for (int r = 0; r < R; ++r) {
        const int h = oy * STRIDE + r - PAD;
        if (h < 0 || h >= H) continue;
        for (int t = 0; t < R; ++t) {
            const int w = ox * STRIDE + t - PAD;
            if (w < 0 || w >= W) continue;
            const float v = plane[h * W + w];
            if (arg < 0 || v > best || (v != v && best == best)) {
                best = v;
                arg = r * R + t;
            }
        }
    }
    y[o] = best;
    argmax[o] = (unsigned char)arg;
}
PP_KERNEL_EXPORT(${KERNEL})
