// gemm_mma.cuh - the tensor-core tile product (TF32 m16n8k8 or BF16 m16n8k16, f32
// accumulation) of the implicit-GEMM main loop (gemm_mainloop.cuh): shared-memory layouts,
// fragment loads, mma. The same functions as gemm_tile.cuh (the fp32 FFMA product), so a
// kernel's iterator and epilogue do not depend on the math. Emitted after ptx_async_copy.cuh,
// ptx_ldmatrix.cuh and ptx_mma.cuh inside the kernel's namespace. Constants:
//   BM BN BK WARPS_M WARPS_N THREADS MATH (1 = TF32, 2 = BF16)
//   A_KMAJOR, B_KMAJOR: the shared-memory layout of each operand (below)
//   TM = 2*(BM/WARPS_M/16), TN = 2*(BN/WARPS_N/8)
// Operands are fp32 in memory and in shared memory.
//
// Shared-memory layouts (fp32, in 16-byte chunks of 4 elements):
//   K-major (X_KMAJOR = 1): ROWS x BK, element (row, k) at row*BK + k, the chunk index
//     XOR-swizzled by the row: chunk ^ (row & 7) when a row is 8 chunks (BK = 32),
//     chunk ^ ((row >> 1) & 3) when it is 4 (BK = 16). The 8 rows one ldmatrix phase reads
//     at one logical chunk then fall in 8 distinct 16-byte bank groups.
//   MN-major (X_KMAJOR = 0): BK x COLS (COLS = BM or BN, a multiple of 32), element
//     (k, col) at k*COLS + col with the chunk index XOR 2*(phase(k) & 3), phase(k) = k for
//     TF32 and k/2 for BF16. Pairs of mma tiles are interleaved along MN: the 16 rows (or
//     columns) of tiles 2p and 2p+1 (A: rows g and g+8 of one 16-row tile) lie at 2q and
//     2q+1, so one 64-bit load gives a lane both (tile_row/tile_col map back). A TF32
//     fragment's lanes (g, t) then read (k0 + t, col0 + 2g, +1) and BF16's (k0 + 2t (+1),
//     col0 + 2g, +1), k0 % 8 == 0, col0 % 16 == 0: each half-warp's 4 rows land in 4
//     distinct pairs of bank groups, conflict-free. The XOR touches chunk bits 1-2 only, so
//     a fragment address is one of 2 lane parts (by col0's chunk bit 2) plus a
//     compile-time offset.
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
//   BF16 (operands fp32 in memory): 64-bit or 32-bit shared loads and one cvt.rn.bf16x2
//     per register. (bf16 storage, which lets BF16 use ldmatrix directly, is not yet here.)
constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
constexpr int MT = WM / 16, NT = WN / 8; // mma tiles of a warp
constexpr int MMA_K = MATH == 2 ? 16 : 8;
constexpr int A_TILE = BM * BK, B_TILE = BN * BK; // floats per stage
static_assert(BK == 16 || BK == 32, "BK: 4 or 8 chunks per K-major row");
static_assert(BM % 32 == 0 && BN % 32 == 0, "MN-major rows span whole bank rows");
static_assert(NT % 2 == 0, "B fragments are loaded for pairs of 8-column tiles");


// Where the operand iterators store element (row, k) of A and (k, col) of B in a stage.
__device__ __forceinline__ int kmajor_at(int row, int k);
__device__ __forceinline__ int mnmajor_at(int k, int col, int cols);
__device__ __forceinline__ int a_offset(int row, int k) { return A_KMAJOR ? kmajor_at(row, k) : mnmajor_at(k, row, BM); }
__device__ __forceinline__ int b_offset(int k, int col) { return B_KMAJOR ? kmajor_at(col, k) : mnmajor_at(k, col, BN); }

// Float offset of element (row, k) of a K-major tile.
__device__ __forceinline__ int kmajor_at(int row, int k)
{
    const int swizzle = BK == 32 ? (row & 7) : ((row >> 1) & 3);
    return row * BK + (((k >> 2) ^ swizzle) << 2) + (k & 3);
}

// Float offset of element (k, col) of an MN-major tile with `cols` columns.
__device__ __forceinline__ int mnmajor_at(int k, int col, int cols)
{
    const int phase = ((MATH == 2 ? k >> 1 : k) & 3) << 1;
    return k * cols + (((col >> 2) ^ phase) << 2) + (col & 3);
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
// K-major tiles are in order, MN-major ones interleave rows r and r+8 (see above).
__device__ __forceinline__ int a_tile_row(int row0, int r) { return A_KMAJOR ? row0 + r : row0 + 2 * (r & 7) + (r >> 3); }

// Which tile rows and columns this thread's accumulators hold (as gemm_tile.cuh):
// acc[2*mi + h][2*ni + e] is D of mma tile (mi, ni) at row 16*mi + 8*h + g, column
// 8*ni + 2t + e of the warp's sub-tile; warp w's sub-tile is at rows (w % WARPS_M)*WM,
// columns (w / WARPS_M)*WN.
// (MN-major operands interleave pairs of mma tiles: rows r and r+8 of A's 16-row tiles,
// columns of B's 8-column tiles 2p and 2p+1.)
__device__ __forceinline__ int tile_row(int i)
{
    const int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    return a_tile_row((warp % WARPS_M) * WM + (i / 2) * 16, (i % 2) * 8 + lane / 4);
}

__device__ __forceinline__ int tile_col(int j)
{
    const int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    const int ni = j / 2, n = 2 * (lane % 4) + (j % 2); // mma tile, its column
    if (B_KMAJOR) return (warp / WARPS_M) * WN + ni * 8 + n;
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

// The A fragment of the 16-row mma tile at tile row `row0`, k-step kk.
__device__ __forceinline__ void a_fragment(const float *a, int row0, int kk, unsigned (&f)[4])
{
    const int lane = (int)threadIdx.x % 32, g = lane / 4, t = lane % 4;
    if (MATH == 1) {
        if (A_KMAJOR) {
            // row0 % 8 == 0 and the swizzle repeats every 8 rows: the lane's part of the
            // address depends on kk only (hoisted out of the main loop), row0's is uniform.
            pp_ldmatrix_x4(f, a + row0 * BK + kmajor_at((lane & 7) + ((lane >> 3) & 1) * 8, kk + (lane >> 4) * 4));
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

// The B fragments of the two 8-column mma tiles at tile column col0 and col0 + 8.
__device__ __forceinline__ void b_fragments(const float *b, int col0, int kk, unsigned (&f0)[2], unsigned (&f1)[2])
{
    const int lane = (int)threadIdx.x % 32, g = lane / 4, t = lane % 4;
    if (MATH == 1) {
        if (B_KMAJOR) {
            unsigned r[4];
            pp_ldmatrix_x4(r, b + col0 * BK + kmajor_at((lane & 7) + (lane >> 4) * 8, kk + ((lane >> 3) & 1) * 4));
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
__device__ __forceinline__ void tile_product(const float *a, const float *b, float (&acc)[TM][TN])
{
    const int warp = (int)threadIdx.x / 32;
    const int row_base = (warp % WARPS_M) * WM, col_base = (warp / WARPS_M) * WN;
#pragma unroll
    for (int kk = 0; kk < BK; kk += MMA_K) {
        unsigned af[MT][4], bf[NT][2];
#pragma unroll
        for (int mi = 0; mi < MT; ++mi) a_fragment(a, row_base + 16 * mi, kk, af[mi]);
#pragma unroll
        for (int ni = 0; ni < NT; ni += 2) b_fragments(b, col_base + 8 * ni, kk, bf[ni], bf[ni + 1]);
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
