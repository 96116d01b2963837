// bn_backward_sums.cu - backward of out = ReLU(BN(y) (+ residual)), channels-last, sliced
// form, first pass: each block sums over one row slice of CT channels; bn_backward_dx
// merges the slices' sums and computes dy. The generator uses this pair instead of
// bn_backward (one block per CT channels, each walking all M rows) where M is large against
// C, so the grid has enough blocks to fill the GPU (generator/poolprop/ops.lua bn_slices).
//   dout, y, mask: as bn_backward.cu, read as (M, C) matrices, M = N*HW
//   mean, invstd: (C)
//   partials: (SLICES,C,2) = (sum dz, sum dz*xhat) of channel c over the rows of slice s,
//     at (s*C + c)*2; slice s holds rows [first_s, first_{s+1}) with first_s =
//     floor(s*M/SLICES): ceil(M/SLICES) or floor(M/SLICES) rows, never none (SLICES <= M)
// with dz = dout zeroed where the ReLU was inactive, xhat = (y - mean[c])*invstd[c]
// (bn_backward_common.cuh).
// Indexing: block (x, s) covers channels x*CT .. x*CT + CT-1 and slice s; thread t takes
// channel c = x*CT + t%CT and pixel group g = t/CT of PG = THREADS/CT (a warp reads 32/CT rows
// of CT consecutive channels: coalesced). Each thread sums rows first_s + g, first_s + g + PG, ...
// of the slice in order, then the block adds the PG groups of each channel in a fixed tree
// (ops_common.cuh block_sum2_cols): a slice's sums do not depend on the thread schedule,
// and the slices are merged in a fixed order by bn_backward_dx. Lanes past C (last
// channel block) read nothing and store nothing but take part in the barriers.
// mask is not touched when MASK = 0 (it may be null).
// ACT_BF16: dout (and the MASK 2 ReLU output) are bf16 bits and y too (BF16), widened to
// float: the sums are the same fp32 arithmetic.
// Generator constants: N C HW M (= N*HW) SLICES (1..M)
//   MASK (0|1|2) BF16 ACT_BF16 CT (a power of two <= 32) PG (= THREADS/CT) THREADS
// Launch: grid (ceil(C/CT), SLICES), block (THREADS).
static_assert(PG * CT == THREADS, "PG*CT threads");
static_assert(SLICES >= 1 && SLICES <= M, "every slice holds a row");

extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const act_t *__restrict__ dout, const void *__restrict__ mask, const void *__restrict__ y,
          const float *__restrict__ mean, const float *__restrict__ invstd, float *__restrict__ partials)
{
    __shared__ float scratch[2 * WARPS * CT];
    const int g = threadIdx.x / CT, c = blockIdx.x * CT + threadIdx.x % CT, s = blockIdx.y;
    const bool valid = c < C;
    const int first = (int)((long long)s * M / SLICES), end = (int)((long long)(s + 1) * M / SLICES);
    float sum_dz = 0.0f, sum_dz_xhat = 0.0f;
    if (valid) {
        const float mu = mean[c], is = invstd[c];
        for (int j = first + g; j < end; j += PG) {
            const int i = j * C + c;
            const float dz = relu_backward(dout, mask, i);
            sum_dz += dz;
            sum_dz_xhat += dz * ((load_y(y, i) - mu) * is);
        }
    }
    block_sum2_cols<CT>(sum_dz, sum_dz_xhat, scratch);
    if (valid && g == 0) {
        partials[(s * C + c) * 2] = sum_dz;
        partials[(s * C + c) * 2 + 1] = sum_dz_xhat;
    }
}
PP_KERNEL_EXPORT(${KERNEL})
