// conv_fwd.cu - convolution forward as an implicit GEMM (fp32 FFMA, or TF32/BF16 tensor
// cores with f32 accumulation, per variant), fused with the
// pool-save of its input (DESIGN.md section 1).
//   x: (N,C,H,W)  wt: (K,C,R,S)  y: (N,K,P,Q)  xp: (N,C,HP,WP)
// GEMM view: y[n,k,oy,ox] = sum_g A[m][g] * B[g][k] with m = (n,oy,ox) in [0,M) and
//   g = (c,r,t) in [0,G): A[m][g] = x[n,c,STRIDE*oy+r-PAD,STRIDE*ox+t-PAD] (0 outside),
//   B[g][k] = wt[k,c,r,t] = wt[k*G+g].
// A block computes a BM x BN tile of (m,k); thread `tid` owns the tile rows tile_row(i)
// and columns tile_col(j) (gemm_tile.cuh with ROW_FASTEST: consecutive threads write
// consecutive m, which are consecutive addresses of y; or gemm_mma.cuh's fragments).
// Pool-save: the blocks of grid column blockIdx.y == 0 also write xp for their share
// [POOL_PER_BLOCK*blockIdx.x, +POOL_PER_BLOCK) of the N*HP*WP pooled pixels, all
// channels. Shares are proportional to the blocks' rows of m, so a block pools roughly the
// region of x its GEMM tile has just read (likely still in L2; not exactly the same
// elements, since windows and receptive fields do not align). Windows are f x f at stride f, cut at the border;
// avg divides by the number of elements that exist. POOL_F == 1 saves x itself: no xp.
// STATS: also write BN partial statistics of y per block (see the epilogue):
//   stats: (gridDim.x*STAT_PARTS, K, 3) = (count, mean, M2), merged by bn_stats_merge.cu.
// Generator constants: N C H W K R S STRIDE PAD P Q M G HP WP POOL_F POOL_MAX STATS
//   POOL_PER_BLOCK, and the tile's (gemm_tile.cuh or gemm_mma.cuh, gemm_pipeline.cuh):
//   BM BN BK TM TN THREADS TILE_PAD STAGES
// __launch_bounds__ names a minimum of 1 block per SM: with the thread count alone, NVRTC's
// ptxas capped a 512-thread variant at 40 registers and spilled (nvcc's did not).

// Fills stage tiles with k-step `step`: a (BK, BM) of x gathered through the im2col view,
// b (BK, BN) of wt. Rows of a are consecutive m, so consecutive threads read along ox.
__device__ __forceinline__ void load_tiles(float (&a_tile)[BK][BM + TILE_PAD], float (&b_tile)[BK][BN + TILE_PAD],
                                           int step, const float *__restrict__ x, const float *__restrict__ wt)
{
    const int m0 = blockIdx.x * BM, k0 = blockIdx.y * BN, g0 = step * BK;
    for (int e = threadIdx.x; e < BK * BM; e += THREADS) {
        const int gi = e / BM, mi = e % BM;
        const int m = m0 + mi, g = g0 + gi;
        bool valid = false;
        const float *src = x;
        if (m < M && g < G) {
            const int n = m / (P * Q), oyx = m % (P * Q);
            const int c = g / (R * S), rt = g % (R * S);
            const int ih = (oyx / Q) * STRIDE + rt / S - PAD;
            const int iw = (oyx % Q) * STRIDE + rt % S - PAD;
            valid = ih >= 0 && ih < H && iw >= 0 && iw < W;
            if (valid) src = x + ((n * C + c) * H + ih) * W + iw;
        }
        tile_load(&a_tile[gi][mi], src, valid);
    }
    for (int e = threadIdx.x; e < BK * BN; e += THREADS) {
        const int gi = e % BK, ki = e / BK;
        const int g = g0 + gi, k = k0 + ki;
        const bool valid = g < G && k < K;
        tile_load(&b_tile[gi][ki], valid ? wt + k * G + g : wt, valid);
    }
}

static_assert(!STATS || MATH > 0 || (ROW_FASTEST && BM / TM <= 32),
              "BN partials need the column segments of gemm_tile.cuh or gemm_mma.cuh");

