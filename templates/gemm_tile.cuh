// gemm_tile.cuh - the register-tile product the implicit-GEMM kernels share. The generator
// emits it inside each kernel's namespace, after that kernel's constants, so BM BN BK TM
// TN are the kernel's own.
//   a_tile: (BK, BM)  b_tile: (BK, BN)  acc: (TM, TN) in registers
// The thread at (row, col) of the (BM/TM) x (BN/TN) thread grid owns the tile rows
// row + i*(BM/TM) and columns col + j*(BN/TN).
__device__ __forceinline__ void tile_zero(float (&acc)[TM][TN])
{
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
}

__device__ __forceinline__ void tile_multiply_accumulate(const float (&a_tile)[BK][BM],
                                                         const float (&b_tile)[BK][BN], int row,
                                                         int col, float (&acc)[TM][TN])
{
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
        float a[TM], b[TN];
#pragma unroll
        for (int i = 0; i < TM; ++i) a[i] = a_tile[kk][row + i * (BM / TM)];
#pragma unroll
        for (int j = 0; j < TN; ++j) b[j] = b_tile[kk][col + j * (BN / TN)];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
}
