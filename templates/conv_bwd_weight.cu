// conv_bwd_weight.cu - the weight gradient of a convolution from the pooled saved input,
// un-pooled on the fly (DESIGN.md section 1), as an implicit GEMM (fp32 FFMA, or TF32/BF16
// tensor cores with f32 accumulation, per variant).
//   dy: (N,K,P,Q)  xs: (N,C,HP,WP) (the saved input: xp, or x itself when POOL_F == 1)
//   out: (SPLITS,K,C,R,S) partial sums, or dw (K,C,R,S) when SPLITS == 1
// GEMM view: dw[k][g] = sum_m A[k][m] * B[m][g] with g = (c,r,t) in [0,G) and
//   m = (n,oy,ox) in [0,M): A[k][m] = dy[n,k,oy,ox], B[m][g] = xu[n,c,h,w] with
//   h = STRIDE*oy+r-PAD, w = STRIDE*ox+t-PAD, 0 outside [0,H) x [0,W), and the un-pooled
//   xu[n,c,h,w] = xs[n,c,h/POOL_F,w/POOL_F]. xu is never written to memory.
// The reduction over m is split over blockIdx.z into SPLITS ranges of M_PER_SPLIT (a
// multiple of BK); each split writes its own partial sums, which splitk_reduce adds in a
// fixed order, so results are deterministic.
// A block computes BM x BN of (k,g); the thread owns tile rows tile_row(i) and columns
// tile_col(j) (FFMA tiles run columns fastest: consecutive threads write consecutive g).
// Generator constants: N C H W K R S STRIDE PAD P Q M G HP WP POOL_F SPLITS M_PER_SPLIT,
//   and the tile's (gemm_tile.cuh or gemm_mma.cuh, gemm_pipeline.cuh):
//   BM BN BK TM TN THREADS TILE_PAD STAGES
// __launch_bounds__ names a minimum of 1 block per SM: with the thread count alone, NVRTC's
// ptxas capped a 512-thread variant at 40 registers and spilled (nvcc's did not).

// Fills stage tiles with the k-step at mb: a (BK, BM) of dy, b (BK, BN) of xu, which is
// read from xs through the un-pooling index (never materialised).
__device__ __forceinline__ void load_tiles(float (&a_tile)[BK][BM + TILE_PAD], float (&b_tile)[BK][BN + TILE_PAD],
                                           int mb, int m_end, const float *__restrict__ dy,
                                           const float *__restrict__ xs)
{
    const int k0 = blockIdx.x * BM, g_base = blockIdx.y * BN;
    for (int e = threadIdx.x; e < BK * BM; e += THREADS) {
        const int mi = e % BK, ki = e / BK;
        const int m = mb + mi, k = k0 + ki;
        const bool valid = m < m_end && k < K;
        const int n = m / (P * Q), oyx = m % (P * Q);
        tile_load(&a_tile[mi][ki], valid ? dy + (n * K + k) * (P * Q) + oyx : dy, valid);
    }
    for (int e = threadIdx.x; e < BK * BN; e += THREADS) {
        const int mi = e % BK, gi = e / BK;
        const int m = mb + mi, g = g_base + gi;
        bool valid = false;
        const float *src = xs;
        if (m < m_end && g < G) {
            const int n = m / (P * Q), oyx = m % (P * Q);
            const int c = g / (R * S), rt = g % (R * S);
            const int h = (oyx / Q) * STRIDE + rt / S - PAD;
            const int w = (oyx % Q) * STRIDE + rt % S - PAD;
            valid = h >= 0 && h < H && w >= 0 && w < W;
            if (valid) src = xs + ((n * C + c) * HP + h / POOL_F) * WP + w / POOL_F;
        }
        tile_load(&b_tile[mi][gi], src, valid);
    }
}

extern "C" __global__ void __launch_bounds__(THREADS, 1)
${KERNEL}(const float *__restrict__ dy, const float *__restrict__ xs, float *__restrict__ out)
{
    __shared__ float a_tile[STAGES][BK][BM + TILE_PAD];
    __shared__ float b_tile[STAGES][BK][BN + TILE_PAD];
    const int k0 = blockIdx.x * BM;
    const int g_base = blockIdx.y * BN;
    const int m_begin = blockIdx.z * M_PER_SPLIT;
    const int m_end = pp_min(m_begin + M_PER_SPLIT, M);
    const int steps = (m_end - m_begin + BK - 1) / BK;

    float acc[TM][TN];
    tile_zero(acc);

    if (STAGES > 1) {
        load_tiles(a_tile[0], b_tile[0], m_begin, m_end, dy, xs);
        pp_cp_async_commit();
    }
    for (int step = 0; step < steps; ++step) {
        const int mb = m_begin + step * BK;
        if (STAGES == 1) load_tiles(a_tile[0], b_tile[0], mb, m_end, dy, xs);
        else if (step + 1 < steps)
            load_tiles(a_tile[(step + 1) % STAGES], b_tile[(step + 1) % STAGES], mb + BK, m_end, dy, xs);
        tile_pipeline_wait();
        __syncthreads();
        tile_multiply_accumulate(a_tile[step % STAGES], b_tile[step % STAGES], acc);
        __syncthreads();
    }

    float *dst = out + blockIdx.z * (K * G);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int k = k0 + tile_row(i);
        if (k >= K) continue;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int g = g_base + tile_col(j);
            if (g < G) dst[k * G + g] = acc[i][j];
        }
    }
}
PP_KERNEL_EXPORT(${KERNEL})
