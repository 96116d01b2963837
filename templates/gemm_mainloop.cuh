// gemm_mainloop.cuh - the one implicit-GEMM main loop the three convolution kernels share
// (conv_fwd, conv_bwd_data, conv_bwd_weight), whatever the tile product (gemm_tile.cuh:
// fp32 FFMA, or gemm_mma.cuh: tensor cores). A kernel supplies only its operand iterator:
// a struct with a function load_tiles(it, a_stage, b_stage) (found by argument-dependent
// lookup) that issues the copies of the iterator's next K-tile into one stage, through
// tile_copy at a_offset(row, k) / b_offset(k, col), and advances; and its epilogue.
// Emitted after ops_common.cuh and the tile product, inside the kernel's namespace. The
// tile product's tile_lanes() is computed once before the loop and handed to every
// tile_product call.
// Constants: STAGES (1..4), SMEM_BYTES (the generator's size of the stages, checked here),
// ACT_BF16, and A_TILE, B_TILE (elements per stage) and tile_elem (the element type of the
// operands in memory and in shared memory: float, or with ACT_BF16 the bf16 bits as
// unsigned short) from the tile product.
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
// Copies by width (VEC elements of tile_elem): 16 bytes (4 fp32 / 8 bf16 channels) with
// cp.async.cg, 8 or 4 bytes (4 or 2 bf16 channels, or 1 fp32) with cp.async.ca, and a
// single bf16 channel (odd channel counts: the 3-channel stem) as a synchronous 2-byte
// load and shared store. The synchronous store is safe in the pipeline because the stage
// it writes was freed by this iteration's barrier (every warp is done computing it), and
// the store is visible to the other threads after the barrier of the iteration that
// computes the stage, as the asynchronous copies are.
static_assert(STAGES >= 1 && STAGES <= 4, "STAGES: 1..4");

// Storage conversions: a stored operand or result element as a float, and a float as the
// element to store (bf16: round to nearest even, ops_common.cuh's bf16_round).
__device__ __forceinline__ float storage_value(float v) { return v; }
__device__ __forceinline__ float storage_value(unsigned short bits) { return bf16_to_float(bits); }
__device__ __forceinline__ tile_elem to_storage(float v) { return ACT_BF16 ? (tile_elem)bf16_round(v) : (tile_elem)v; }

// dst[0..VEC) = valid ? src[0..VEC) : 0 (src is not read when !valid; dst and src aligned
// to the copy's bytes): a plain store with STAGES == 1, else by width (header).
template <int VEC>
__device__ __forceinline__ void tile_copy(tile_elem *dst, const tile_elem *src, bool valid)
{
    constexpr int bytes = VEC * (int)sizeof(tile_elem);
    if constexpr (STAGES == 1 || bytes == 2) {
        for (int i = 0; i < VEC; ++i) dst[i] = valid ? src[i] : (tile_elem)0;
    } else if constexpr (bytes == 16) {
        pp_cp_async_16(dst, src, valid ? 16 : 0);
    } else if constexpr (ACT_BF16) {
        pp_cp_async_small<bytes>(dst, src, valid ? bytes : 0);
    } else {
        static_assert(VEC == 1, "fp32 copies: 4 floats or 1");
        pp_cp_async_f32(reinterpret_cast<float *>(dst), reinterpret_cast<const float *>(src), valid); // tile_elem is float
    }
}

// tile_copy from base + offset. On a GPU the address is formed whether or not the copy is
// valid (an invalid copy reads nothing, so an offset outside the tensor is harmless and
// saves a select per copy); on the host an out-of-range pointer is never formed.
template <int VEC>
__device__ __forceinline__ void tile_copy_at(tile_elem *dst, const tile_elem *base, int offset, bool valid)
{
#if defined(PP_HOST_EMULATION)
    tile_copy<VEC>(dst, valid ? base + offset : base, valid);
#else
    tile_copy<VEC>(dst, base + offset, valid);
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
    static_assert(STAGES * (A_TILE + B_TILE) * (int)sizeof(tile_elem) == SMEM_BYTES,
                  "the generator and the tile product agree on the stages");
    // Declared as floats whatever tile_elem is (one extern __shared__ type per translation unit).
    constexpr int smem_floats = SMEM_BYTES / 4;
#if defined(PP_HOST_EMULATION)
    __shared__ __align__(128) float smem_f32[smem_floats];
#else
    constexpr bool dynamic = SMEM_BYTES > 48 * 1024;
    __shared__ __align__(128) float static_smem[dynamic ? 1 : smem_floats];
    extern __shared__ __align__(128) float dynamic_smem[];
    float *smem_f32 = dynamic ? dynamic_smem : static_smem;
#endif
    tile_elem *smem = reinterpret_cast<tile_elem *>(smem_f32);
    tile_elem (*a_smem)[A_TILE] = reinterpret_cast<tile_elem (*)[A_TILE]>(smem);
    tile_elem (*b_smem)[B_TILE] = reinterpret_cast<tile_elem (*)[B_TILE]>(smem + STAGES * A_TILE);
    const fragment_lanes lanes = tile_lanes();
    if (STAGES == 1) {
        for (int kt = 0; kt < ktiles; ++kt) {
            load_tiles(it, a_smem[0], b_smem[0]);
            __syncthreads();
            tile_product(a_smem[0], b_smem[0], acc, lanes);
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
            tile_product(a_smem[s], b_smem[s], acc, lanes);
        }
    }
    pp_cp_async_wait_all();
}
