// gemm_mma.cuh - the tensor-core tile product (TF32 m16n8k8 or BF16 m16n8k16, f32
// accumulation) of the implicit-GEMM main loop (gemm_mainloop.cuh): shared-memory layouts,
// fragment loads, mma. The same functions as gemm_tile.cuh (the fp32 FFMA product), so a
// kernel's iterator and epilogue do not depend on the math. Emitted after ptx_async_copy.cuh,
// ptx_ldmatrix.cuh and ptx_mma.cuh inside the kernel's namespace. Constants:
//   BM BN BK WARPS_M WARPS_N THREADS MATH (1 = TF32, 2 = BF16)
//   A_KMAJOR, B_KMAJOR: the shared-memory layout of each operand (below)
//   ACT_BF16: bf16 storage (needs MATH = 2): operands are bf16 bits (unsigned short) in
//     memory and in shared memory; else fp32 in both
//   TM = 2*(BM/WARPS_M/16), TN = 2*(BN/WARPS_N/8)
// tile_elem is the operands' element type; a 16-byte chunk holds CHUNK = 4 fp32 or 8 bf16.
//
// Shared-memory layouts (in 16-byte chunks):
//   K-major (X_KMAJOR = 1): ROWS x BK, element (row, k) at row*BK + k, the chunk index
//     XOR-swizzled by the row so that the 8 rows one ldmatrix phase reads at one logical
//     chunk fall in 8 distinct 16-byte bank groups: chunk ^ (row & 7) when a row is 8
//     chunks (fp32 BK = 32), chunk ^ ((row >> 1) & 3) when it is 4 (fp32 BK = 16, bf16
//     BK = 32: two rows per 128-byte bank row), chunk ^ ((row >> 2) & 1) when it is 2
//     (bf16 BK = 16: four rows per bank row).
//   MN-major (X_KMAJOR = 0), fp32: BK x COLS (COLS = BM or BN, a multiple of 32), element
//     (k, col) at k*COLS + col with the chunk index XOR 2*(phase(k) & 3), phase(k) = k for
//     TF32 and k/2 for BF16. Pairs of mma tiles are interleaved along MN: the 16 rows (or
//     columns) of tiles 2p and 2p+1 (A: rows g and g+8 of one 16-row tile) lie at 2q and
//     2q+1, so one 64-bit load gives a lane both (tile_row/tile_col map back). A TF32
//     fragment's lanes (g, t) then read (k0 + t, col0 + 2g, +1) and BF16's (k0 + 2t (+1),
//     col0 + 2g, +1), k0 % 8 == 0, col0 % 16 == 0: each half-warp's 4 rows land in 4
//     distinct pairs of bank groups, conflict-free. The XOR touches chunk bits 1-2 only, so
//     a fragment address is one of 2 lane parts (by col0's chunk bit 2) plus a
//     compile-time offset.
//   MN-major, bf16 storage: BK x COLS (COLS a multiple of 64: a row is at least 8 chunks),
//     in order along MN (no interleave), element (k, col) at k*COLS + col with the chunk
//     index XOR (k & 7): an ldmatrix.trans phase reads 8 consecutive k at one logical
//     chunk, which then fall in 8 distinct bank groups.
// Fragments (lane = 4g + t; ptx_mma.cuh has the layouts):
//   TF32, K-major: one ldmatrix.x4 per 16x8 A tile or per two 8x8 B tiles (32-bit
//     elements: lane t gets row t/4, column t%4 of each 8x4 matrix).
//   TF32, MN-major: one 32-bit shared load per register.
//   TF32 rounding: the mma reads the upper 19 bits of each 32-bit operand (sign, exponent,
//     10 mantissa bits) and ignores the low 13, so adding half a TF32 ulp (0x1000) to the
//     raw f32 bits first gives cvt.rna's round-to-nearest-ties-away (one integer add per
//     register instead of the conversion sequence). Identical to pp_f32_to_tf32 for every
//     finite input and infinity; a NaN whose payload lies only in the low 13 bits would
//     become infinity (the runtime's NaNs are never of that kind).
//   BF16, operands fp32 in memory: 64-bit or 32-bit shared loads and one cvt.rn.bf16x2
//     per register.
//   BF16 storage: the registers are the stored bits, no conversion. K-major operands: one
//     ldmatrix.x4 per 16x16 A tile (matrices: rows 0-7 / 8-15 x k 0-7 / 8-15 = a0..a3) or
//     per two 16x8 B tiles (b0, b1 of each); MN-major operands: one ldmatrix.x4.trans, the
//     stored 8x8 matrices being k x MN, so that .trans hands lane (g, t) the pair
//     (k = 2t, 2t+1; MN = g) the fragment wants.
constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
constexpr int MT = WM / 16, NT = WN / 8; // mma tiles of a warp
constexpr int MMA_K = MATH == 2 ? 16 : 8;
static_assert(!ACT_BF16 || MATH == 2, "bf16 storage needs the BF16 mma (MATH = 2)");
using tile_elem = pp_select_t<ACT_BF16 != 0, unsigned short, float>;
constexpr int CHUNK = 16 / (int)sizeof(tile_elem);  // elements per 16-byte chunk
constexpr int CHUNK_SHIFT = ACT_BF16 ? 3 : 2;
constexpr int KCHUNKS = BK / CHUNK;                   // chunks per K-major row: 2, 4 or 8
constexpr int A_TILE = BM * BK, B_TILE = BN * BK;     // elements per stage
static_assert(BK == 16 || BK == 32, "BK: 16 or 32");
static_assert(BM % 32 == 0 && BN % 32 == 0, "MN-major rows span whole bank rows");
static_assert(!ACT_BF16 || (BM % 64 == 0 && BN % 64 == 0), "bf16 MN-major rows: at least 8 chunks");
static_assert(NT % 2 == 0, "B fragments are loaded for pairs of 8-column tiles");


