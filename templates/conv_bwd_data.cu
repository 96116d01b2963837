// conv_bwd_data.cu - the input gradient of a convolution, exact, as an implicit GEMM (fp32
// FFMA, or TF32/BF16 tensor cores with f32 accumulation, per variant).
//   dy: (N,K,P,Q)  wt: (K,C,R,S)  dx: (N,C,H,W)
// GEMM view: dx[n,c,h,w] = sum_g A[m][g] * B[g][c] with m = (n,h,w) in [0,MX) and
//   g = (k,r,t) in [0,GX): A[m][g] = dy[n,k,(h+PAD-r)/STRIDE,(w+PAD-t)/STRIDE] where both
//   divisions are exact and in range (0 otherwise), B[g][c] = wt[k,c,r,t].
// Tiling as conv_fwd: a block computes BM x BN of (m,c); the thread owns tile rows
// tile_row(i) and columns tile_col(j) (with FFMA tiles consecutive threads write
// consecutive m).
// ACCUMULATE: dx += the result instead of dx = (x feeds two layers; the second adds its share).
// Generator constants: N C H W K R S STRIDE PAD P Q MX GX ACCUMULATE, and the tile's
//   (gemm_tile.cuh or gemm_mma.cuh, gemm_pipeline.cuh): BM BN BK TM TN THREADS TILE_PAD STAGES
// __launch_bounds__ names a minimum of 1 block per SM: with the thread count alone, NVRTC's
// ptxas capped a 512-thread variant at 40 registers and spilled (nvcc's did not).

// Fills stage tiles with k-step `step`: a (BK, BM) of dy gathered through the transposed
// im2col view, b (BK, BN) of wt.
__device__ __forceinline__ void load_tiles(float (&a_tile)[BK][BM + TILE_PAD], float (&b_tile)[BK][BN + TILE_PAD],
                                           int step, const float *__restrict__ dy, const float *__restrict__ wt)
{
    const int m0 = blockIdx.x * BM, c0 = blockIdx.y * BN, g0 = step * BK;
    for (int e = threadIdx.x; e < BK * BM; e += THREADS) {
        const int gi = e / BM, mi = e % BM;
        const int m = m0 + mi, g = g0 + gi;
        bool valid = false;
        const float *src = dy;
        if (m < MX && g < GX) {
            const int n = m / (H * W), hw = m % (H * W);
            const int k = g / (R * S), rt = g % (R * S);
            const int ty = hw / W + PAD - rt / S, tx = hw % W + PAD - rt % S;
            if (ty >= 0 && tx >= 0 && ty % STRIDE == 0 && tx % STRIDE == 0) {
                const int oy = ty / STRIDE, ox = tx / STRIDE;
                valid = oy < P && ox < Q;
                if (valid) src = dy + ((n * K + k) * P + oy) * Q + ox;
            }
        }
        tile_load(&a_tile[gi][mi], src, valid);
    }
    for (int e = threadIdx.x; e < BK * BN; e += THREADS) {
        const int gi = e % BK, ci = e / BK;
        const int g = g0 + gi, c = c0 + ci;
        const bool valid = g < GX && c < C;
        const int k = g / (R * S), rt = g % (R * S);
        tile_load(&b_tile[gi][ci], valid ? wt + (k * C + c) * (R * S) + rt : wt, valid);
    }
}

extern "C" __global__ void __launch_bounds__(THREADS, 1)
${KERNEL}(const float *__restrict__ dy, const float *__restrict__ wt, float *__restrict__ dx)
{
    __shared__ float a_tile[STAGES][BK][BM + TILE_PAD];
    __shared__ float b_tile[STAGES][BK][BN + TILE_PAD];
    const int m0 = blockIdx.x * BM;
    const int c0 = blockIdx.y * BN;
    constexpr int steps = (GX + BK - 1) / BK;

    float acc[TM][TN];
    tile_zero(acc);

    if (STAGES > 1) {
        load_tiles(a_tile[0], b_tile[0], 0, dy, wt);
        pp_cp_async_commit();
    }
    for (int step = 0; step < steps; ++step) {
        if (STAGES == 1) load_tiles(a_tile[0], b_tile[0], step, dy, wt);
        else if (step + 1 < steps) load_tiles(a_tile[(step + 1) % STAGES], b_tile[(step + 1) % STAGES], step + 1, dy, wt);
        tile_pipeline_wait();
        __syncthreads();
        tile_multiply_accumulate(a_tile[step % STAGES], b_tile[step % STAGES], acc);
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + tile_row(i);
        if (m >= MX) continue;
        const int n = m / (H * W), hw = m % (H * W);
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int c = c0 + tile_col(j);
            if (c >= C) continue;
            const int at = (n * C + c) * (H * W) + hw;
            dx[at] = ACCUMULATE ? dx[at] + acc[i][j] : acc[i][j];
        }
    }
}
PP_KERNEL_EXPORT(${KERNEL})
