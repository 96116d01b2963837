// avgpool_bwd.cu - backward of global average pooling, channels-last, one input element per
// thread.
//   dy: (N,C)  dx: (N,HW,C), element (n,i,c) at (n*HW + i)*C + c
//   dx[n,i,c] = dy[n,c] / HW
// Indexing: thread e = blockIdx.x*THREADS + threadIdx.x is element e (flat, c fastest):
// consecutive threads write consecutive channels (coalesced).
// Generator constants: N C HW COUNT (= N*HW*C) THREADS
// Launch: grid (ceil(COUNT/THREADS)), block (THREADS).
extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const float *__restrict__ dy, float *__restrict__ dx)
{
    const int e = blockIdx.x * THREADS + threadIdx.x;
    if (e >= COUNT) return;
    const int c = e % C, n = e / (HW * C);
    dx[e] = dy[n * C + c] / (float)HW;
}
PP_KERNEL_EXPORT(${KERNEL})
