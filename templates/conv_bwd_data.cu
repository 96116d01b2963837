// conv_bwd_data.cu - the input gradient of a convolution, exact, as an implicit GEMM (fp32
// FFMA, or TF32/BF16 tensor cores with f32 accumulation, per variant), one GEMM per stride
// phase.
//   dy: (N,K,P,Q)  wt: (K,C,R,S)  dx: (N,C,H,W)
// dx[n,c,h,w] = sum over k and the taps (r,t) with (h+PAD-r) and (w+PAD-t) divisible by
// STRIDE of wt[k,c,r,t] * dy[n,k,(h+PAD-r)/STRIDE,(w+PAD-t)/STRIDE] (in range, else 0).
// Stride phases: the input positions with (h+PAD) % STRIDE == ph and (w+PAD) % STRIDE == pw
// all use the same taps, r = ph + STRIDE*a and t = pw + STRIDE*b, so phase
// (ph,pw) = (blockIdx.z / STRIDE, blockIdx.z % STRIDE) is its own GEMM with no taps that
// are zero by divisibility (a stride-2 layer would otherwise spend 3/4 of its work on them):
//   rows m = (n,i,j) in [0,MX): h = H0 + STRIDE*i, w = W0 + STRIDE*j, where H0 and W0 are
//     the first positions of the phase; rows past the phase's own extent are skipped;
//   columns c in [0,C); reduction g = (k,a,b) in [0,GX), GX = K*RA*SA, with RA = ceil(R/STRIDE)
//     (taps past R in a phase with fewer are 0):
//   A[m][g] = dy[n,k,(h+PAD-r)/STRIDE,(w+PAD-t)/STRIDE] (0 outside), B[g][c] = wt[k,c,r,t].
// With STRIDE 1 there is one phase and this is the plain implicit GEMM over (k,r,t).
// Tiling as conv_fwd: a block computes BM x BN of (m,c); the thread owns tile rows
// tile_row(i) and columns tile_col(j) (with FFMA tiles consecutive threads write
// consecutive m).
// ACCUMULATE: dx += the result instead of dx = (x feeds two layers; the second adds its share).
// Generator constants: N C H W K R S STRIDE PAD P Q ACCUMULATE, HS = ceil(H/STRIDE),
//   WS = ceil(W/STRIDE), RA = ceil(R/STRIDE), SA = ceil(S/STRIDE), MX = N*HS*WS, GX = K*RA*SA,
//   and the tile's (gemm_tile.cuh or gemm_mma.cuh, gemm_pipeline.cuh):
//   BM BN BK TM TN THREADS TILE_PAD STAGES
// Launch: grid (ceil(MX/BM), ceil(C/BN), STRIDE*STRIDE).
// __launch_bounds__ names a minimum of 1 block per SM: with the thread count alone, NVRTC's
// ptxas capped a 512-thread variant at 40 registers and spilled (nvcc's did not).

// The block's stride phase: its taps' offsets (ph, pw) and first input row and column.
struct phase {
    int ph, pw, h0, w0, rows_h, rows_w;
};

__device__ __forceinline__ phase block_phase()
{
    phase p;
    p.ph = blockIdx.z / STRIDE;
    p.pw = blockIdx.z % STRIDE;
    p.h0 = ((p.ph - PAD) % STRIDE + STRIDE) % STRIDE; // first h with (h + PAD) % STRIDE == ph
    p.w0 = ((p.pw - PAD) % STRIDE + STRIDE) % STRIDE;
    p.rows_h = p.h0 < H ? (H - p.h0 + STRIDE - 1) / STRIDE : 0;
    p.rows_w = p.w0 < W ? (W - p.w0 + STRIDE - 1) / STRIDE : 0;
    return p;
}

// Fills stage tiles with k-step `step`: a (BK, BM) of dy gathered through the transposed
// im2col view of the block's phase, b (BK, BN) of wt.
__device__ __forceinline__ void load_tiles(float (&a_tile)[BK][BM + TILE_PAD], float (&b_tile)[BK][BN + TILE_PAD],
                                           int step, const phase &p, const float *__restrict__ dy,
                                           const float *__restrict__ wt)
{
    const int m0 = blockIdx.x * BM, c0 = blockIdx.y * BN, g0 = step * BK;
    for (int e = threadIdx.x; e < BK * BM; e += THREADS) {
        const int gi = e / BM, mi = e % BM;
        const int m = m0 + mi, g = g0 + gi;
        bool valid = false;
        const float *src = dy;
        if (m < MX && g < GX) {
            const int n = m / (HS * WS), ij = m % (HS * WS), i = ij / WS, j = ij % WS;
            const int k = g / (RA * SA), ab = g % (RA * SA);
            const int r = p.ph + STRIDE * (ab / SA), t = p.pw + STRIDE * (ab % SA);
            const int ty = p.h0 + STRIDE * i + PAD - r, tx = p.w0 + STRIDE * j + PAD - t; // divisible by STRIDE
            if (i < p.rows_h && j < p.rows_w && r < R && t < S && ty >= 0 && tx >= 0) {
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
        const int k = g / (RA * SA), ab = g % (RA * SA);
        const int r = p.ph + STRIDE * (ab / SA), t = p.pw + STRIDE * (ab % SA);
        const bool valid = g < GX && c < C && r < R && t < S;
        tile_load(&b_tile[gi][ci], valid ? wt + ((k * C + c) * R + r) * S + t : wt, valid);
    }
}

extern "C" __global__ void __launch_bounds__(THREADS, 1)
${KERNEL}(const float *__restrict__ dy, const float *__restrict__ wt, float *__restrict__ dx)
{
    __shared__ float a_tile[STAGES][BK][BM + TILE_PAD];
    __shared__ float b_tile[STAGES][BK][BN + TILE_PAD];
    const int m0 = blockIdx.x * BM;
    const int c0 = blockIdx.y * BN;
    const phase p = block_phase();
    constexpr int steps = (GX + BK - 1) / BK;

    float acc[TM][TN];
    tile_zero(acc);

    if (STAGES > 1) {
        load_tiles(a_tile[0], b_tile[0], 0, p, dy, wt);
        pp_cp_async_commit();
    }
    for (int step = 0; step < steps; ++step) {
        if (STAGES == 1) load_tiles(a_tile[0], b_tile[0], step, p, dy, wt);
        else if (step + 1 < steps)
            load_tiles(a_tile[(step + 1) % STAGES], b_tile[(step + 1) % STAGES], step + 1, p, dy, wt);
        tile_pipeline_wait();
        __syncthreads();
        tile_multiply_accumulate(a_tile[step % STAGES], b_tile[step % STAGES], acc);
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + tile_row(i);
        if (m >= MX) continue;
        const int n = m / (HS * WS), ij = m % (HS * WS), pi = ij / WS, pj = ij % WS;
        if (pi >= p.rows_h || pj >= p.rows_w) continue;
        const int hw = (p.h0 + STRIDE * pi) * W + p.w0 + STRIDE * pj;
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
