// gemm_mainloop.cuh - the one implicit-GEMM main loop the three convolution kernels share
// (conv_fwd, conv_bwd_data, conv_bwd_weight), whatever the tile product (gemm_tile.cuh:
// fp32 FFMA, or gemm_mma.cuh: tensor cores). A kernel supplies only its operand iterator:
// a struct with a function load_tiles(it, a_stage, b_stage) (found by argument-dependent
// lookup) that issues the copies of the iterator's next K-tile into one stage, through
// tile_copy at a_offset(row, k) / b_offset(k, col), and advances; and its epilogue.
// Emitted after the tile product, inside the kernel's namespace. Constants: STAGES
// (1..4), SMEM_BYTES (the generator's size of the stages, checked here), and A_TILE, B_TILE
// (floats per stage) from the tile product.
// Shared memory: the stages of A, then those of B, static up to 48 KB; above, dynamic on a
// GPU (the plan gives the launch SMEM_BYTES and the runtime raises the kernel's limit) and
// static in the host emulation, which has no such limit.
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

// tile_copy from base + offset. On a GPU the address is formed whether or not the copy is
// valid (an invalid copy reads nothing, so an offset outside the tensor is harmless and
// saves a select per copy); on the host an out-of-range pointer is never formed.
__device__ __forceinline__ void tile_copy_at(float *dst, const float *base, int offset, bool valid, int vec)
{
#if defined(PP_HOST_EMULATION)
    tile_copy(dst, valid ? base + offset : base, valid, vec);
#else
    tile_copy(dst, base + offset, valid, vec);
#endif
}

// A thread's copy units of an operand tile of PER_ROW units per row and UNITS units:
// unit i is number tid + i*THREADS. When THREADS is a multiple of PER_ROW its rows are a
// compile-time step apart and its column is the same for every i, so the compiler can
// address all of them from one base.
template <int PER_ROW> __device__ __forceinline__ int unit_row(int i)
{
    return THREADS % PER_ROW == 0 ? (int)threadIdx.x / PER_ROW + i * (THREADS / PER_ROW)
                                  : ((int)threadIdx.x + i * THREADS) / PER_ROW;
}
// Its column, in elements of VEC per unit.
template <int PER_ROW, int VEC> __device__ __forceinline__ int unit_column(int i)
{
    return ((THREADS % PER_ROW == 0 ? (int)threadIdx.x : (int)threadIdx.x + i * THREADS) % PER_ROW) * VEC;
}
// Whether the unit exists (the last round of units may be partial).
template <int UNITS> __device__ __forceinline__ bool unit_exists(int i)
{
    return UNITS % THREADS == 0 || (int)threadIdx.x + i * THREADS < UNITS;
}

// acc += A * B over `ktiles` K-tiles that `it` delivers in order. Every thread of the block
// calls it (it has barriers).
template <class Iterator>
__device__ __forceinline__ void gemm_mainloop(Iterator &it, int ktiles, float (&acc)[TM][TN])
{
    static_assert(STAGES * (A_TILE + B_TILE) * 4 == SMEM_BYTES, "the generator and the tile product agree on the stages");
#if defined(PP_HOST_EMULATION)
    __shared__ __align__(128) float smem[STAGES * (A_TILE + B_TILE)];
#else
    constexpr bool dynamic = SMEM_BYTES > 48 * 1024;
    __shared__ __align__(128) float static_smem[dynamic ? 1 : STAGES * (A_TILE + B_TILE)];
    extern __shared__ __align__(128) float dynamic_smem[];
    float *smem = dynamic ? dynamic_smem : static_smem;
#endif
    float (*a_smem)[A_TILE] = reinterpret_cast<float (*)[A_TILE]>(smem);
    float (*b_smem)[B_TILE] = reinterpret_cast<float (*)[B_TILE]>(smem + STAGES * A_TILE);
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
    // Unrolled by STAGES, so every stage's shared-memory addresses are compile-time offsets.
    for (int kt0 = 0; kt0 < ktiles; kt0 += STAGES) {
#pragma unroll
        for (int s = 0; s < STAGES; ++s) {
            const int kt = kt0 + s;
            if (kt >= ktiles) break;
            const int write = (s + STAGES - 1) % STAGES;
            pp_cp_async_wait_pending(STAGES - 2);
            __syncthreads();
            if (kt + STAGES - 1 < ktiles) load_tiles(it, a_smem[write], b_smem[write]);
            pp_cp_async_commit();
            tile_product(a_smem[s], b_smem[s], acc);
        }
    }
    pp_cp_async_wait_all();
}
