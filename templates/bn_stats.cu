// bn_stats.cu - batch-norm statistics in training mode (PyTorch train-mode semantics),
// channels-last, one block per group of CT channels.
//   y: (N,HW,C) act_t (float, or bf16 bits if ACT_BF16), element (n,i,c) at (n*HW + i)*C + c
//   mean, invstd, running_mean, running_var: (C) float
// Over the M = N*HW values of channel c (rows j = n*HW + i of the (M, C) matrix y):
//   mean[c] = sum y / M,  var = sum (y - mean)^2 / M (biased),  invstd[c] = 1/sqrt(var + EPS)
//   running_mean[c] = (1-MOMENTUM)*running_mean[c] + MOMENTUM*mean
//   running_var[c]  = (1-MOMENTUM)*running_var[c]  + MOMENTUM*var*M/(M-1)  (unbiased)
// Numerics: the values are shifted by the channel's first value K = y[c] (element (0,0,c);
// exact or nearly so where values are close, and it makes the data's mean small against
// its spread, so a large common offset costs no accuracy: fp32 Welford on the raw values
// lost ~1e-4 of the variance at offset 1000 and spread 1, shifted it keeps ~1e-7).
// Indexing: block b covers channels b*CT .. b*CT + CT-1; thread t takes channel
// c = b*CT + t%CT and pixel group g = t/CT of PG = THREADS/CT, so a warp reads 32/CT rows of
// CT consecutive channels (coalesced). Each thread runs Welford's update over its shifted
// values at rows j = g, g+PG, g+2*PG, ... in order, then the block merges the PG groups'
// (count, mean, M2) of each channel with Chan's formula in a fixed tree of log2(PG) levels
// (ops_common.cuh block_welford_cols): no sum-of-squares cancellation, and the result does
// not depend on the thread schedule. Lanes past C (last block) run empty and store nothing.
//   mean = K + shifted mean,  var = M2 / M
// Where M is large against C the generator uses the sliced pair bn_stats_part +
// bn_stats_merge (SHIFT 1) instead: the same statistics from more blocks.
// Under ACT_BF16 the values are the bf16 elements widened to float (exact); everything after
// the load is the same fp32 arithmetic.
// Generator constants: N C HW M (= N*HW, >= 2) CT (a power of two <= 32) PG (= THREADS/CT)
//   MOMENTUM EPS ACT_BF16 THREADS
// Launch: grid (ceil(C/CT)), block (THREADS).
static_assert(PG * CT == THREADS, "PG*CT threads");
using act_t = pp_select_t<ACT_BF16 == 1, unsigned short, float>;

extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const act_t *__restrict__ y, float *__restrict__ mean, float *__restrict__ invstd,
          float *__restrict__ running_mean, float *__restrict__ running_var)
{
    __shared__ welford scratch[WARPS * CT];
    const int g = threadIdx.x / CT, c = blockIdx.x * CT + threadIdx.x % CT;
    welford w = { 0.0f, 0.0f, 0.0f };
    float shift = 0.0f;
    if (c < C) {
        shift = act_load(y, c);
        for (int j = g; j < M; j += PG) welford_add(w, act_load(y, j * C + c) - shift);
    }
    w = block_welford_cols<CT>(w, scratch);
    if (g == 0 && c < C)
        bn_store_stats(c, shift + w.mean, w.m2 / (float)M, (float)M, EPS, MOMENTUM, mean, invstd, running_mean,
                       running_var);
}
PP_KERNEL_EXPORT(${KERNEL})
