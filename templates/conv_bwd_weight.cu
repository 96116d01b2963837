// conv_bwd_weight.cu - the weight gradient of a convolution from the pooled saved input,
// un-pooled on the fly (DESIGN.md section 1), as an implicit GEMM in fp32 (FFMA).
//   dy: (N,K,P,Q)  xs: (N,C,HP,WP) (the saved input: xp, or x itself when POOL_F == 1)
//   out: (SPLITS,K,C,R,S) partial sums, or dw (K,C,R,S) when SPLITS == 1
// GEMM view: dw[k][g] = sum_m A[k][m] * B[m][g] with g = (c,r,t) in [0,G) and
//   m = (n,oy,ox) in [0,M): A[k][m] = dy[n,k,oy,ox], B[m][g] = xu[n,c,h,w] with
//   h = STRIDE*oy+r-PAD, w = STRIDE*ox+t-PAD, 0 outside [0,H) x [0,W), and the un-pooled
//   xu[n,c,h,w] = xs[n,c,h/POOL_F,w/POOL_F]. xu is never written to memory.
// The reduction over m is split over blockIdx.z into SPLITS ranges of M_PER_SPLIT (a
// multiple of BK); each split writes its own partial sums, which splitk_reduce adds in a
// fixed order, so results are deterministic.
// A block computes BM x BN of (k,g); thread (tm,tn) owns rows tm + i*(BM/TM) and columns
// tn + j*(BN/TN), with tn fastest, so consecutive threads write consecutive g.
// Generator constants: N C H W K R S STRIDE PAD P Q M G HP WP POOL_F SPLITS M_PER_SPLIT
//   BM BN BK TM TN THREADS
// __launch_bounds__ names a minimum of 1 block per SM: with the thread count alone, NVRTC's
// ptxas capped a 512-thread variant at 40 registers and spilled (nvcc's did not).
extern "C" __global__ void __launch_bounds__(THREADS, 1)
${KERNEL}(const float *__restrict__ dy, const float *__restrict__ xs, float *__restrict__ out)
{
    __shared__ float a_tile[BK][BM];
    __shared__ float b_tile[BK][BN];
    const int tid = threadIdx.x;
    const int tn = tid % (BN / TN);
    const int tm = tid / (BN / TN);
    const int k0 = blockIdx.x * BM;
    const int g_base = blockIdx.y * BN;
    const int m_begin = blockIdx.z * M_PER_SPLIT;
    const int m_end = pp_min(m_begin + M_PER_SPLIT, M);

    float acc[TM][TN];
    tile_zero(acc);

    for (int mb = m_begin; mb < m_end; mb += BK) {
        for (int e = tid; e < BK * BM; e += THREADS) {
            const int mi = e % BK, ki = e / BK;
            const int m = mb + mi, k = k0 + ki;
            float v = 0.0f;
            if (m < m_end && k < K) {
                const int n = m / (P * Q), oyx = m % (P * Q);
                v = dy[(n * K + k) * (P * Q) + oyx];
            }
            a_tile[mi][ki] = v;
        }
        for (int e = tid; e < BK * BN; e += THREADS) {
            const int mi = e % BK, gi = e / BK;
            const int m = mb + mi, g = g_base + gi;
            float v = 0.0f;
            if (m < m_end && g < G) {
                const int n = m / (P * Q), oyx = m % (P * Q);
                const int c = g / (R * S), rt = g % (R * S);
                const int h = (oyx / Q) * STRIDE + rt / S - PAD;
                const int w = (oyx % Q) * STRIDE + rt % S - PAD;
                if (h >= 0 && h < H && w >= 0 && w < W)
                    v = xs[((n * C + c) * HP + h / POOL_F) * WP + w / POOL_F];
            }
            b_tile[mi][gi] = v;
        }
        __syncthreads();
        tile_multiply_accumulate(a_tile, b_tile, tm, tn, acc);
        __syncthreads();
    }

    float *dst = out + blockIdx.z * (K * G);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int k = k0 + tm + i * (BM / TM);
        if (k >= K) continue;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int g = g_base + tn + j * (BN / TN);
            if (g < G) dst[k * G + g] = acc[i][j];
        }
    }
}
PP_KERNEL_EXPORT(${KERNEL})
