// gemm_mma.cuh - the tensor-core tile product (TF32 m16n8k8 or BF16 m16n8k16, f32
// accumulation) the implicit-GEMM kernels share; the same functions as gemm_tile.cuh.
// Emitted after ptx_mma.cuh inside each kernel's namespace. Constants:
//   BM BN BK TILE_PAD, WARPS_M x WARPS_N warps, MATH (1 = TF32, 2 = BF16),
//   TM = 2*(BM/WARPS_M/16), TN = 2*(BN/WARPS_N/8)
//   a_tile: (BK, BM + TILE_PAD)  b_tile: (BK, BN + TILE_PAD)  acc: (TM, TN) in registers
// Warp w computes the WM x WN = (BM/WARPS_M) x (BN/WARPS_N) sub-tile at rows
// (w % WARPS_M)*WM, columns (w / WARPS_M)*WN, as (WM/16) x (WN/8) mma tiles. Lane 4g+t
// holds acc[2*mi + h][2*ni + e] = D of mma tile (mi, ni) at row 16*mi + 8*h + g, column
// 8*ni + 2t + e (the fragment layout in ptx_mma.cuh). Operands are rounded to TF32 (or
// BF16) when a fragment is built from the f32 tiles. TILE_PAD = 8 puts the 8 rows x 4
// k-columns a fragment load touches in 32 different banks (TF32).
constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
constexpr int MMA_K = MATH == 2 ? 16 : 8;

__device__ __forceinline__ int tile_row(int i)
{
    const int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    return (warp % WARPS_M) * WM + (i / 2) * 16 + (i % 2) * 8 + lane / 4;
}

__device__ __forceinline__ int tile_col(int j)
{
    const int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    return (warp / WARPS_M) * WN + (j / 2) * 8 + 2 * (lane % 4) + (j % 2);
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

__device__ __forceinline__ void tile_multiply_accumulate(const float (&a_tile)[BK][BM + TILE_PAD],
                                                         const float (&b_tile)[BK][BN + TILE_PAD],
                                                         float (&acc)[TM][TN])
{
    const int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    const int g = lane / 4, t = lane % 4;
    const int row0 = (warp % WARPS_M) * WM + g, col0 = (warp / WARPS_M) * WN + g;
#pragma unroll
    for (int kk = 0; kk < BK; kk += MMA_K) {
        unsigned af[TM / 2][4], bf[TN / 2][2];
#pragma unroll
        for (int mi = 0; mi < TM / 2; ++mi) {
            const int r = row0 + 16 * mi;
            if (MATH == 1) {
                af[mi][0] = pp_f32_to_tf32(a_tile[kk + t][r]);
                af[mi][1] = pp_f32_to_tf32(a_tile[kk + t][r + 8]);
                af[mi][2] = pp_f32_to_tf32(a_tile[kk + t + 4][r]);
                af[mi][3] = pp_f32_to_tf32(a_tile[kk + t + 4][r + 8]);
            } else {
                af[mi][0] = pp_pack_bf16x2(a_tile[kk + 2 * t][r], a_tile[kk + 2 * t + 1][r]);
                af[mi][1] = pp_pack_bf16x2(a_tile[kk + 2 * t][r + 8], a_tile[kk + 2 * t + 1][r + 8]);
                af[mi][2] = pp_pack_bf16x2(a_tile[kk + 2 * t + 8][r], a_tile[kk + 2 * t + 9][r]);
                af[mi][3] = pp_pack_bf16x2(a_tile[kk + 2 * t + 8][r + 8], a_tile[kk + 2 * t + 9][r + 8]);
            }
        }
#pragma unroll
        for (int ni = 0; ni < TN / 2; ++ni) {
            const int c = col0 + 8 * ni;
            if (MATH == 1) {
                bf[ni][0] = pp_f32_to_tf32(b_tile[kk + t][c]);
                bf[ni][1] = pp_f32_to_tf32(b_tile[kk + t + 4][c]);
            } else {
                bf[ni][0] = pp_pack_bf16x2(b_tile[kk + 2 * t][c], b_tile[kk + 2 * t + 1][c]);
                bf[ni][1] = pp_pack_bf16x2(b_tile[kk + 2 * t + 8][c], b_tile[kk + 2 * t + 9][c]);
            }
        }
#pragma unroll
        for (int mi = 0; mi < TM / 2; ++mi)
#pragma unroll
            for (int ni = 0; ni < TN / 2; ++ni) {
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
