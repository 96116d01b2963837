// bn_backward.cu - backward of out = ReLU(BN(y) (+ residual)), channels-last, one block
// per group of CT channels.
//   dout, dy, dres: (N,HW,C) act_t (float, or bf16 bits if ACT_BF16), element (n,i,c) at
//     (n*HW + i)*C + c
//   y: (N,HW,C) float, or bf16 bits if BF16 (implied by ACT_BF16)
//   mean, invstd, gamma, dgamma, dbeta: (C) float
//   mask: MASK 1: (ceil(N*HW*C/32)) words, element at flat index e = bit e%32 of word e/32;
//         MASK 2: the ReLU output (N,HW,C) act_t (a plan that keeps it instead of a mask)
// Over the M = N*HW values of channel c (rows j = n*HW + i of the (M, C) matrices):
//   dz = dout, zeroed where the ReLU was inactive (MASK 1: bit clear; MASK 2: out <= 0)
//   dres = dz (if RES: the gradient of the residual add's output, for the shortcut)
//   xhat = (y - mean[c])*invstd[c]
//   dbeta[c] = sum dz,  dgamma[c] = sum dz*xhat
//   dy = gamma[c]*invstd[c]*(dz - dbeta[c]/M - xhat*dgamma[c]/M)
// ACT_BF16: every input element is widened to float, the arithmetic is the fp32 above, and
// dy and dres are rounded to bf16 once each when stored (dres = dz is exact: dout or 0).
// Indexing: block b covers channels b*CT .. b*CT + CT-1; thread t takes channel
// c = b*CT + t%CT and pixel group g = t/CT of PG = THREADS/CT, so a warp reads 32/CT rows of
// CT consecutive channels (coalesced). Two passes over the block's rows: the sums (each
// thread over rows j = g, g+PG, ... in order, then a fixed tree of log2(PG) levels over the
// groups of each channel, ops_common.cuh block_sum2_cols: deterministic), then dy over the
// same rows. Lanes past C (last block) touch nothing but take part in the barriers.
// mask and dres are not touched when MASK = 0 / RES = 0 (they may be null). relu_backward and
// load_y: bn_backward_common.cuh. Where M is large against C the generator uses the sliced
// pair bn_backward_sums + bn_backward_dx instead (more blocks).
// Generator constants: N C HW M (= N*HW) MASK (0|1|2) BF16 RES ACT_BF16 CT (a power of two
//   <= 32) PG (= THREADS/CT) THREADS
// Launch: grid (ceil(C/CT)), block (THREADS).
static_assert(PG * CT == THREADS, "PG*CT threads");

extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const act_t *__restrict__ dout, const void *__restrict__ mask, const void *__restrict__ y,
          const float *__restrict__ mean, const float *__restrict__ invstd, const float *__restrict__ gamma,
          float *__restrict__ dgamma, float *__restrict__ dbeta, act_t *__restrict__ dy,
          act_t *__restrict__ dres)
{
    __shared__ float scratch[2 * WARPS * CT];
    const int g = threadIdx.x / CT, c = blockIdx.x * CT + threadIdx.x % CT;
    const bool valid = c < C;
    const float mu = valid ? mean[c] : 0.0f, is = valid ? invstd[c] : 0.0f;
    float sum_dz = 0.0f, sum_dz_xhat = 0.0f;
    if (valid)
        for (int j = g; j < M; j += PG) {
            const int i = j * C + c;
            const float dz = relu_backward(dout, mask, i);
            if (RES) act_store(dres, i, dz);
            sum_dz += dz;
            sum_dz_xhat += dz * ((load_y(y, i) - mu) * is);
        }
    block_sum2_cols<CT>(sum_dz, sum_dz_xhat, scratch);
    if (!valid) return; // after the last barrier
    if (g == 0) {
        dbeta[c] = sum_dz;
        dgamma[c] = sum_dz_xhat;
    }
    const float scale = gamma[c] * is, mean_dz = sum_dz / (float)M, mean_dz_xhat = sum_dz_xhat / (float)M;
    for (int j = g; j < M; j += PG) {
        const int i = j * C + c;
        const float dz = relu_backward(dout, mask, i);
        const float xhat = (load_y(y, i) - mu) * is;
        act_store(dy, i, scale * (dz - mean_dz - xhat * mean_dz_xhat));
    }
}
PP_KERNEL_EXPORT(${KERNEL})
