// conv_bwd_weight.cu - the weight gradient of a convolution from the pooled saved input,
// un-pooled on the fly (DESIGN.md section 1), as an implicit GEMM (fp32 FFMA, or TF32/BF16
// tensor cores with f32 accumulation, per variant).
//   dy: (N,P,Q,K)  xs: (N,HP,WP,C) (the saved input: xp, or x itself when POOL_F == 1)
//   out: (SPLITS,K,R,S,C) partial sums, or dw (K,R,S,C) when SPLITS == 1   (channels last)
//   dy and xs fp32, or with ACT_BF16 (bf16 storage, BF16 tiles) bf16 bits (unsigned short);
//   out fp32 either way
// GEMM view (rows g, columns k, so that a layer with K = 64 fills a 64-wide column tile):
//   dw[k][g] = sum_m A[g][m] * B[m][k] with g = (r,t,c) in [0,G), c fastest, and
//   m = (n,oy,ox) in [0,M): A[g][m] = xu[n,h,w,c] with h = STRIDE*oy+r-PAD,
//   w = STRIDE*ox+t-PAD, 0 outside [0,H) x [0,W), and the un-pooled
//   xu[n,h,w,c] = xs[n,h/POOL_F,w/POOL_F,c]; B[m][k] = dy[n,oy,ox,k]. xu is never written
//   to memory.
// The reduction over m is split over blockIdx.z into SPLITS ranges of M_PER_SPLIT (a
// multiple of BK); each split writes its own partial sums, which splitk_reduce adds in a
// fixed order, so results are deterministic.
// A block computes BM x BN of (g,k); the thread owns tile rows tile_row(i) and columns
// tile_col(j) (FFMA tiles run rows fastest: consecutive threads write consecutive g).
// Generator constants: N C H W K R S STRIDE PAD P Q M G HP WP POOL_F SPLITS M_PER_SPLIT,
//   A_VEC B_VEC (elements per copy: fp32 4 or 1; bf16 8, 4, 2 or 1, the widest that divides
//   C, resp. K), ACT_BF16, and the tile product's and main loop's
//   (gemm_tile.cuh or gemm_mma.cuh, gemm_mainloop.cuh): BM BN BK TM TN THREADS TILE_PAD
//   STAGES MATH (A_KMAJOR = B_KMAJOR = 0 for tensor cores)
// __launch_bounds__ names a minimum of 1 block per SM: with the thread count alone, NVRTC's
// ptxas capped a 512-thread variant at 40 registers and spilled (nvcc's did not).

// Operand iterator over the block's split of m. A (BK x BM: rows m, columns g) is xu,
// copied in units of A_VEC consecutive g (= channels of one tap, C % A_VEC == 0); B
// (BK x BN: rows m, columns k) is dy, copied in units of B_VEC.
// ROW_PER_THREAD (THREADS % BK == 0 and the TPR = THREADS/BK threads of an m-row share its
// AU units evenly): thread tid loads the A units q + TPR*i (q = tid % TPR) of the single row
// tid / TPR, so per K-tile it decomposes one m into its pixel (divisions by constants);
// each unit's (r, t, c) is fixed per block and computed once; and where the block's BM
// columns g lie in one tap (C % BM == 0) the units share one pixel, one bounds test and one
// address, the copies being consecutive chunks of it (and a warp's 8 lanes of a row store
// one 128-byte row of the stage). Otherwise unit e = tid + i*THREADS is row e / AU, column
// (e % AU)*A_VEC, and each copy decomposes its own m.
// B: unit i is row unit_row<BU>(i), column unit_column<BU, B_VEC>(i) (gemm_mainloop.cuh); its
// offset from the K-tile's first row of dy is fixed, so a copy costs a bounds test, an
// address and the copy.
constexpr int AU = BM / A_VEC, A_UNITS = BK * AU, A_PER = (A_UNITS + THREADS - 1) / THREADS;
constexpr int BU = BN / B_VEC, B_UNITS = BK * BU, B_PER = (B_UNITS + THREADS - 1) / THREADS;
constexpr int TPR = THREADS / BK;
constexpr bool ROW_PER_THREAD = THREADS % BK == 0 && TPR <= AU && AU % TPR == 0;
constexpr bool ONE_TAP_BLOCK = C % BM == 0;
static_assert(C % A_VEC == 0 && K % B_VEC == 0, "a copy unit never straddles a tap");

struct operand_iterator {
    const tile_elem *dy, *xs;
    int mb, m_end;                    // first m of the next K-tile; end of the split
    int r[A_PER], t[A_PER], c[A_PER]; // per A unit: its tap and channel (r = -2^24: past G)
};

__device__ __forceinline__ int a_unit_column(int i) { return ROW_PER_THREAD ? (int)threadIdx.x % TPR + i * TPR : ((int)threadIdx.x + i * THREADS) % AU; }
__device__ __forceinline__ bool a_unit(int i) { return ROW_PER_THREAD || A_UNITS % THREADS == 0 || (int)threadIdx.x + i * THREADS < A_UNITS; }

