// conv_bwd_data.cu - the input gradient of a convolution, exact, as an implicit GEMM (fp32
// FFMA, or TF32/BF16 tensor cores with f32 accumulation, per variant), one GEMM per stride
// phase.
//   dy: (N,P,Q,K)  wt: (K,R,S,C)  dx: (N,H,W,C)   (channels last)
//   all fp32, or with ACT_BF16 (bf16 storage, BF16 tiles) all bf16 bits (unsigned short):
//   dx = bf16_round(acc), to nearest even from the fp32 accumulator
// dx[n,h,w,c] = sum over k and the taps (r,t) with (h+PAD-r) and (w+PAD-t) divisible by
// STRIDE of wt[k,r,t,c] * dy[n,(h+PAD-r)/STRIDE,(w+PAD-t)/STRIDE,k] (in range, else 0).
// Stride phases: the input positions with (h+PAD) % STRIDE == ph and (w+PAD) % STRIDE == pw
// all use the same taps, r = ph + STRIDE*a and t = pw + STRIDE*b, so phase
// (ph,pw) = (blockIdx.z / PHASES_W, blockIdx.z % PHASES_W) is its own GEMM with no taps that
// are zero by divisibility (a stride-2 layer would otherwise spend 3/4 of its work on them);
// phases with no tap at all are not launched (see the end of the kernel):
//   rows m = (n,i,j) in [0,MX): h = H0 + STRIDE*i, w = W0 + STRIDE*j, where H0 and W0 are
//     the first positions of the phase; rows past the phase's own extent are skipped;
//   columns c in [0,C); reduction g = (a,b,k) in [0,GX), k fastest, GX = RA*SA*K, with
//     RA = ceil(R/STRIDE) (taps past R in a phase with fewer are 0):
//   A[m][g] = dy[n,(h+PAD-r)/STRIDE,(w+PAD-t)/STRIDE,k] (0 outside), B[g][c] = wt[k,r,t,c].
// With STRIDE 1 there is one phase and this is the plain implicit GEMM over (k,r,t).
// Tiling as conv_fwd: a block computes BM x BN of (m,c); the thread owns tile rows
// tile_row(i) and columns tile_col(j) (with FFMA tiles consecutive threads write
// consecutive m).
// ACCUMULATE: dx += the result instead of dx = (x feeds two layers; the second adds its share);
//   with bf16 storage dx = bf16_round(float(dx) + acc).
// Generator constants: N C H W K R S STRIDE PAD P Q ACCUMULATE, HS = ceil(H/STRIDE),
//   WS = ceil(W/STRIDE), RA = ceil(R/STRIDE), SA = ceil(S/STRIDE), MX = N*HS*WS, GX = K*RA*SA,
//   PHASES_H = min(STRIDE, R), PHASES_W = min(STRIDE, S),
//   A_VEC B_VEC (elements per copy: fp32 4 or 1; bf16 8, 4, 2 or 1, the widest that divides
//   K, resp. C), ACT_BF16, and the tile product's and main loop's
//   (gemm_tile.cuh or gemm_mma.cuh, gemm_mainloop.cuh): BM BN BK TM TN THREADS TILE_PAD
//   STAGES MATH (A_KMAJOR = 1, B_KMAJOR = 0 for tensor cores)
// Launch: grid (ceil(MX/BM), ceil(C/BN), PHASES_H*PHASES_W).
// __launch_bounds__ names a minimum of 1 block per SM: with the thread count alone, NVRTC's
// ptxas capped a 512-thread variant at 40 registers and spilled (nvcc's did not).

// The block's stride phase: its taps' offsets (ph, pw) and first input row and column.
struct phase {
    int ph, pw, h0, w0, rows_h, rows_w;
};

__device__ __forceinline__ phase phase_of(int ph, int pw)
{
    phase p;
    p.ph = ph;
    p.pw = pw;
    p.h0 = ((p.ph - PAD) % STRIDE + STRIDE) % STRIDE; // first h with (h + PAD) % STRIDE == ph
    p.w0 = ((p.pw - PAD) % STRIDE + STRIDE) % STRIDE;
    p.rows_h = p.h0 < H ? (H - p.h0 + STRIDE - 1) / STRIDE : 0;
    p.rows_w = p.w0 < W ? (W - p.w0 + STRIDE - 1) / STRIDE : 0;
    return p;
}

