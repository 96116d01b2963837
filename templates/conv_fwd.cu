// conv_fwd.cu - convolution forward as an implicit GEMM (fp32 FFMA, or TF32/BF16 tensor
// cores with f32 accumulation, per variant), fused with the
// pool-save of its input (DESIGN.md section 1).
//   x: (N,H,W,C)  wt: (K,R,S,C)  y: (N,P,Q,K)  xp: (N,HP,WP,C)   (channels last)
// GEMM view: y[n,oy,ox,k] = sum_g A[m][g] * B[g][k] with m = (n,oy,ox) in [0,M) and
//   g = (r,t,c) in [0,G), c fastest: A[m][g] = x[n,STRIDE*oy+r-PAD,STRIDE*ox+t-PAD,c] (0
//   outside), B[g][k] = wt[k,r,t,c] = wt[k*G+g]. y[m*K + k] is the (m,k) element.
// A block computes a BM x BN tile of (m,k); thread `tid` owns the tile rows tile_row(i)
// and columns tile_col(j) (gemm_tile.cuh with ROW_FASTEST: consecutive threads own
// consecutive m, which the BN partials' column segments need; or gemm_mma.cuh's fragments).
// Pool-save: the blocks of grid column blockIdx.y == 0 also write xp for their share
// [POOL_PER_BLOCK*blockIdx.x, +POOL_PER_BLOCK) of the N*HP*WP pooled pixels, all
// channels. Shares are proportional to the blocks' rows of m, so a block pools roughly the
// region of x its GEMM tile has just read (likely still in L2; not exactly the same
// elements, since windows and receptive fields do not align). Windows are f x f at stride f, cut at the border;
// avg divides by the number of elements that exist. POOL_F == 1 saves x itself: no xp.
// STATS: also write BN partial statistics of y per block (see the epilogue):
//   stats: (gridDim.x*STAT_PARTS, K, 3) = (count, mean, M2), merged by bn_stats_merge.cu.
// Generator constants: N C H W K R S STRIDE PAD P Q M G HP WP POOL_F POOL_MAX STATS
//   POOL_PER_BLOCK, A_VEC B_VEC (floats per copy: 4 or 1), and the tile product's and main
//   loop's (gemm_tile.cuh or gemm_mma.cuh, gemm_mainloop.cuh): BM BN BK TM TN THREADS
//   TILE_PAD STAGES MATH (A_KMAJOR = B_KMAJOR = 1 for tensor cores)
// __launch_bounds__ names a minimum of 1 block per SM: with the thread count alone, NVRTC's
// ptxas capped a 512-thread variant at 40 registers and spilled (nvcc's did not).

// Operand iterator. A (BM x BK) is the im2col view of x, copied in units of A_VEC
// consecutive g (= channels of one tap, as C % A_VEC == 0); B (BK x BN) is wt, whose row k
// holds all G values of g contiguously, copied in units of B_VEC. Per thread, unit e =
// tid + i*THREADS (i < A_PER) of the tile is row e / AU, column (e % AU)*A_VEC; the rows'
// pixel coordinates are computed once per block, so a K-tile costs one (tap, c)
// decomposition of its column and a bounds test and address per row.
constexpr int AU = BK / A_VEC, A_UNITS = BM * AU, A_PER = (A_UNITS + THREADS - 1) / THREADS;
constexpr int BU = BK / B_VEC, B_UNITS = BN * BU, B_PER = (B_UNITS + THREADS - 1) / THREADS;
static_assert(C % A_VEC == 0 && G % B_VEC == 0, "a copy unit never straddles a tap or a weight row");

struct operand_iterator {
    const float *x, *wt;
    int g0;                               // first g of the next K-tile
    int image[A_PER], top[A_PER], left[A_PER]; // per A row: n*H*W, STRIDE*oy-PAD, STRIDE*ox-PAD
    int k0;
};

