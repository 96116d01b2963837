// conv_bwd_data.cu - the input gradient of a convolution, exact, as an implicit GEMM in
// fp32 (FFMA).
//   dy: (N,K,P,Q)  wt: (K,C,R,S)  dx: (N,C,H,W)
// GEMM view: dx[n,c,h,w] = sum_g A[m][g] * B[g][c] with m = (n,h,w) in [0,MX) and
//   g = (k,r,t) in [0,GX): A[m][g] = dy[n,k,(h+PAD-r)/STRIDE,(w+PAD-t)/STRIDE] where both
//   divisions are exact and in range (0 otherwise), B[g][c] = wt[k,c,r,t].
// Tiling as conv_fwd: a block computes BM x BN of (m,c); thread (tm,tn) owns rows
// tm + i*(BM/TM) and columns tn + j*(BN/TN); consecutive threads write consecutive m.
// ACCUMULATE: dx += the result instead of dx = (x feeds two layers; the second adds its share).
// Generator constants: N C H W K R S STRIDE PAD P Q MX GX ACCUMULATE BM BN BK TM TN THREADS
// __launch_bounds__ names a minimum of 1 block per SM: with the thread count alone, NVRTC's
// ptxas capped a 512-thread variant at 40 registers and spilled (nvcc's did not).
extern "C" __global__ void __launch_bounds__(THREADS, 1)
${KERNEL}(const float *__restrict__ dy, const float *__restrict__ wt, float *__restrict__ dx)
{
    __shared__ float a_tile[BK][BM];
    __shared__ float b_tile[BK][BN];
    const int tid = threadIdx.x;
    const int tm = tid % (BM / TM);
    const int tn = tid / (BM / TM);
    const int m0 = blockIdx.x * BM;
    const int c0 = blockIdx.y * BN;

    float acc[TM][TN];
    tile_zero(acc);

    for (int g0 = 0; g0 < GX; g0 += BK) {
        for (int e = tid; e < BK * BM; e += THREADS) {
            const int gi = e / BM, mi = e % BM;
            const int m = m0 + mi, g = g0 + gi;
            float v = 0.0f;
            if (m < MX && g < GX) {
                const int n = m / (H * W), hw = m % (H * W);
                const int k = g / (R * S), rt = g % (R * S);
                const int ty = hw / W + PAD - rt / S, tx = hw % W + PAD - rt % S;
                if (ty >= 0 && tx >= 0 && ty % STRIDE == 0 && tx % STRIDE == 0) {
                    const int oy = ty / STRIDE, ox = tx / STRIDE;
                    if (oy < P && ox < Q) v = dy[((n * K + k) * P + oy) * Q + ox];
                }
            }
            a_tile[gi][mi] = v;
        }
        for (int e = tid; e < BK * BN; e += THREADS) {
            const int gi = e % BK, ci = e / BK;
            const int g = g0 + gi, c = c0 + ci;
            float v = 0.0f;
            if (g < GX && c < C) {
                const int k = g / (R * S), rt = g % (R * S);
                v = wt[(k * C + c) * (R * S) + rt];
            }
            b_tile[gi][ci] = v;
        }
        __syncthreads();
        tile_multiply_accumulate(a_tile, b_tile, tm, tn, acc);
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + tm + i * (BM / TM);
        if (m >= MX) continue;
        const int n = m / (H * W), hw = m % (H * W);
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int c = c0 + tn + j * (BN / TN);
            if (c >= C) continue;
            const int at = (n * C + c) * (H * W) + hw;
            dx[at] = ACCUMULATE ? dx[at] + acc[i][j] : acc[i][j];
        }
    }
}
PP_KERNEL_EXPORT(${KERNEL})