// Only phases with taps are launched: ph < PHASES_H = min(STRIDE, R), pw < PHASES_W.
__device__ __forceinline__ phase block_phase() { return phase_of(blockIdx.z / PHASES_W, blockIdx.z % PHASES_W); }

// Operand iterator. A (BM x BK) is dy gathered through the phase's transposed im2col
// view, copied in units of A_VEC consecutive g (= channels k of one tap, K % A_VEC == 0);
// B (BK x BN) is wt: row g = (a,b,k) is wt[k,r,t,c0..], contiguous along c, copied in
// units of B_VEC. Per thread, unit i of A is tile row unit_row<AU>(i), column
// unit_column<AU, A_VEC>(i) (gemm_mainloop.cuh); the
// rows' output coordinates are computed once per block. For a row at
// (n, h, w) = (n, h0 + STRIDE*i, w0 + STRIDE*j) of phase (ph, pw) and a tap (a, b):
// (h + PAD - r)/STRIDE = i + OY0 - a with OY0 = (h0 + PAD - ph)/STRIDE (exact, >= 0).
// TAP_TILES (K % BK == 0): a K-tile is BK channels [k0, k0+BK) of one tap (a, b), and the
// block walks only its phase's taps (ceil((R-ph)/STRIDE) x ceil((S-pw)/STRIDE) of them,
// not RA x SA): per K-tile the tap bookkeeping is uniform, the rows' validity bits change
// once per tap, and a copy costs its predicate, one address and the copy. Otherwise a
// K-tile may straddle taps and each copy decomposes its g (divisions by constants).
constexpr int AU = BK / A_VEC, A_UNITS = BM * AU, A_PER = (A_UNITS + THREADS - 1) / THREADS;
constexpr int BU = BN / B_VEC, B_UNITS = BK * BU, B_PER = (B_UNITS + THREADS - 1) / THREADS;
constexpr bool TAP_TILES = K % BK == 0;
static_assert(K % A_VEC == 0 && C % B_VEC == 0, "a copy unit never straddles a tap");
static_assert(A_PER <= 32, "one validity bit per A unit");
// Whether the rows' validity for every tap row and column fits 64 bits each.
constexpr bool PACKED_MASKS = RA * A_PER <= 64 && SA * A_PER <= 64;
// The masks' type: 32 bits where they fit (two registers fewer than 64).
using tap_mask = pp_select_t<RA * A_PER <= 32 && SA * A_PER <= 32, unsigned, unsigned long long>;

struct operand_iterator {
    const tile_elem *dy, *wt;
    int g0;                                // first g of the next K-tile (general path)
    int ph, pw;
    int image[A_PER], oy[A_PER], ox[A_PER]; // per A unit: n*P*Q, i + OY0, j + OX0
    // TAP_TILES only:
    int k0, ta, tb, taps_w; // the next K-tile is channels [k0, k0+BK) of tap (ta, tb)
    int a_tap, b_tap;       // its offsets in dy (k0 - (ta*Q + tb)*K) and wt ((k0*R*S + r*S + t)*C)
    unsigned valid_rows;    // bit i: unit i's dy pixel at tap (ta, tb) lies inside dy
    tap_mask inside_h, inside_w; // PACKED_MASKS: bit a*A_PER + i: oy[i] - a in [0, P); b: ox
    int a_off[A_PER];       // per A unit: element offset of its dy pixel at tap (0, 0), channel kc
};


// Bit i: unit i's row reads a dy pixel inside dy at tap (a, b).
__device__ __forceinline__ unsigned rows_inside(const operand_iterator &it, int a, int b)
{
    if (PACKED_MASKS)
        return (unsigned)(it.inside_h >> (a * A_PER)) & (unsigned)(it.inside_w >> (b * A_PER)) &
               (unsigned)((1ull << A_PER) - 1);
    unsigned bits = 0;
#pragma unroll
    for (int i = 0; i < A_PER; ++i)
        if ((unsigned)(it.oy[i] - a) < (unsigned)P && (unsigned)(it.ox[i] - b) < (unsigned)Q) bits |= 1u << i;
    return bits;
}

