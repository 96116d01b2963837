// gemm_mainloop.cuh - the one implicit-GEMM main loop the three convolution kernels share
// (conv_fwd, conv_bwd_data, conv_bwd_weight), whatever the tile product (gemm_tile.cuh:
// fp32 FFMA, or gemm_mma.cuh: tensor cores). A kernel supplies only its operand iterator:
// a struct with a function load_tiles(it, a_stage, b_stage) (found by argument-dependent
// lookup) that issues the copies of the iterator's next K-tile into one stage, through
// tile_copy at a_offset(row, k) / b_offset(k, col), and advances; and its epilogue.
// Emitted after the tile product, inside the kernel's namespace. Constants: STAGES
// (1..4), and A_TILE, B_TILE (floats per stage) from the tile product.
//
// STAGES == 1: stores are synchronous; per K-tile: load, barrier, compute, barrier.
// STAGES >= 2 (cp.async, one barrier per K-tile): the prologue issues K-tiles
// 0..STAGES-2, one commit group each; iteration kt waits until group kt has landed
// (wait_group STAGES-2), passes the barrier (so every warp is done with the stage computed
// at kt-1, and every thread's copies of K-tile kt are visible), issues K-tile kt+STAGES-1
// into that freed stage, commits (an empty group past the end keeps the count uniform) and
// computes K-tile kt.
static_assert(STAGES >= 1 && STAGES <= 4, "STAGES: 1..4");

// dst[0..vec) = valid ? src[0..vec) : 0 (vec 4 or 1 floats; src is not read when !valid):
// a plain store with STAGES == 1, else an asynchronous copy (16 bytes: 16-aligned dst and src).
__device__ __forceinline__ void tile_copy(float *dst, const float *src, bool valid, int vec)
{
    if (STAGES == 1) {
        for (int i = 0; i < vec; ++i) dst[i] = valid ? src[i] : 0.0f;
    } else if (vec == 4) {
        pp_cp_async_16(dst, src, valid ? 16 : 0);
    } else {
        pp_cp_async_f32(dst, src, valid);
    }
}

// acc += A * B over `ktiles` K-tiles that `it` delivers in order. Every thread of the block
// calls it (it has barriers).
template <class Iterator>
__device__ __forceinline__ void gemm_mainloop(Iterator &it, int ktiles, float (&acc)[TM][TN])
{
    __shared__ __align__(128) float a_smem[STAGES][A_TILE];
    __shared__ __align__(128) float b_smem[STAGES][B_TILE];
    if (STAGES == 1) {
        for (int kt = 0; kt < ktiles; ++kt) {
            load_tiles(it, a_smem[0], b_smem[0]);
            __syncthreads();
            tile_product(a_smem[0], b_smem[0], acc);
            __syncthreads();
        }
        return;
    }
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < ktiles) load_tiles(it, a_smem[s], b_smem[s]);
        pp_cp_async_commit();
    }
    int read = 0, write = STAGES - 1;
    for (int kt = 0; kt < ktiles; ++kt) {
        pp_cp_async_wait_pending(STAGES - 2);
        __syncthreads();
        if (kt + STAGES - 1 < ktiles) load_tiles(it, a_smem[write], b_smem[write]);
        pp_cp_async_commit();
        tile_product(a_smem[read], b_smem[read], acc);
        read = read == STAGES - 1 ? 0 : read + 1;
        write = write == STAGES - 1 ? 0 : write + 1;
    }
    pp_cp_async_wait_all();
}
