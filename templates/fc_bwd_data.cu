// fc_bwd_data.cu - fully connected layer, input gradient, a tiled GEMM (fc_gemm.cuh).
//   dy: (N,OUT)  w: (OUT,IN)  dx: (N,IN)
//   dx[n,i] = sum_o dy[n,o]*w[o,i]
// GEMM view: GM = N, GN = IN, GK = OUT; A(m,k) = dy[m*OUT + k], B(k,i) = w[k*IN + i].
// Generator constants: N IN OUT GM GN GK A_SM A_SK B_SK B_SN BM BN BK TM TN THREADS
// Launch: grid (ceil(N/BM), ceil(IN/BN)), block (THREADS).
extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const float *__restrict__ dy, const float *__restrict__ w, float *__restrict__ dx)
{
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
    float acc[TM][TN], unused = 0.0f;
    fc_gemm_block(dy, w, m0, n0, acc, false, unused);
    const int row = threadIdx.x / (BN / TN), col = threadIdx.x % (BN / TN);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + row + i * (BM / TM);
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int n = n0 + col + j * (BN / TN);
            if (m < GM && n < GN) dx[m * GN + n] = acc[i][j];
        }
    }
}
PP_KERNEL_EXPORT(${KERNEL})