// Where the operand iterators store element (row, k) of A and (k, col) of B in a stage.
__device__ __forceinline__ int kmajor_at(int row, int k);
__device__ __forceinline__ int mnmajor_at(int k, int col, int cols);
__device__ __forceinline__ int a_offset(int row, int k) { return A_KMAJOR ? kmajor_at(row, k) : mnmajor_at(k, row, BM); }
__device__ __forceinline__ int b_offset(int k, int col) { return B_KMAJOR ? kmajor_at(col, k) : mnmajor_at(k, col, BN); }

// Element offset of element (row, k) of a K-major tile.
__device__ __forceinline__ int kmajor_at(int row, int k)
{
    const int swizzle = KCHUNKS == 8 ? (row & 7) : KCHUNKS == 4 ? ((row >> 1) & 3) : ((row >> 2) & 1);
    return row * BK + (((k >> CHUNK_SHIFT) ^ swizzle) << CHUNK_SHIFT) + (k & (CHUNK - 1));
}

// Element offset of element (k, col) of an MN-major tile with `cols` columns.
__device__ __forceinline__ int mnmajor_at(int k, int col, int cols)
{
    if (ACT_BF16) return k * cols + (((col >> 3) ^ (k & 7)) << 3) + (col & 7);
    const int phase = ((MATH == 2 ? k >> 1 : k) & 3) << 1;
    return k * cols + (((col >> 2) ^ phase) << 2) + (col & 3);
}

// bf16 storage: mnmajor_at(k0 + kl, c0 + cc, cols) for an ldmatrix row address, with
// compile-time k0 % 8 == 0 and the lane's kl < 16, cc % 8 == 0: the swizzle depends on the
// lane only (kl & 7).
__device__ __forceinline__ int mn_row_at(int k0, int c0, int kl, int cc, int cols)
{
    return (k0 + kl) * cols + ((((c0 + cc) >> 3) ^ (kl & 7)) << 3);
}

// mnmajor_at(k0 + kl, c0 + cl, cols) for compile-time k0 % 8 == 0 and c0 % 16 == 0 and the
// lane's kl < 8, cl < 16: only c0's chunk bit 2 meets the lane's phase in the XOR, so the
// lane part takes one of 2 values the compiler keeps across the main loop.
__device__ __forceinline__ int mn_fragment_at(int k0, int c0, int kl, int cl, int cols)
{
    const int phase = ((MATH == 2 ? kl >> 1 : kl) & 3) << 1;
    const int lane_part = (((((c0 >> 2) & 4) | (cl >> 2)) ^ phase) << 2) + (cl & 3);
    return (k0 + kl) * cols + ((c0 >> 2) & ~7) * 4 + lane_part;
}

