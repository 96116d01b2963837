// fc_bwd_weight.cu - fully connected layer, weight and bias gradients, a tiled GEMM
// (fc_gemm.cuh).
//   dy: (N,OUT)  x: (N,IN)  dw: (OUT,IN)  db: (OUT)
//   dw[o,i] = sum_n dy[n,o]*x[n,i]   (dw = dy^T x)
//   db[o]   = sum_n dy[n,o], by the blocks of grid column blockIdx.y == 0 from the dy tiles
//             they load anyway (thread tid < BM sums row o = m0+tid in n order)
// GEMM view: GM = OUT, GN = IN, GK = N; A(o,n) = dy[n*OUT + o], B(n,i) = x[n*IN + i].
// Generator constants: N IN OUT GM GN GK A_SM A_SK B_SK B_SN BM BN BK TM TN THREADS
// Launch: grid (ceil(OUT/BM), ceil(IN/BN)), block (THREADS).
extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const float *__restrict__ dy, const float *__restrict__ x, float *__restrict__ dw,
          float *__restrict__ db)
{
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
    const bool bias_block = blockIdx.y == 0;
    float acc[TM][TN], bias_sum = 0.0f;
    fc_gemm_block(dy, x, m0, n0, acc, bias_block, bias_sum);
    if (bias_block && threadIdx.x < BM && m0 + threadIdx.x < GM) db[m0 + threadIdx.x] = bias_sum;
    const int row = threadIdx.x / (BN / TN), col = threadIdx.x % (BN / TN);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + row + i * (BM / TM);
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int n = n0 + col + j * (BN / TN);
            if (m < GM && n < GN) dw[m * GN + n] = acc[i][j];
        }
    }
}
PP_KERNEL_EXPORT(${KERNEL})