__device__ __forceinline__ void iterator_init(operand_iterator &it, const tile_elem *dy, const tile_elem *xs, int m_begin,
                                              int m_end)
{
    it.dy = dy;
    it.xs = xs;
    it.mb = m_begin;
    it.m_end = m_end;
#pragma unroll
    for (int i = 0; i < A_PER; ++i) {
        const int g = blockIdx.x * BM + a_unit_column(i) * A_VEC, tap = g / C, r = tap / S;
        it.r[i] = g < G ? r : -(1 << 24); // never in range when the column is past G
        it.t[i] = tap - r * S;
        it.c[i] = g - tap * C;
    }
}

// The pixel of xs that m's output pixel reads at tap (r, t), as an element offset of its
// channel 0, and whether it exists (m < m_end and inside the un-pooled input).
__device__ __forceinline__ int unpooled_pixel(int m, int m_end, int r, int t, bool &valid)
{
    const int n = m / (P * Q), oyx = m - n * (P * Q), oy = oyx / Q, ox = oyx - oy * Q;
    const int h = oy * STRIDE + r - PAD, w = ox * STRIDE + t - PAD;
    valid = m < m_end && (unsigned)h < (unsigned)H && (unsigned)w < (unsigned)W;
    return ((n * HP + (unsigned)h / POOL_F) * WP + (unsigned)w / POOL_F) * C;
}

// Issues the copies of the iterator's next K-tile into one stage and advances.
__device__ __forceinline__ void load_tiles(operand_iterator &it, tile_elem *a, tile_elem *b)
{
    const int tid = (int)threadIdx.x;
    if constexpr (ROW_PER_THREAD) {
        const int mi = tid / TPR, m = it.mb + mi;
        if constexpr (ONE_TAP_BLOCK) {
            bool valid;
            const int pixel = unpooled_pixel(m, it.m_end, it.r[0], it.t[0], valid) + it.c[0];
#pragma unroll
            for (int i = 0; i < A_PER; ++i)
                tile_copy_at<A_VEC>(a + a_offset(a_unit_column(i) * A_VEC, mi), it.xs, pixel + i * TPR * A_VEC, valid);
        } else {
#pragma unroll
            for (int i = 0; i < A_PER; ++i) {
                bool valid;
                const int pixel = unpooled_pixel(m, it.m_end, it.r[i], it.t[i], valid);
                tile_copy_at<A_VEC>(a + a_offset(a_unit_column(i) * A_VEC, mi), it.xs, pixel + it.c[i], valid);
            }
        }
    } else {
#pragma unroll
        for (int i = 0; i < A_PER; ++i) {
            const int e = tid + i * THREADS, mi = e / AU;
            bool valid;
            const int pixel = unpooled_pixel(it.mb + mi, it.m_end, it.r[i], it.t[i], valid);
            if (a_unit(i)) tile_copy_at<A_VEC>(a + a_offset(a_unit_column(i) * A_VEC, mi), it.xs, pixel + it.c[i], valid);
        }
    }
    const tile_elem *dy_m = it.dy + it.mb * K;
    const int rows_left = it.m_end - it.mb;
#pragma unroll
    for (int i = 0; i < B_PER; ++i) {
        const bool valid = unit_row<BU>(i) < rows_left && (K % BN == 0 || blockIdx.y * BN + unit_column<BU, B_VEC>(i) < K);
        if (unit_exists<B_UNITS>(i))
            tile_copy_at<B_VEC>(b + b_offset(unit_row<BU>(i), unit_column<BU, B_VEC>(i)), dy_m, unit_row<BU>(i) * K + blockIdx.y * BN + unit_column<BU, B_VEC>(i), valid);
    }
    it.mb += BK;
}

extern "C" __global__ void __launch_bounds__(THREADS, 1)
${KERNEL}(const tile_elem *__restrict__ dy, const tile_elem *__restrict__ xs, float *__restrict__ out)
{
    const int g_base = blockIdx.x * BM;
    const int k0 = blockIdx.y * BN;
    const int m_begin = blockIdx.z * M_PER_SPLIT;
    const int m_end = pp_min(m_begin + M_PER_SPLIT, M);

    float acc[TM][TN];
    tile_zero(acc);
    operand_iterator it;
    iterator_init(it, dy, xs, m_begin, m_end);
    gemm_mainloop(it, (m_end - m_begin + BK - 1) / BK, acc);

    float *dst = out + blockIdx.z * (K * G);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int g = g_base + tile_row(i);
        if (g >= G) continue;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int k = k0 + tile_col(j);
            if (k < K) dst[k * G + g] = acc[i][j];
        }
    }
}
PP_KERNEL_EXPORT(${KERNEL})
