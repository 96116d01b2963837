// conv_fwd.cu - convolution forward as an implicit GEMM (fp32 FFMA, or TF32/BF16 tensor
// cores with f32 accumulation, per variant), fused with the
// pool-save of its input (DESIGN.md section 1).
//   x: (N,H,W,C)  wt: (K,R,S,C)  y: (N,P,Q,K)  xp: (N,HP,WP,C)   (channels last)
//   all fp32, or with ACT_BF16 (bf16 storage, BF16 tiles) all bf16 bits (unsigned short);
//   stats fp32 either way
// GEMM view: y[n,oy,ox,k] = sum_g A[m][g] * B[g][k] with m = (n,oy,ox) in [0,M) and
//   g = (r,t,c) in [0,G), c fastest: A[m][g] = x[n,STRIDE*oy+r-PAD,STRIDE*ox+t-PAD,c] (0
//   outside), B[g][k] = wt[k,r,t,c] = wt[k*G+g]. y[m*K + k] is the (m,k) element.
// A block computes a BM x BN tile of (m,k); thread `tid` owns the tile rows tile_row(i)
// and columns tile_col(j) (gemm_tile.cuh with ROW_FASTEST: consecutive threads own
// consecutive m, which the BN partials' column segments need; or gemm_mma.cuh's fragments).
// Pool-save: every block also writes xp for its share of it: the pooled pixels
// [POOL_PER_BLOCK*blockIdx.x, +POOL_PER_BLOCK) of the N*HP*WP, channels
// [POOL_C_PER_COL*blockIdx.y, +POOL_C_PER_COL) of C. Pixel shares are proportional to the
// blocks' rows of m, so a block pools roughly the region of x its GEMM tile has just read
// (likely still in L2; not exactly the same elements, since windows and receptive fields do
// not align); the channels are split among the grid's columns so that no column pools all
// of them after its GEMM (with one pooling column, the forward of a 7x7 layer of 2048
// channels took 11 times as long as its input gradient, a GEMM of the same size, on an H200). Windows are f x f at stride f, cut at the border;
// avg divides by the number of elements that exist. POOL_F == 1 saves x itself: no xp.
// STATS: also write BN partial statistics of y per block (see the epilogue):
//   stats: (gridDim.x*STAT_PARTS, K, 3) = (count, mean, M2), merged by bn_stats_merge.cu.
// bf16 storage (ACT_BF16): y = bf16_round(acc) (to nearest even); xp = bf16_round of the
//   fp32 mean (or max) of the window's bf16 x values, in the same order as the fp32 form.
// Generator constants: N C H W K R S STRIDE PAD P Q M G HP WP POOL_F POOL_MAX STATS
//   POOL_PER_BLOCK POOL_C_PER_COL, A_VEC B_VEC (elements per copy: fp32 4 or 1; bf16 8, 4, 2 or 1, the
//   widest that divides C, resp. G), ACT_BF16, and the tile product's and main loop's
//   (gemm_tile.cuh or gemm_mma.cuh, gemm_mainloop.cuh): BM BN BK TM TN THREADS TILE_PAD
//   STAGES MATH (A_KMAJOR = B_KMAJOR = 1 for tensor cores)
// __launch_bounds__ names a minimum of 1 block per SM: with the thread count alone, NVRTC's
// ptxas capped a 512-thread variant at 40 registers and spilled (nvcc's did not).

// Operand iterator. A (BM x BK) is the im2col view of x, copied in units of A_VEC
// consecutive g (= channels of one tap, as C % A_VEC == 0; gemm_mainloop.cuh's tile_copy
// says how each width is copied, a lone bf16 channel synchronously); B (BK x BN) is wt, whose row k
// holds all G values of g contiguously, copied in units of B_VEC. Per thread, unit e =
// tid + i*THREADS (i < A_PER) of the tile is row e / AU, column (e % AU)*A_VEC; the rows'
// pixel coordinates are computed once per block.
// TAP_TILES (C % BK == 0, every ResNet layer but the stem): a K-tile is BK channels
// [c0, c0+BK) of one tap (r, t), so the tap, the channel offset and the rows' validity bits
// are bookkeeping updated once per K-tile (the bits once per tap), and a copy costs its
// predicate, one address and the copy. Otherwise a K-tile may straddle taps and each copy
// decomposes its g = (tap, c) (divisions by constants).
constexpr int AU = BK / A_VEC, A_UNITS = BM * AU, A_PER = (A_UNITS + THREADS - 1) / THREADS;
constexpr int BU = BK / B_VEC, B_UNITS = BN * BU, B_PER = (B_UNITS + THREADS - 1) / THREADS;
constexpr bool TAP_TILES = C % BK == 0;
static_assert(C % A_VEC == 0 && G % B_VEC == 0, "a copy unit never straddles a tap or a weight row");
static_assert(A_PER <= 32, "one validity bit per A unit");
// Whether the rows' validity for every filter row and column fits 64 bits each, so a tap's
// validity bits are two shifts and an AND.
constexpr bool PACKED_MASKS = R * A_PER <= 64 && S * A_PER <= 64;
// The masks' type: 32 bits where they fit (two registers fewer than 64).
using tap_mask = pp_select_t<R * A_PER <= 32 && S * A_PER <= 32, unsigned, unsigned long long>;

