// bn_backward_dx.cu - backward of out = ReLU(BN(y) (+ residual)), channels-last, sliced
// form, second pass: merges the per-slice sums bn_backward_sums left, writes dgamma and
// dbeta, and computes dy (and dres) over one row slice of CT channels per block.
//   dout, dy, dres: (M, C) act_t (float, or bf16 bits if ACT_BF16) with M = N*HW (NHWC
//     (N,HW,C)), y and mask as bn_backward.cu
//   mean, invstd, gamma, dgamma, dbeta: (C) float
//   partials: (SLICES,C,2) float, from bn_backward_sums with the same N C HW MASK BF16
//     ACT_BF16 SLICES
// Over the M values of channel c:
//   dz = dout, zeroed where the ReLU was inactive;  dres = dz (if RES)
//   dbeta[c] = sum dz,  dgamma[c] = sum dz*xhat  (the partials' sums over the slices)
//   dy = gamma[c]*invstd[c]*(dz - dbeta[c]/MG - xhat*dgamma[c]/MG)
// MG = M*WORLD; WORLD > 1 under synchronised BN: the partials then hold sums over the
// batches of WORLD ranks (the runtime adds the ranks' partials before the launch), and
// dgamma, dbeta are those sums / WORLD (every rank's dout is the gradient of its own mean
// loss, WORLD times the global loss's, and the ranks' gradients are then averaged).
// ACT_BF16: as bn_backward.cu (fp32 arithmetic on widened inputs, dy and dres rounded to
// bf16 once when stored).
// Indexing as bn_backward_sums: block (x, s), channel c = x*CT + t%CT, pixel group g = t/CT.
// Merge: thread (g, c) adds the partials of slices g, g+PG, ... in order, then the block
// adds the PG groups in block_sum2_cols' fixed tree. Every block of channel c runs the same
// additions in the same order, so all of them (and the dgamma/dbeta that block (x, 0)
// stores) hold the same bits, whatever the block or thread schedule. Then dy (and dres) over
// rows first_s + g, first_s + g + PG, ... of the slice: each element is written by one thread.
// Lanes past C touch nothing but take part in the barriers. mask and dres are not touched
// when MASK = 0 / RES = 0 (they may be null).
// Generator constants: N C HW M SLICES (as bn_backward_sums) MASK (0|1|2) BF16 RES ACT_BF16
//   CT (a power of two <= 32) PG (= THREADS/CT) MG WORLD THREADS
// Launch: grid (ceil(C/CT), SLICES), block (THREADS).
static_assert(PG * CT == THREADS, "PG*CT threads");
static_assert(SLICES >= 1 && SLICES <= M, "every slice holds a row");

extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const act_t *__restrict__ dout, const void *__restrict__ mask, const void *__restrict__ y,
          const float *__restrict__ mean, const float *__restrict__ invstd, const float *__restrict__ gamma,
          const float *__restrict__ partials, float *__restrict__ dgamma, float *__restrict__ dbeta,
          act_t *__restrict__ dy, act_t *__restrict__ dres)
{
    __shared__ float scratch[2 * WARPS * CT];
    const int g = threadIdx.x / CT, c = blockIdx.x * CT + threadIdx.x % CT, s = blockIdx.y;
    const bool valid = c < C;
    float sum_dz = 0.0f, sum_dz_xhat = 0.0f;
    if (valid)
        for (int p = g; p < SLICES; p += PG) {
            sum_dz += partials[(p * C + c) * 2];
            sum_dz_xhat += partials[(p * C + c) * 2 + 1];
        }
    block_sum2_cols<CT>(sum_dz, sum_dz_xhat, scratch);
    if (!valid) return; // after the last barrier
    if (s == 0 && g == 0) {
        // WORLD > 1: the sums are the global batch's, which every rank holds; each keeps
        // 1/WORLD of them, so that the gradient average over the ranks is the sum.
        dbeta[c] = WORLD > 1 ? sum_dz / (float)WORLD : sum_dz;
        dgamma[c] = WORLD > 1 ? sum_dz_xhat / (float)WORLD : sum_dz_xhat;
    }
    const float mu = mean[c], is = invstd[c];
    const float scale = gamma[c] * is, mean_dz = sum_dz / (float)MG, mean_dz_xhat = sum_dz_xhat / (float)MG;
    const int first = (int)((long long)s * M / SLICES), end = (int)((long long)(s + 1) * M / SLICES);
    for (int j = first + g; j < end; j += PG) {
        const int i = j * C + c;
        const float dz = relu_backward(dout, mask, i);
        if (RES) act_store(dres, i, dz);
        const float xhat = (load_y(y, i) - mu) * is;
        act_store(dy, i, scale * (dz - mean_dz - xhat * mean_dz_xhat));
    }
}
PP_KERNEL_EXPORT(${KERNEL})
