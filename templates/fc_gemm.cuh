// fc_gemm.cuh - the block tile of C = A*B the fully connected kernels share (fc_fwd.cu,
// fc_bwd_data.cu, fc_bwd_weight.cu). The generator emits it inside each kernel's namespace,
// after that kernel's constants.
//   A(m,k) = a[m*A_SM + k*A_SK]  m in [0,GM), k in [0,GK)
//   B(k,n) = b[k*B_SK + n*B_SN]  n in [0,GN)
// A block computes the BM x BN tile at (m0, n0) with THREADS = (BM/TM)*(BN/TN) threads;
// thread (row, col) = (tid / (BN/TN), tid % (BN/TN)) owns rows row + i*(BM/TM) and columns
// col + j*(BN/TN), so consecutive threads own consecutive columns n: the contiguous
// dimension of every fc output. Tiles are loaded along whichever of m/k (n/k) is
// contiguous in memory, so global reads coalesce; the shared tiles have one padding
// column so that loads along k store without bank conflicts.
// The k loop runs in a fixed order (k0 ascending, kk ascending): deterministic.
// Generator constants: GM GN GK A_SM A_SK B_SK B_SN BM BN BK TM TN THREADS
static_assert(THREADS == (BM / TM) * (BN / TN), "THREADS must match the tile");

// want_rowsum: thread tid < BM also adds A(m0+tid, k) over all k into rowsum, in k order.
__device__ __forceinline__ void fc_gemm_block(const float *__restrict__ a, const float *__restrict__ b, int m0,
                                              int n0, float (&acc)[TM][TN], bool want_rowsum, float &rowsum)
{
    __shared__ float a_tile[BK][BM + 1];
    __shared__ float b_tile[BK][BN + 1];
    const int tid = threadIdx.x, row = tid / (BN / TN), col = tid % (BN / TN);
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < GK; k0 += BK) {
        for (int e = tid; e < BK * BM; e += THREADS) {
            const int ki = A_SK == 1 ? e % BK : e / BM, mi = A_SK == 1 ? e / BK : e % BM;
            const int m = m0 + mi, k = k0 + ki;
            a_tile[ki][mi] = (m < GM && k < GK) ? a[m * A_SM + k * A_SK] : 0.0f;
        }
        for (int e = tid; e < BK * BN; e += THREADS) {
            const int ki = B_SK == 1 ? e % BK : e / BN, ni = B_SK == 1 ? e / BK : e % BN;
            const int n = n0 + ni, k = k0 + ki;
            b_tile[ki][ni] = (n < GN && k < GK) ? b[k * B_SK + n * B_SN] : 0.0f;
        }
        __syncthreads();
        if (want_rowsum && tid < BM)
            for (int kk = 0; kk < BK; ++kk) rowsum += a_tile[kk][tid];
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float av[TM], bv[TN];
#pragma unroll
            for (int i = 0; i < TM; ++i) av[i] = a_tile[kk][row + i * (BM / TM)];
#pragma unroll
            for (int j = 0; j < TN; ++j) bv[j] = b_tile[kk][col + j * (BN / TN)];
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }
}