struct operand_iterator {
    const tile_elem *x, *wt;
    int g0;                                    // first g of the next K-tile
    int k0;                                    // first column k of the block
    int image[A_PER], top[A_PER], left[A_PER]; // per A unit: n*H*W, STRIDE*oy-PAD, STRIDE*ox-PAD
    // TAP_TILES only:
    int c0, r, t;        // the next K-tile is channels [c0, c0+BK) of tap (r, t)
    int a_tap;           // its offset in x: (r*W + t)*C + c0
    unsigned valid_rows; // bit i: unit i's pixel at tap (r, t) lies inside x
    tap_mask inside_h, inside_w; // PACKED_MASKS: bit r*A_PER + i: top[i] + r in [0, H); t: left
    int a_off[A_PER];    // per A unit: element offset of its pixel at tap (0, 0), channel kc (0 past M)
};


// Bit i: unit i's row has a pixel inside x at tap (r, t) (and is a row of the tile).
__device__ __forceinline__ unsigned rows_inside(const operand_iterator &it, int r, int t)
{
    if (PACKED_MASKS)
        return (unsigned)(it.inside_h >> (r * A_PER)) & (unsigned)(it.inside_w >> (t * A_PER)) &
               (unsigned)((1ull << A_PER) - 1);
    unsigned bits = 0;
#pragma unroll
    for (int i = 0; i < A_PER; ++i)
        if ((unsigned)(it.top[i] + r) < (unsigned)H && (unsigned)(it.left[i] + t) < (unsigned)W) bits |= 1u << i;
    return bits;
}

__device__ __forceinline__ void iterator_init(operand_iterator &it, const tile_elem *x, const tile_elem *wt)
{
    it.x = x;
    it.wt = wt;
    it.g0 = 0;
    it.k0 = blockIdx.y * BN;
#pragma unroll
    for (int i = 0; i < A_PER; ++i) {
        const int m = blockIdx.x * BM + unit_row<AU>(i);
        const int n = m / (P * Q), oyx = m - n * (P * Q), oy = oyx / Q, ox = oyx - oy * Q;
        const bool row = m < M && unit_exists<A_UNITS>(i);
        it.image[i] = n * (H * W);
        it.top[i] = row ? oy * STRIDE - PAD : -(1 << 24); // never in [0, H) when the row is past M
        it.left[i] = ox * STRIDE - PAD;
        it.a_off[i] = row ? (it.image[i] + it.top[i] * W + it.left[i]) * C + unit_column<AU, A_VEC>(i) : 0;
    }
    it.inside_h = it.inside_w = 0;
    if (PACKED_MASKS) {
#pragma unroll
        for (int i = 0; i < A_PER; ++i) {
#pragma unroll
            for (int r = 0; r < R; ++r)
                if ((unsigned)(it.top[i] + r) < (unsigned)H) it.inside_h |= (tap_mask)1 << (r * A_PER + i);
#pragma unroll
            for (int t = 0; t < S; ++t)
                if ((unsigned)(it.left[i] + t) < (unsigned)W) it.inside_w |= (tap_mask)1 << (t * A_PER + i);
        }
    }
    it.c0 = it.r = it.t = it.a_tap = 0;
    it.valid_rows = TAP_TILES ? rows_inside(it, 0, 0) : 0;
}

