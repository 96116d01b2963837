// avgpool_bwd.cu - backward of global average pooling, one input element per thread.
//   dy: (N,C)  dx: (N,C,HW)
//   dx[n,c,i] = dy[n,c] / HW
// Generator constants: N C HW COUNT (= N*C*HW) THREADS
// Launch: grid (ceil(COUNT/THREADS)), block (THREADS).
extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const float *__restrict__ dy, float *__restrict__ dx)
{
    const int e = blockIdx.x * THREADS + threadIdx.x;
    if (e >= COUNT) return;
    dx[e] = dy[e / HW] / (float)HW;
}
PP_KERNEL_EXPORT(${KERNEL})
