// conv_fwd.cu - convolution forward as an implicit GEMM in fp32 (FFMA), fused with the
// pool-save of its input (DESIGN.md section 1).
//   x: (N,C,H,W)  wt: (K,C,R,S)  y: (N,K,P,Q)  xp: (N,C,HP,WP)
// GEMM view: y[n,k,oy,ox] = sum_g A[m][g] * B[g][k] with m = (n,oy,ox) in [0,M) and
//   g = (c,r,t) in [0,G): A[m][g] = x[n,c,STRIDE*oy+r-PAD,STRIDE*ox+t-PAD] (0 outside),
//   B[g][k] = wt[k,c,r,t] = wt[k*G+g].
// A block computes a BM x BN tile of (m,k) with THREADS = (BM/TM)*(BN/TN) threads; thread
// (tm,tn) owns rows tm + i*(BM/TM) and columns tn + j*(BN/TN), so consecutive threads
// write consecutive m, which are consecutive addresses of y.
// Pool-save: the blocks of grid column blockIdx.y == 0 also write xp for their share
// [POOL_PER_BLOCK*blockIdx.x, +POOL_PER_BLOCK) of the N*HP*WP pooled pixels, all
// channels. Shares are proportional to the blocks' rows of m, so a block pools roughly the
// region of x its GEMM tile has just read (likely still in L2; not exactly the same
// elements, since windows and receptive fields do not align). Windows are f x f at stride f, cut at the border;
// avg divides by the number of elements that exist. POOL_F == 1 saves x itself: no xp.
// Generator constants: N C H W K R S STRIDE PAD P Q M G HP WP POOL_F POOL_MAX
//   BM BN BK TM TN THREADS POOL_PER_BLOCK
// __launch_bounds__ names a minimum of 1 block per SM: with the thread count alone, NVRTC's
// ptxas capped a 512-thread variant at 40 registers and spilled (nvcc's did not).
extern "C" __global__ void __launch_bounds__(THREADS, 1)
${KERNEL}(const float *__restrict__ x, const float *__restrict__ wt, float *__restrict__ y,
          float *__restrict__ xp)
{
    __shared__ float a_tile[BK][BM];
    __shared__ float b_tile[BK][BN];
    const int tid = threadIdx.x;
    const int tm = tid % (BM / TM);
    const int tn = tid / (BM / TM);
    const int m0 = blockIdx.x * BM;
    const int k0 = blockIdx.y * BN;

    float acc[TM][TN];
    tile_zero(acc);

    for (int g0 = 0; g0 < G; g0 += BK) {
        for (int e = tid; e < BK * BM; e += THREADS) {
            const int gi = e / BM, mi = e % BM;
            const int m = m0 + mi, g = g0 + gi;
            float v = 0.0f;
            if (m < M && g < G) {
                const int n = m / (P * Q), oyx = m % (P * Q);
                const int c = g / (R * S), rt = g % (R * S);
                const int ih = (oyx / Q) * STRIDE + rt / S - PAD;
                const int iw = (oyx % Q) * STRIDE + rt % S - PAD;
                if (ih >= 0 && ih < H && iw >= 0 && iw < W) v = x[((n * C + c) * H + ih) * W + iw];
            }
            a_tile[gi][mi] = v;
        }
        for (int e = tid; e < BK * BN; e += THREADS) {
            const int gi = e % BK, ki = e / BK;
            const int g = g0 + gi, k = k0 + ki;
            b_tile[gi][ki] = (g < G && k < K) ? wt[k * G + g] : 0.0f;
        }
        __syncthreads();
        tile_multiply_accumulate(a_tile, b_tile, tm, tn, acc);
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + tm + i * (BM / TM);
        if (m >= M) continue;
        const int n = m / (P * Q), oyx = m % (P * Q);
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int k = k0 + tn + j * (BN / TN);
            if (k < K) y[(n * K + k) * (P * Q) + oyx] = acc[i][j];
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