__device__ __forceinline__ void iterator_init(operand_iterator &it, const float *x, const float *wt)
{
    it.x = x;
    it.wt = wt;
    it.g0 = 0;
    it.k0 = blockIdx.y * BN;
#pragma unroll
    for (int i = 0; i < A_PER; ++i) {
        const int e = (int)threadIdx.x + i * THREADS;
        const int m = blockIdx.x * BM + e / AU;
        const int n = m / (P * Q), oyx = m - n * (P * Q), oy = oyx / Q, ox = oyx - oy * Q;
        const bool row = m < M && e < A_UNITS;
        it.image[i] = n * (H * W);
        it.top[i] = row ? oy * STRIDE - PAD : -(1 << 24); // never in [0, H) when the row is past M
        it.left[i] = ox * STRIDE - PAD;
    }
}

// Issues the copies of the iterator's next K-tile into one stage and advances.
__device__ __forceinline__ void load_tiles(operand_iterator &it, float *a, float *b)
{
    const int tid = (int)threadIdx.x;
#pragma unroll
    for (int i = 0; i < A_PER; ++i) {
        const int e = tid + i * THREADS;
        const int kc = (THREADS % AU == 0 ? tid % AU : e % AU) * A_VEC;
        const int g = it.g0 + kc, tap = g / C, c = g - tap * C, r = tap / S, t = tap - r * S;
        const int ih = it.top[i] + r, iw = it.left[i] + t;
        const bool valid = g < G && (unsigned)ih < (unsigned)H && (unsigned)iw < (unsigned)W;
        const float *src = valid ? it.x + (it.image[i] + ih * W + iw) * C + c : it.x;
        if (A_UNITS % THREADS == 0 || e < A_UNITS) tile_copy(a + a_offset(e / AU, kc), src, valid, A_VEC);
    }
#pragma unroll
    for (int i = 0; i < B_PER; ++i) {
        const int e = tid + i * THREADS;
        const int kc = (THREADS % BU == 0 ? tid % BU : e % BU) * B_VEC;
        const int k = it.k0 + e / BU, g = it.g0 + kc;
        const bool valid = k < K && g < G;
        if (B_UNITS % THREADS == 0 || e < B_UNITS)
            tile_copy(b + b_offset(kc, e / BU), valid ? it.wt + k * G + g : it.wt, valid, B_VEC);
    }
    it.g0 += BK;
}

static_assert(!STATS || MATH > 0 || (ROW_FASTEST && BM / TM <= 32),
              "BN partials need the column segments of gemm_tile.cuh or gemm_mma.cuh");

extern "C" __global__ void __launch_bounds__(THREADS, 1)
${KERNEL}(const float *__restrict__ x, const float *__restrict__ wt, float *__restrict__ y,
          float *__restrict__ xp, float *__restrict__ stats)
{
    const int tid = threadIdx.x;
    const int m0 = blockIdx.x * BM;
    const int k0 = blockIdx.y * BN;

    float acc[TM][TN];
    tile_zero(acc);
    operand_iterator it;
    iterator_init(it, x, wt);
    gemm_mainloop(it, (G + BK - 1) / BK, acc);

#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + tile_row(i);
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int k = k0 + tile_col(j);
            if (k < K) y[m * K + k] = acc[i][j];
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
            const int pix = first + e / C;
            const int c = e % C; // consecutive threads: consecutive channels of one window
            const int n = pix / (HP * WP), ij = pix % (HP * WP);
            const int h0 = (ij / WP) * POOL_F, w0 = (ij % WP) * POOL_F;
            const int h1 = pp_min(h0 + POOL_F, H), w1 = pp_min(w0 + POOL_F, W);
            const float *image = x + n * (H * W * C) + c;
            float v = image[(h0 * W + w0) * C];
            if (POOL_MAX) {
                for (int h = h0; h < h1; ++h)
                    for (int w = w0; w < w1; ++w) v = fmaxf(v, image[(h * W + w) * C]);
            } else {
                v = 0.0f;
                for (int h = h0; h < h1; ++h)
                    for (int w = w0; w < w1; ++w) v += image[(h * W + w) * C];
                v = v / (float)((h1 - h0) * (w1 - w0));
            }
            xp[pix * C + c] = v;
        }
    }
}
PP_KERNEL_EXPORT(${KERNEL})
