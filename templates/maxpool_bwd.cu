// maxpool_bwd.cu - backward of maxpool_fwd.cu as a gather, channels-last: one input element
// per thread, no atomics.
//   dy: (N,P,Q,C) act_t (float, or bf16 bits if ACT_BF16)  argmax: (N,P,Q,C) bytes (r*R + t,
//     from maxpool_fwd)
//   dx: (N,H,W,C) act_t, element (n,h,w,c) at ((n*H + h)*W + w)*C + c
//   dx[n,h,w,c] = sum of dy[n,oy,ox,c] over the windows (oy,ox) that cover (h,w) and whose
//                 argmax is (h,w), i.e. r = h + PAD - STRIDE*oy, t = w + PAD - STRIDE*ox,
//                 argmax == r*R + t; summed in (oy, ox) order (deterministic).
// ACT_BF16: dy widened to float, the sum in fp32, dx rounded to bf16 once.
// Indexing: thread e = blockIdx.x*THREADS + threadIdx.x is input element e (flat, c
// fastest): consecutive threads read and write consecutive channels (coalesced).
// Generator constants: N C H W R STRIDE PAD P Q COUNT (= N*H*W*C) ACT_BF16 THREADS
// Launch: grid (ceil(COUNT/THREADS)), block (THREADS).
using act_t = pp_select_t<ACT_BF16 == 1, unsigned short, float>;

extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const act_t *__restrict__ dy, const unsigned char *__restrict__ argmax, act_t *__restrict__ dx)
{
    const int e = blockIdx.x * THREADS + threadIdx.x;
    if (e >= COUNT) return;
    const int c = e % C, pix = e / C;
    const int w = pix % W, h = (pix / W) % H, n = pix / (H * W);
    // Windows covering h: STRIDE*oy - PAD <= h <= STRIDE*oy - PAD + R - 1.
    const int lo_h = h + PAD - R + 1, lo_w = w + PAD - R + 1;
    const int oy0 = lo_h <= 0 ? 0 : (lo_h + STRIDE - 1) / STRIDE, oy1 = pp_min((h + PAD) / STRIDE, P - 1);
    const int ox0 = lo_w <= 0 ? 0 : (lo_w + STRIDE - 1) / STRIDE, ox1 = pp_min((w + PAD) / STRIDE, Q - 1);
    const int base = n * (P * Q * C) + c;
    float sum = 0.0f;
    for (int oy = oy0; oy <= oy1; ++oy) {
        const int r = h + PAD - oy * STRIDE;
        for (int ox = ox0; ox <= ox1; ++ox) {
            const int t = w + PAD - ox * STRIDE;
            const int o = base + (oy * Q + ox) * C;
            if (argmax[o] == r * R + t) sum += act_load(dy, o);
        }
    }
    act_store(dx, e, sum);
}
PP_KERNEL_EXPORT(${KERNEL})
