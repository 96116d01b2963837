// maxpool_bwd.cu - backward of maxpool_fwd.cu as a gather: one input element per thread,
// no atomics.
//   dy: (N,C,P,Q)  argmax: (N,C,P,Q) bytes (r*R + t, from maxpool_fwd)  dx: (N,C,H,W)
//   dx[n,c,h,w] = sum of dy[n,c,oy,ox] over the windows (oy,ox) that cover (h,w) and whose
//                 argmax is (h,w), i.e. r = h + PAD - STRIDE*oy, t = w + PAD - STRIDE*ox,
//                 argmax == r*R + t; summed in (oy, ox) order (deterministic).
// Generator constants: N C H W R STRIDE PAD P Q COUNT (= N*C*H*W) THREADS
// Launch: grid (ceil(COUNT/THREADS)), block (THREADS).
extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const float *__restrict__ dy, const unsigned char *__restrict__ argmax, float *__restrict__ dx)
{
    const int e = blockIdx.x * THREADS + threadIdx.x;
    if (e >= COUNT) return;
    const int w = e % W, h = (e / W) % H, nc = e / (H * W);
    // Windows covering h: STRIDE*oy - PAD <= h <= STRIDE*oy - PAD + R - 1.
    const int lo_h = h + PAD - R + 1, lo_w = w + PAD - R + 1;
    const int oy0 = lo_h <= 0 ? 0 : (lo_h + STRIDE - 1) / STRIDE, oy1 = pp_min((h + PAD) / STRIDE, P - 1);
    const int ox0 = lo_w <= 0 ? 0 : (lo_w + STRIDE - 1) / STRIDE, ox1 = pp_min((w + PAD) / STRIDE, Q - 1);
    const int base = nc * (P * Q);
    float sum = 0.0f;
    for (int oy = oy0; oy <= oy1; ++oy) {
        const int r = h + PAD - oy * STRIDE;
        for (int ox = ox0; ox <= ox1; ++ox) {
            const int t = w + PAD - ox * STRIDE;
            const int o = base + oy * Q + ox;
            if (argmax[o] == r * R + t) sum += dy[o];
        }
    }
    dx[e] = sum;
}
PP_KERNEL_EXPORT(${KERNEL})
