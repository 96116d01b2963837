// avgpool_bwd.cu - backward of global average pooling, channels-last, one input element per
// thread.
//   dy: (N,C) float  dx: (N,HW,C) act_t (float, or bf16 bits if ACT_BF16), element (n,i,c)
//     at (n*HW + i)*C + c
//   dx[n,i,c] = dy[n,c] / HW  (ACT_BF16: the fp32 quotient rounded to bf16 once)
// Indexing: thread e = blockIdx.x*THREADS + threadIdx.x is element e (flat, c fastest):
// consecutive threads write consecutive channels (coalesced).
// Generator constants: N C HW COUNT (= N*HW*C) ACT_BF16 THREADS
// Launch: grid (ceil(COUNT/THREADS)), block (THREADS).
using act_t = pp_select_t<ACT_BF16 == 1, unsigned short, float>;

extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const float *__restrict__ dy, act_t *__restrict__ dx)
{
    const int e = blockIdx.x * THREADS + threadIdx.x;
    if (e >= COUNT) return;
    const int c = e % C, n = e / (HW * C);
    act_store(dx, e, dy[n * C + c] / (float)HW);
}
PP_KERNEL_EXPORT(${KERNEL})
