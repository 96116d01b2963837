// bn_backward.cu - backward of out = ReLU(BN(y) (+ residual)), one block per channel.
//   dout, dy, dres: (N,C,HW)  y: (N,C,HW) float, or bf16 bits if BF16
//   mean, invstd, gamma, dgamma, dbeta: (C)
//   mask: MASK 1: (ceil(N*C*HW/32)) words, element i = bit i%32 of word i/32;
//         MASK 2: the fp32 ReLU output (N,C,HW) (a plan that keeps it instead of a mask)
// Over the M = N*HW values of channel c:
//   dz = dout, zeroed where the ReLU was inactive (MASK 1: bit clear; MASK 2: out <= 0)
//   dres = dz (if RES: the gradient of the residual add's output, for the shortcut)
//   xhat = (y - mean[c])*invstd[c]
//   dbeta[c] = sum dz,  dgamma[c] = sum dz*xhat
//   dy = gamma[c]*invstd[c]*(dz - dbeta[c]/M - xhat*dgamma[c]/M)
// Two passes over the channel: the sums (each thread over j = tid, tid+THREADS, ... in
// (n, hw) order, then a fixed-tree block reduction: deterministic), then dy.
// mask and dres are not touched when MASK = 0 / RES = 0 (they may be null).
// Generator constants: N C HW M (= N*HW) MASK (0|1|2) BF16 RES THREADS
// Launch: grid (C), block (THREADS).

// dout[i] through the ReLU's backward.
__device__ __forceinline__ float relu_backward(const float *__restrict__ dout, const void *__restrict__ mask, int i)
{
    float g = dout[i];
    if (MASK == 1 && !((static_cast<const unsigned *>(mask)[i / 32] >> (i % 32)) & 1u)) g = 0.0f;
    if (MASK == 2 && !(static_cast<const float *>(mask)[i] > 0.0f)) g = 0.0f;
    return g;
}

__device__ __forceinline__ float load_y(const void *__restrict__ y, int i)
{
    if (BF16) return bf16_to_float(static_cast<const unsigned short *>(y)[i]);
    return static_cast<const float *>(y)[i];
}

extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const float *__restrict__ dout, const void *__restrict__ mask, const void *__restrict__ y,
          const float *__restrict__ mean, const float *__restrict__ invstd, const float *__restrict__ gamma,
          float *__restrict__ dgamma, float *__restrict__ dbeta, float *__restrict__ dy,
          float *__restrict__ dres)
{
    __shared__ float scratch[2 * WARPS];
    const int c = blockIdx.x;
    const float mu = mean[c], is = invstd[c];
    float sum_dz = 0.0f, sum_dz_xhat = 0.0f;
    for (int j = threadIdx.x; j < M; j += THREADS) {
        const int n = j / HW, i = (n * C + c) * HW + (j - n * HW);
        const float dz = relu_backward(dout, mask, i);
        if (RES) dres[i] = dz;
        sum_dz += dz;
        sum_dz_xhat += dz * ((load_y(y, i) - mu) * is);
    }
    block_sum2(sum_dz, sum_dz_xhat, scratch);
    if (threadIdx.x == 0) {
        dbeta[c] = sum_dz;
        dgamma[c] = sum_dz_xhat;
    }
    const float scale = gamma[c] * is, mean_dz = sum_dz / (float)M, mean_dz_xhat = sum_dz_xhat / (float)M;
    for (int j = threadIdx.x; j < M; j += THREADS) {
        const int n = j / HW, i = (n * C + c) * HW + (j - n * HW);
        const float dz = relu_backward(dout, mask, i);
        const float xhat = (load_y(y, i) - mu) * is;
        dy[i] = scale * (dz - mean_dz - xhat * mean_dz_xhat);
    }
}
PP_KERNEL_EXPORT(${KERNEL})
