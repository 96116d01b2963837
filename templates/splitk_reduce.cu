// splitk_reduce.cu - adds the SPLITS partial weight gradients of conv_bwd_weight in a
// fixed order (split 0 first), so the sum is deterministic.
//   partial: (SPLITS, COUNT)  dw: (COUNT)
// Generator constants: SPLITS COUNT THREADS
extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const float *__restrict__ partial, float *__restrict__ dw)
{
    const int i = blockIdx.x * THREADS + threadIdx.x;
    if (i >= COUNT) return;
    float sum = partial[i];
    for (int s = 1; s < SPLITS; ++s) sum += partial[s * COUNT + i];
    dw[i] = sum;
}
PP_KERNEL_EXPORT(${KERNEL})