// K-tiles of the block's phase.
__device__ __forceinline__ int phase_ktiles(const phase &p)
{
    if (!TAP_TILES) return (GX + BK - 1) / BK;
    return ((R - p.ph + STRIDE - 1) / STRIDE) * ((S - p.pw + STRIDE - 1) / STRIDE) * (K / BK);
}

__device__ __forceinline__ void iterator_init(operand_iterator &it, const tile_elem *dy, const tile_elem *wt, const phase &p)
{
    it.dy = dy;
    it.wt = wt;
    it.g0 = 0;
    it.ph = p.ph;
    it.pw = p.pw;
    const int oy0 = (p.h0 + PAD - p.ph) / STRIDE, ox0 = (p.w0 + PAD - p.pw) / STRIDE;
#pragma unroll
    for (int i = 0; i < A_PER; ++i) {
        const int m = blockIdx.x * BM + unit_row<AU>(i);
        const int n = m / (HS * WS), ij = m - n * (HS * WS), pi = ij / WS, pj = ij - pi * WS;
        const bool row = m < MX && unit_exists<A_UNITS>(i) && pi < p.rows_h && pj < p.rows_w;
        it.image[i] = n * (P * Q);
        it.oy[i] = row ? pi + oy0 : -(1 << 24); // never in [0, P) when the row is outside the phase
        it.ox[i] = pj + ox0;
        it.a_off[i] = row ? (it.image[i] + it.oy[i] * Q + it.ox[i]) * K + unit_column<AU, A_VEC>(i) : 0;
    }
    it.inside_h = it.inside_w = 0;
    if (PACKED_MASKS) {
#pragma unroll
        for (int i = 0; i < A_PER; ++i) {
#pragma unroll
            for (int a = 0; a < RA; ++a)
                if ((unsigned)(it.oy[i] - a) < (unsigned)P) it.inside_h |= (tap_mask)1 << (a * A_PER + i);
#pragma unroll
            for (int b = 0; b < SA; ++b)
                if ((unsigned)(it.ox[i] - b) < (unsigned)Q) it.inside_w |= (tap_mask)1 << (b * A_PER + i);
        }
    }
    it.k0 = it.ta = it.tb = 0;
    it.a_tap = 0;
    it.b_tap = (p.ph * S + p.pw) * C;
    it.taps_w = (S - p.pw + STRIDE - 1) / STRIDE;
    it.valid_rows = TAP_TILES ? rows_inside(it, 0, 0) : 0;
}

