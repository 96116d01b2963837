// avgpool_fwd.cu - global average pooling, one warp per (n,c) row.
//   x: (N,C,HW)  y: (N,C)
//   y[n,c] = (sum over i of x[n,c,i]) / HW; each lane sums i = lane, lane+32, ... and the
//   warp adds the lanes' sums in a fixed tree (deterministic).
// Generator constants: N C HW ROWS (= N*C) THREADS (rows per block = THREADS/32)
// Launch: grid (ceil(ROWS/(THREADS/32))), block (THREADS).
extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const float *__restrict__ x, float *__restrict__ y)
{
    const int lane = threadIdx.x % 32;
    const int row = blockIdx.x * WARPS + threadIdx.x / 32;
    if (row >= ROWS) return; // whole warps leave together: the shuffles below see full warps
    const float *src = x + row * HW;
    float sum = 0.0f;
    for (int i = lane; i < HW; i += 32) sum += src[i];
    sum = warp_sum(sum);
    if (lane == 0) y[row] = sum / (float)HW;
}
PP_KERNEL_EXPORT(${KERNEL})