// Issues the copies of the iterator's next K-tile into one stage and advances.
__device__ __forceinline__ void load_tiles(operand_iterator &it, tile_elem *a, tile_elem *b)
{
    if constexpr (TAP_TILES) {
        const tile_elem *x_tap = it.x + it.a_tap;
#pragma unroll
        for (int i = 0; i < A_PER; ++i)
            if (unit_exists<A_UNITS>(i))
                tile_copy_at<A_VEC>(a + a_offset(unit_row<AU>(i), unit_column<AU, A_VEC>(i)), x_tap, it.a_off[i], (it.valid_rows & (1u << i)) != 0);
        it.c0 += BK;
        it.a_tap += BK;
        // A 1x1 unpadded layer has one tap whose rows are all inside: nothing to update.
        if (!(R == 1 && S == 1 && PAD == 0) && it.c0 == C) {
            it.c0 = 0;
            if (++it.t == S) {
                it.t = 0;
                ++it.r;
            }
            it.valid_rows = rows_inside(it, it.r, it.t);
            it.a_tap = (it.r * W + it.t) * C;
        }
    } else {
#pragma unroll
        for (int i = 0; i < A_PER; ++i) {
            const int kc = unit_column<AU, A_VEC>(i);
            const int g = it.g0 + kc, tap = g / C, c = g - tap * C, r = tap / S, t = tap - r * S;
            const int ih = it.top[i] + r, iw = it.left[i] + t;
            const bool valid = g < G && (unsigned)ih < (unsigned)H && (unsigned)iw < (unsigned)W;
            if (unit_exists<A_UNITS>(i)) tile_copy_at<A_VEC>(a + a_offset(unit_row<AU>(i), kc), it.x, (it.image[i] + ih * W + iw) * C + c, valid);
        }
    }
    // B: under TAP_TILES G % BK == 0, so only the column k bounds a copy.
    const tile_elem *wt_g = it.wt + it.g0;
#pragma unroll
    for (int i = 0; i < B_PER; ++i) {
        const bool valid = (K % BN == 0 || it.k0 + unit_row<BU>(i) < K) && (TAP_TILES || it.g0 + unit_column<BU, B_VEC>(i) < G);
        // One thread's units are rows a compile-time step apart (THREADS % BU == 0): one
        // base address and immediate offsets, no per-unit state.
        if (unit_exists<B_UNITS>(i)) tile_copy_at<B_VEC>(b + b_offset(unit_column<BU, B_VEC>(i), unit_row<BU>(i)), wt_g, (it.k0 + unit_row<BU>(i)) * G + unit_column<BU, B_VEC>(i), valid);
    }
    it.g0 += BK;
}

static_assert(!STATS || MATH > 0 || (ROW_FASTEST && BM / TM <= 32),
              "BN partials need the column segments of gemm_tile.cuh or gemm_mma.cuh");

extern "C" __global__ void __launch_bounds__(THREADS, 1)
${KERNEL}(const tile_elem *__restrict__ x, const tile_elem *__restrict__ wt, tile_elem *__restrict__ y,
          tile_elem *__restrict__ xp, float *__restrict__ stats)
{
    const int tid = threadIdx.x;
    const int m0 = blockIdx.x * BM;
    const int k0 = blockIdx.y * BN;

    float acc[TM][TN];
    tile_zero(acc);
    operand_iterator it;
    iterator_init(it, x, wt);
    gemm_mainloop(it, (G + BK - 1) / BK, acc);

    // bf16 storage: from here on acc holds the values y stores (rounded to bf16), so that
    // the BN statistics describe the y that BN will normalise.
    if (ACT_BF16) {
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] = storage_value(to_storage(acc[i][j]));
    }
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + tile_row(i);
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int k = k0 + tile_col(j);
            if (k < K) y[m * K + k] = to_storage(acc[i][j]);
        }
    }

    // BN partials: (count, mean, M2) of each output channel over this block's valid rows of
    // m, per STAT_PARTS part (tile header), centred on their own mean (two passes over the
    // registers), so bn_stats_merge needs no second read of y. Every thread takes part in
    // the warp sums, whatever its rows and columns. From the fp32 accumulators, which with
    // bf16 storage hold the rounded values y stores (above).
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

    if (POOL_F > 1 && blockIdx.y * POOL_C_PER_COL < C) {
        const int first = blockIdx.x * POOL_PER_BLOCK;
        const int count = pp_min(first + POOL_PER_BLOCK, N * HP * WP) - first;
        for (int e = tid; e < count * POOL_C_PER_COL; e += THREADS) {
            const int pix = first + e / POOL_C_PER_COL;
            // consecutive threads: consecutive channels of one window
            const int c = blockIdx.y * POOL_C_PER_COL + e % POOL_C_PER_COL;
            if (c >= C) continue; // the last column's share may pass C
            const int n = pix / (HP * WP), ij = pix % (HP * WP);
            const int h0 = (ij / WP) * POOL_F, w0 = (ij % WP) * POOL_F;
            const int h1 = pp_min(h0 + POOL_F, H), w1 = pp_min(w0 + POOL_F, W);
            const tile_elem *image = x + n * (H * W * C) + c;
            float v = storage_value(image[(h0 * W + w0) * C]);
            if (POOL_MAX) {
                for (int h = h0; h < h1; ++h)
                    for (int w = w0; w < w1; ++w) v = fmaxf(v, storage_value(image[(h * W + w) * C]));
            } else {
                v = 0.0f;
                for (int h = h0; h < h1; ++h)
                    for (int w = w0; w < w1; ++w) v += storage_value(image[(h * W + w) * C]);
                v = v / (float)((h1 - h0) * (w1 - w0));
            }
            xp[pix * C + c] = to_storage(v);
        }
    }
}
PP_KERNEL_EXPORT(${KERNEL})
