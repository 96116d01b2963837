// gemm_tile.cuh - the fp32 (FFMA) register-tile product of the implicit-GEMM main loop
// (gemm_mainloop.cuh). The generator emits it inside each kernel's namespace, after that
// kernel's constants, so BM BN BK TM TN THREADS TILE_PAD ROW_FASTEST are the kernel's own.
//   a stage: (BK, BM + TILE_PAD)  b stage: (BK, BN + TILE_PAD)  acc: (TM, TN) in registers
// The (BM/TM) x (BN/TN) thread grid runs rows fastest when ROW_FASTEST (consecutive
// threads then own consecutive tile rows), else columns; the thread at (row, col) owns
// tile rows row + i*(BM/TM) and columns col + j*(BN/TN). gemm_mma.cuh provides the same
// functions for tensor cores, so a kernel's iterator and epilogue do not depend on the math.
// Operands are fp32 in memory and in shared memory (bf16 storage needs the BF16 mma tiles).
static_assert(!ACT_BF16, "bf16 storage needs the BF16 tensor-core tiles (gemm_mma.cuh, MATH = 2)");
using tile_elem = float;
constexpr int A_TILE = BK * (BM + TILE_PAD), B_TILE = BK * (BN + TILE_PAD); // floats per stage

// Where the operand iterators store element (row, k) of A and (k, col) of B in a stage.
__device__ __forceinline__ int a_offset(int row, int k) { return k * (BM + TILE_PAD) + row; }
__device__ __forceinline__ int b_offset(int k, int col) { return k * (BN + TILE_PAD) + col; }

__device__ __forceinline__ void tile_zero(float (&acc)[TM][TN])
{
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
}
__device__ __forceinline__ int tile_row(int i)
{
    const int row = ROW_FASTEST ? (int)threadIdx.x % (BM / TM) : (int)threadIdx.x / (BN / TN);
    return row + i * (BM / TM);
}

__device__ __forceinline__ int tile_col(int j)
{
    const int col = ROW_FASTEST ? (int)threadIdx.x / (BM / TM) : (int)threadIdx.x % (BN / TN);
    return col + j * (BN / TN);
}

// Column statistics (conv_fwd's BN partials): with ROW_FASTEST, the threads that own one
// column are one aligned segment of BM/TM (a power of 2, at most 32) consecutive lanes, so
// a butterfly over the segment sums over every row of the block: one partial per block.
constexpr int STAT_PARTS = 1;
__device__ __forceinline__ float tile_column_sum(float v)
{
#pragma unroll
    for (int o = 1; o < BM / TM; o *= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ int tile_stat_part() { return 0; }
__device__ __forceinline__ bool tile_stat_writer() { return (int)threadIdx.x % (BM / TM) == 0; }

// What the tile product keeps across the main loop (gemm_mma.cuh's bf16 fragment
// addresses): nothing here.
struct fragment_lanes {};
__device__ __forceinline__ fragment_lanes tile_lanes() { return fragment_lanes{}; }

// acc += this thread's share of A(stage) * B(stage) over one K-tile.
__device__ __forceinline__ void tile_product(const float *a_stage, const float *b_stage, float (&acc)[TM][TN],
                                             const fragment_lanes &)
{
    const int row = tile_row(0), col = tile_col(0);
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
        float a[TM], b[TN];
#pragma unroll
        for (int i = 0; i < TM; ++i) a[i] = a_stage[a_offset(row + i * (BM / TM), kk)];
#pragma unroll
        for (int j = 0; j < TN; ++j) b[j] = b_stage[b_offset(kk, col + j * (BN / TN))];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
}