// Tile row of the 16-row mma tile at row0 (row0 % 16 == 0) that holds its row `r` (0..15):
// K-major tiles and bf16 storage's are in order, fp32 MN-major ones interleave rows r and
// r+8 (see above).
__device__ __forceinline__ int a_tile_row(int row0, int r)
{
    return A_KMAJOR || ACT_BF16 ? row0 + r : row0 + 2 * (r & 7) + (r >> 3);
}

// Which tile rows and columns this thread's accumulators hold (as gemm_tile.cuh):
// acc[2*mi + h][2*ni + e] is D of mma tile (mi, ni) at row 16*mi + 8*h + g, column
// 8*ni + 2t + e of the warp's sub-tile; warp w's sub-tile is at rows (w % WARPS_M)*WM,
// columns (w / WARPS_M)*WN.
// (fp32 MN-major operands interleave pairs of mma tiles: rows r and r+8 of A's 16-row
// tiles, columns of B's 8-column tiles 2p and 2p+1.)
__device__ __forceinline__ int tile_row(int i)
{
    const int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    return a_tile_row((warp % WARPS_M) * WM + (i / 2) * 16, (i % 2) * 8 + lane / 4);
}

__device__ __forceinline__ int tile_col(int j)
{
    const int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    const int ni = j / 2, n = 2 * (lane % 4) + (j % 2); // mma tile, its column
    if (B_KMAJOR || ACT_BF16) return (warp / WARPS_M) * WN + ni * 8 + n;
    return (warp / WARPS_M) * WN + (ni / 2) * 16 + 2 * n + (ni % 2);
}

// Column statistics (conv_fwd's BN partials): a column of a warp's sub-tile is held by the
// 8 lanes 4g+t of one t, so a butterfly over lane bits 2..4 sums over the warp's rows; the
// WARPS_M warps of a column of warps give one partial each.
constexpr int STAT_PARTS = WARPS_M;
__device__ __forceinline__ float tile_column_sum(float v)
{
    v += __shfl_xor_sync(0xffffffffu, v, 4);
    v += __shfl_xor_sync(0xffffffffu, v, 8);
    v += __shfl_xor_sync(0xffffffffu, v, 16);
    return v;
}
__device__ __forceinline__ int tile_stat_part() { return ((int)threadIdx.x / 32) % WARPS_M; }
__device__ __forceinline__ bool tile_stat_writer() { return (int)threadIdx.x % 32 < 4; }

__device__ __forceinline__ void tile_zero(float (&acc)[TM][TN])
{
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
}

__device__ __forceinline__ unsigned tf32_bits(float x) { return __float_as_uint(x) + 0x1000u; }

// bf16 storage: the lane's parts of its ldmatrix row addresses in a stage (element offsets,
// the warp's sub-tile included), computed once before the main loop (gemm_mainloop.cuh) so
// that each ldmatrix in it is one of these plus a compile-time offset:
//   K-major operand: one per mma k-step (kk / 16): the swizzle XORs kk's chunk into it;
//   MN-major operand: one per 16 rows (A: per mma tile mi) or columns (B: per pair of
//   8-column tiles): the swizzle XORs the lane's k into the MN chunk.
// Empty for fp32 storage (the fragment loads compute their addresses as before).
struct fragment_lanes {
    int a[ACT_BF16 ? (A_KMAJOR ? BK / 16 : MT) : 1];
    int b[ACT_BF16 ? (B_KMAJOR ? BK / 16 : NT / 2) : 1];
};

__device__ __forceinline__ fragment_lanes tile_lanes()
{
    fragment_lanes l = {};
    if constexpr (ACT_BF16) {
        const int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
        const int row_base = (warp % WARPS_M) * WM, col_base = (warp / WARPS_M) * WN;
        // A: ldmatrix matrix i = lane / 8 is rows (i & 1)*8.. and k (i >> 1)*8.. of the
        // 16x16 tile (f[i] = a_i); B: columns (i >> 1)*8.. and k (i & 1)*8.. of the pair.
#pragma unroll
        for (int j = 0; j < (int)(sizeof l.a / sizeof l.a[0]); ++j)
            l.a[j] = A_KMAJOR ? row_base * BK + kmajor_at((lane & 7) + ((lane >> 3) & 1) * 8, 16 * j + (lane >> 4) * 8)
                              : mn_row_at(0, row_base + 16 * j, (lane & 7) + (lane >> 4) * 8, ((lane >> 3) & 1) * 8, BM);
#pragma unroll
        for (int j = 0; j < (int)(sizeof l.b / sizeof l.b[0]); ++j)
            l.b[j] = B_KMAJOR ? col_base * BK + kmajor_at((lane & 7) + (lane >> 4) * 8, 16 * j + ((lane >> 3) & 1) * 8)
                              : mn_row_at(0, col_base + 16 * j, (lane & 7) + ((lane >> 3) & 1) * 8, (lane >> 4) * 8, BN);
    }
    return l;
}

