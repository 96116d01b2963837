// maxpool_fwd.cu - max pooling, R x R window at stride STRIDE with padding PAD, floor mode
// (P = (H + 2*PAD - R)/STRIDE + 1, Q likewise), channels-last, one output element per thread.
//   x: (N,H,W,C) act_t (float, or bf16 bits if ACT_BF16), element (n,h,w,c) at
//     ((n*H + h)*W + w)*C + c
//   y: (N,P,Q,C) act_t  argmax: (N,P,Q,C) bytes, element (n,oy,ox,c) at ((n*P + oy)*Q + ox)*C + c
//   y[n,oy,ox,c] = max over r,t in [0,R) of x[n, STRIDE*oy + r - PAD, STRIDE*ox + t - PAD, c]
//   argmax = r*R + t of the chosen element.
// Padding never wins (positions outside x are skipped; PAD <= R/2 keeps one inside every
// window). The first maximum in r-major order wins ties; a NaN wins over numbers (the
// first NaN of the window), so a NaN input propagates like torch's max pooling.
// ACT_BF16: the maximum of the widened bf16 elements is a bf16 value: y is a copy of it
// (bf16_round is exact there; a NaN comes out quiet).
// Indexing: thread o = blockIdx.x*THREADS + threadIdx.x is output element o (flat, c
// fastest): consecutive threads read and write consecutive channels (coalesced).
// Generator constants: N C H W R STRIDE PAD P Q COUNT (= N*P*Q*C) ACT_BF16 THREADS
// (the element: maxpool_window.cuh; maxpool_fwd_pool.cu is the form that also pools y)
// Launch: grid (ceil(COUNT/THREADS)), block (THREADS).
using act_t = pp_select_t<ACT_BF16 == 1, unsigned short, float>;

extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const act_t *__restrict__ x, act_t *__restrict__ y, unsigned char *__restrict__ argmax)
{
    const int o = blockIdx.x * THREADS + threadIdx.x;
    if (o >= COUNT) return;
    const int c = o % C, pix = o / C;
    const int ox = pix % Q, oy = (pix / Q) % P, n = pix / (P * Q);
    unsigned char arg;
    act_store(y, o, maxpool_at(x + n * (H * W * C) + c, oy, ox, arg)); // maxpool_window.cuh
    argmax[o] = arg;
}
PP_KERNEL_EXPORT(${KERNEL})