extern "C" __global__ void __launch_bounds__(THREADS, 1)
${KERNEL}(const float *__restrict__ x, const float *__restrict__ wt, float *__restrict__ y,
          float *__restrict__ xp, float *__restrict__ stats)
{
    __shared__ float a_tile[STAGES][BK][BM + TILE_PAD];
    __shared__ float b_tile[STAGES][BK][BN + TILE_PAD];
    const int tid = threadIdx.x;
    const int m0 = blockIdx.x * BM;
    const int k0 = blockIdx.y * BN;
    constexpr int steps = (G + BK - 1) / BK;

    float acc[TM][TN];
    tile_zero(acc);

    if (STAGES > 1) {
        load_tiles(a_tile[0], b_tile[0], 0, x, wt);
        pp_cp_async_commit();
    }
    for (int step = 0; step < steps; ++step) {
        if (STAGES == 1) load_tiles(a_tile[0], b_tile[0], step, x, wt);
        else if (step + 1 < steps) load_tiles(a_tile[(step + 1) % STAGES], b_tile[(step + 1) % STAGES], step + 1, x, wt);
        tile_pipeline_wait();
        __syncthreads();
        tile_multiply_accumulate(a_tile[step % STAGES], b_tile[step % STAGES], acc);
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + tile_row(i);
        if (m >= M) continue;
        const int n = m / (P * Q), oyx = m % (P * Q);
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int k = k0 + tile_col(j);
            if (k < K) y[(n * K + k) * (P * Q) + oyx] = acc[i][j];
        }
    }

    // BN partials: (count, mean, M2) of each output channel over this block's valid rows of
    // m, per STAT_PARTS part (tile header), centred on their own mean (two passes over the
    // registers), so bn_stats_merge needs no second read of y. Every thread takes part in
    // the warp sums, whatever its rows and columns.
    if (STATS) {
        float count = 0.0f;
#pragma unroll
        for (int i = 0; i < TM; ++i) count += (m0 + tile_row(i) < M) ? 1.0f : 0.0f;
        count = tile_column_sum(count);
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            float sum = 0.0f;
#pragma unroll
            for (int i = 0; i < TM; ++i)
                if (m0 + tile_row(i) < M) sum += acc[i][j];
            sum = tile_column_sum(sum);
            const float mean = count > 0.0f ? sum / count : 0.0f;
            float m2 = 0.0f;
#pragma unroll
            for (int i = 0; i < TM; ++i)
                if (m0 + tile_row(i) < M) m2 += (acc[i][j] - mean) * (acc[i][j] - mean);
            m2 = tile_column_sum(m2);
            const int k = k0 + tile_col(j);
            if (tile_stat_writer() && k < K) {
                float *part = stats + ((blockIdx.x * STAT_PARTS + tile_stat_part()) * K + k) * 3;
                part[0] = count;
                part[1] = mean;
                part[2] = m2;
            }
        }
    }

    if (POOL_F > 1 && blockIdx.y == 0) {
        const int first = blockIdx.x * POOL_PER_BLOCK;
        const int count = pp_min(first + POOL_PER_BLOCK, N * HP * WP) - first;
        for (int e = tid; e < count * C; e += THREADS) {
            const int pix = first + e % count;
            const int c = e / count;
            const int n = pix / (HP * WP), ij = pix % (HP * WP);
            const int h0 = (ij / WP) * POOL_F, w0 = (ij % WP) * POOL_F;
            const int h1 = pp_min(h0 + POOL_F, H), w1 = pp_min(w0 + POOL_F, W);
            const float *plane = x + (n * C + c) * (H * W);
            float v = plane[h0 * W + w0];
            if (POOL_MAX) {
                for (int h = h0; h < h1; ++h)
                    for (int w = w0; w < w1; ++w) v = fmaxf(v, plane[h * W + w]);
            } else {
                v = 0.0f;
                for (int h = h0; h < h1; ++h)
                    for (int w = w0; w < w1; ++w) v += plane[h * W + w];
                v = v / (float)((h1 - h0) * (w1 - w0));
            }
            xp[((n * C + c) * HP) * WP + ij] = v;
        }
    }
}
PP_KERNEL_EXPORT(${KERNEL})