// bf16 storage: the A fragment of the warp's mma tile mi, k-step kk (no conversion: the
// registers are the stored bits). kmajor_at(row0 + r, k) = row0*BK + kmajor_at(r, k) for
// row0 % 8 == 0 (the swizzle's period), and kk % 16 == 0 leaves the MN-major swizzle alone.
__device__ __forceinline__ void a_fragment_bf16(const tile_elem *a, const fragment_lanes &l, int mi, int kk,
                                                unsigned (&f)[4])
{
    if (A_KMAJOR) pp_ldmatrix_x4(f, a + 16 * mi * BK + l.a[kk / 16]);
    else pp_ldmatrix_x4_trans(f, a + kk * BM + l.a[mi]);
}

// bf16 storage: the B fragments of the warp's 8-column tiles 2p and 2p+1, k-step kk.
__device__ __forceinline__ void b_fragments_bf16(const tile_elem *b, const fragment_lanes &l, int p, int kk,
                                                 unsigned (&f0)[2], unsigned (&f1)[2])
{
    unsigned r[4];
    if (B_KMAJOR) pp_ldmatrix_x4(r, b + 16 * p * BK + l.b[kk / 16]);
    else pp_ldmatrix_x4_trans(r, b + kk * BN + l.b[p]);
    f0[0] = r[0];
    f0[1] = r[1];
    f1[0] = r[2];
    f1[1] = r[3];
}

// The A fragment of the 16-row mma tile at tile row `row0`, k-step kk (fp32 storage).
__device__ __forceinline__ void a_fragment(const tile_elem *a, int row0, int kk, unsigned (&f)[4])
{
    const int lane = (int)threadIdx.x % 32, g = lane / 4, t = lane % 4;
    if (MATH == 1) {
        if (A_KMAJOR) {
            // row0 % 8 == 0 and the swizzle repeats every 8 rows: the lane's part of the
            // address depends on kk only (hoisted out of the main loop), row0's is uniform.
            pp_ldmatrix_x4(f, a + row0 * BK + kmajor_at((lane & 7) + ((lane >> 3) & 1) * 8, kk + (lane >> 4) * CHUNK));
#pragma unroll
            for (int i = 0; i < 4; ++i) f[i] += 0x1000u;
        } else {
            const float2 lo = *(const float2 *)(a + mn_fragment_at(kk, row0, t, 2 * g, BM));     // rows g, g+8
            const float2 hi = *(const float2 *)(a + mn_fragment_at(kk, row0, t + 4, 2 * g, BM));
            f[0] = tf32_bits(lo.x);
            f[1] = tf32_bits(lo.y);
            f[2] = tf32_bits(hi.x);
            f[3] = tf32_bits(hi.y);
        }
    } else if (A_KMAJOR) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 v = *(const float2 *)(a + kmajor_at(row0 + g + (i & 1) * 8, kk + 2 * t + (i >> 1) * 8));
            f[i] = pp_pack_bf16x2(v.x, v.y);
        }
    } else {
#pragma unroll
        for (int h = 0; h < 2; ++h) { // k halves: f[2h] rows g, f[2h+1] rows g+8
            const float2 k0 = *(const float2 *)(a + mn_fragment_at(kk + 8 * h, row0, 2 * t, 2 * g, BM));
            const float2 k1 = *(const float2 *)(a + mn_fragment_at(kk + 8 * h, row0, 2 * t + 1, 2 * g, BM));
            f[2 * h] = pp_pack_bf16x2(k0.x, k1.x);
            f[2 * h + 1] = pp_pack_bf16x2(k0.y, k1.y);
        }
    }
}

