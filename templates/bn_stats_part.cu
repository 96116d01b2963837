// bn_stats_part.cu - batch-norm statistics in training mode, channels-last, sliced form,
// first pass: each block computes the (count, mean, M2) of one row slice of CT channels;
// bn_stats_merge (SHIFT 1) merges the slices and stores mean, invstd and the running
// statistics exactly as bn_stats.cu defines them. The generator uses this pair instead of
// bn_stats (one block per CT channels, each walking all M rows) where M is large against
// C, so the grid has enough blocks to fill the GPU (generator/poolprop/ops.lua bn_slices).
//   y: (N,HW,C) act_t (float, or bf16 bits if ACT_BF16), read as the (M, C) matrix, M = N*HW
//     (row j = n*HW + i); under ACT_BF16 its elements are widened to float (exact), then
//     everything is bn_stats.cu's fp32 arithmetic
//   partials: (SLICES,C,3) = (count, mean - K[c], M2) of channel c over the rows of slice s,
//     at (s*C + c)*3, then (C) shifts K[c] at SLICES*C*3 + c; slice s holds rows
//     [first_s, first_{s+1}) with first_s = floor(s*M/SLICES): ceil(M/SLICES) or
//     floor(M/SLICES) rows, never none (SLICES <= M)
// Numerics as bn_stats: every value is shifted by K[c] = y[c], the channel's first value
// (element (0,0,c)), the same in every slice. The slices' means are then small against the
// channel's spread and keep their low bits in fp32, so Chan's merge of the slices keeps
// bn_stats' accuracy under a large common offset; bn_stats_merge adds K back after merging.
// Indexing: block (x, s) covers channels x*CT .. x*CT + CT-1 and slice s; thread t takes
// channel c = x*CT + t%CT and pixel group g = t/CT of PG = THREADS/CT (a warp reads 32/CT rows
// of CT consecutive channels: coalesced). Each thread runs Welford's update over its shifted
// values at rows first_s + g, first_s + g + PG, ... of the slice in order, then the block merges
// the PG groups of each channel with Chan's formula in a fixed tree (ops_common.cuh
// block_welford_cols): a slice's partial does not depend on the thread schedule.
// Block (x, 0) also stores the shifts. Lanes past C (last channel block) read nothing and
// store nothing but take part in the barriers.
// Generator constants: N C HW M (= N*HW, >= 2) SLICES (1..M)
//   CT (a power of two <= 32) PG (= THREADS/CT) ACT_BF16 THREADS
// Launch: grid (ceil(C/CT), SLICES), block (THREADS).
static_assert(PG * CT == THREADS, "PG*CT threads");
static_assert(SLICES >= 1 && SLICES <= M, "every slice holds a row");
using act_t = pp_select_t<ACT_BF16 == 1, unsigned short, float>;

extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const act_t *__restrict__ y, float *__restrict__ partials)
{
    __shared__ welford scratch[WARPS * CT];
    const int g = threadIdx.x / CT, c = blockIdx.x * CT + threadIdx.x % CT, s = blockIdx.y;
    const int first = (int)((long long)s * M / SLICES), end = (int)((long long)(s + 1) * M / SLICES);
    welford w = { 0.0f, 0.0f, 0.0f };
    float shift = 0.0f;
    if (c < C) {
        shift = act_load(y, c);
        for (int j = first + g; j < end; j += PG) welford_add(w, act_load(y, j * C + c) - shift);
    }
    w = block_welford_cols<CT>(w, scratch);
    if (g == 0 && c < C) {
        float *q = partials + (s * C + c) * 3;
        q[0] = w.n;
        q[1] = w.mean;
        q[2] = w.m2;
        if (s == 0) partials[SLICES * C * 3 + c] = shift;
    }
}
PP_KERNEL_EXPORT(${KERNEL})