// Issues the copies of the iterator's next K-tile into one stage and advances.
__device__ __forceinline__ void load_tiles(operand_iterator &it, tile_elem *a, tile_elem *b)
{
    if constexpr (TAP_TILES) {
        const tile_elem *dy_tap = it.dy + it.a_tap;
#pragma unroll
        for (int i = 0; i < A_PER; ++i)
            if (unit_exists<A_UNITS>(i))
                tile_copy_at<A_VEC>(a + a_offset(unit_row<AU>(i), unit_column<AU, A_VEC>(i)), dy_tap, it.a_off[i], (it.valid_rows & (1u << i)) != 0);
        const tile_elem *wt_tap = it.wt + it.b_tap;
#pragma unroll
        for (int i = 0; i < B_PER; ++i)
            if (unit_exists<B_UNITS>(i))
                tile_copy_at<B_VEC>(b + b_offset(unit_row<BU>(i), unit_column<BU, B_VEC>(i)), wt_tap,
                                    unit_row<BU>(i) * (R * S * C) + blockIdx.y * BN + unit_column<BU, B_VEC>(i),
                                    C % BN == 0 || blockIdx.y * BN + unit_column<BU, B_VEC>(i) < C);
        it.k0 += BK;
        it.a_tap += BK;
        it.b_tap += BK * (R * S * C);
        // A 1x1 layer's phase has one tap: nothing to update.
        if (!(R == 1 && S == 1) && it.k0 == K) {
            it.k0 = 0;
            if (++it.tb == it.taps_w) {
                it.tb = 0;
                ++it.ta;
            }
            it.valid_rows = rows_inside(it, it.ta, it.tb);
            it.a_tap = -(it.ta * Q + it.tb) * K;
            it.b_tap = ((it.ph + STRIDE * it.ta) * S + it.pw + STRIDE * it.tb) * C;
        }
        return;
    }
#pragma unroll
    for (int i = 0; i < A_PER; ++i) {
        const int kc = unit_column<AU, A_VEC>(i);
        const int g = it.g0 + kc, ab = g / K, k = g - ab * K, ta = ab / SA, tb = ab - ta * SA;
        const int oy = it.oy[i] - ta, ox = it.ox[i] - tb;
        const bool valid = g < GX && it.ph + STRIDE * ta < R && it.pw + STRIDE * tb < S &&
                           (unsigned)oy < (unsigned)P && (unsigned)ox < (unsigned)Q;
        if (unit_exists<A_UNITS>(i)) tile_copy_at<A_VEC>(a + a_offset(unit_row<AU>(i), kc), it.dy, (it.image[i] + oy * Q + ox) * K + k, valid);
    }
#pragma unroll
    for (int i = 0; i < B_PER; ++i) {
        const int cc = unit_column<BU, B_VEC>(i), gi = unit_row<BU>(i);
        const int g = it.g0 + gi, ab = g / K, k = g - ab * K, ta = ab / SA, tb = ab - ta * SA;
        const int r = it.ph + STRIDE * ta, t = it.pw + STRIDE * tb, c = blockIdx.y * BN + cc;
        const bool valid = g < GX && r < R && t < S && c < C;
        if (unit_exists<B_UNITS>(i)) tile_copy_at<B_VEC>(b + b_offset(gi, cc), it.wt, ((k * R + r) * S + t) * C + c, valid);
    }
    it.g0 += BK;
}

extern "C" __global__ void __launch_bounds__(THREADS, 1)
${KERNEL}(const tile_elem *__restrict__ dy, const tile_elem *__restrict__ wt, tile_elem *__restrict__ dx)
{
    const int m0 = blockIdx.x * BM;
    const int c0 = blockIdx.y * BN;
    const phase p = block_phase();

    float acc[TM][TN];
    tile_zero(acc);
    operand_iterator it;
    iterator_init(it, dy, wt, p);
    gemm_mainloop(it, phase_ktiles(p), acc);

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
            const int at = (n * (H * W) + hw) * C + c;
            dx[at] = to_storage(ACCUMULATE ? storage_value(dx[at]) + acc[i][j] : acc[i][j]);
        }
    }

    // Phases without taps (ph >= R or pw >= S: a 1x1 stride-2 layer has three) are not
    // launched: their dx is 0 (untouched when accumulating). The blocks of the first phase
    // write those zeros for their rows (n,i,j) and columns: every phase's positions are
    // (h0 + STRIDE*i, w0 + STRIDE*j) with i < HS, j < WS.
    if (!ACCUMULATE && (PHASES_H < STRIDE || PHASES_W < STRIDE) && blockIdx.z == 0) {
#pragma unroll
        for (int i = 0; i < TM; ++i) {
            const int m = m0 + tile_row(i);
            if (m >= MX) continue;
            const int n = m / (HS * WS), ij = m % (HS * WS), pi = ij / WS, pj = ij % WS;
            for (int e = 0; e < STRIDE * STRIDE; ++e) {
                const phase q = phase_of(e / STRIDE, e % STRIDE);
                if ((q.ph < PHASES_H && q.pw < PHASES_W) || pi >= q.rows_h || pj >= q.rows_w) continue;
                const int hw = (q.h0 + STRIDE * pi) * W + q.w0 + STRIDE * pj;
#pragma unroll
                for (int j = 0; j < TN; ++j) {
                    const int c = c0 + tile_col(j);
                    if (c < C) dx[(n * (H * W) + hw) * C + c] = to_storage(0.0f);
                }
            }
        }
    }
}
PP_KERNEL_EXPORT(${KERNEL})