// The B fragments of the two 8-column mma tiles at tile column col0 and col0 + 8 (fp32
// storage).
__device__ __forceinline__ void b_fragments(const tile_elem *b, int col0, int kk, unsigned (&f0)[2], unsigned (&f1)[2])
{
    const int lane = (int)threadIdx.x % 32, g = lane / 4, t = lane % 4;
    if (MATH == 1) {
        if (B_KMAJOR) {
            unsigned r[4];
            pp_ldmatrix_x4(r, b + col0 * BK + kmajor_at((lane & 7) + (lane >> 4) * 8, kk + ((lane >> 3) & 1) * CHUNK));
            f0[0] = r[0] + 0x1000u;
            f0[1] = r[1] + 0x1000u;
            f1[0] = r[2] + 0x1000u;
            f1[1] = r[3] + 0x1000u;
        } else {
            const float2 lo = *(const float2 *)(b + mn_fragment_at(kk, col0, t, 2 * g, BN)); // tiles ni, ni+1
            const float2 hi = *(const float2 *)(b + mn_fragment_at(kk, col0, t + 4, 2 * g, BN));
            f0[0] = tf32_bits(lo.x);
            f1[0] = tf32_bits(lo.y);
            f0[1] = tf32_bits(hi.x);
            f1[1] = tf32_bits(hi.y);
        }
    } else if (B_KMAJOR) {
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const float2 v0 = *(const float2 *)(b + kmajor_at(col0 + g, kk + 2 * t + 8 * i));
            const float2 v1 = *(const float2 *)(b + kmajor_at(col0 + 8 + g, kk + 2 * t + 8 * i));
            f0[i] = pp_pack_bf16x2(v0.x, v0.y);
            f1[i] = pp_pack_bf16x2(v1.x, v1.y);
        }
    } else {
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const float2 k0 = *(const float2 *)(b + mn_fragment_at(kk + 8 * i, col0, 2 * t, 2 * g, BN));
            const float2 k1 = *(const float2 *)(b + mn_fragment_at(kk + 8 * i, col0, 2 * t + 1, 2 * g, BN));
            f0[i] = pp_pack_bf16x2(k0.x, k1.x);
            f1[i] = pp_pack_bf16x2(k0.y, k1.y);
        }
    }
}

// acc += the warp's share of A(stage) * B(stage) over one K-tile.
// lanes: tile_lanes(), computed before the main loop.
__device__ __forceinline__ void tile_product(const tile_elem *a, const tile_elem *b, float (&acc)[TM][TN],
                                             const fragment_lanes &lanes)
{
    const int warp = (int)threadIdx.x / 32;
    const int row_base = (warp % WARPS_M) * WM, col_base = (warp / WARPS_M) * WN;
#pragma unroll
    for (int kk = 0; kk < BK; kk += MMA_K) {
        unsigned af[MT][4], bf[NT][2];
#pragma unroll
        for (int mi = 0; mi < MT; ++mi) {
            if constexpr (ACT_BF16) a_fragment_bf16(a, lanes, mi, kk, af[mi]);
            else a_fragment(a, row_base + 16 * mi, kk, af[mi]);
        }
#pragma unroll
        for (int ni = 0; ni < NT; ni += 2) {
            if constexpr (ACT_BF16) b_fragments_bf16(b, lanes, ni / 2, kk, bf[ni], bf[ni + 1]);
            else b_fragments(b, col_base + 8 * ni, kk, bf[ni], bf[ni + 1]);
        }
#pragma unroll
        for (int mi = 0; mi < MT; ++mi)
#pragma unroll
            for (int ni = 0; ni < NT; ++ni) {
                float d[4] = { acc[2 * mi][2 * ni], acc[2 * mi][2 * ni + 1], acc[2 * mi + 1][2 * ni],
                               acc[2 * mi + 1][2 * ni + 1] };
                if (MATH == 1) pp_mma_tf32_16x8x8(d, af[mi], bf[ni]);
                else pp_mma_bf16_16x8x16(d, af[mi], bf[ni]);
                acc[2 * mi][2 * ni] = d[0];
                acc[2 * mi][2 * ni + 1] = d[1];
                acc[2 * mi + 1][2 * ni] = d[2];
                acc[2 * mi + 1][2 * ni + 1] = d[3];
            }
    }
}
