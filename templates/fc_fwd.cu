// fc_fwd.cu - fully connected layer forward, a tiled GEMM (fc_gemm.cuh).
//   x: (N,IN)  w: (OUT,IN)  b: (OUT)  y: (N,OUT)
//   y[n,o] = b[o] + sum_i x[n,i]*w[o,i]
// GEMM view: GM = N, GN = OUT, GK = IN; A(m,k) = x[m*IN + k], B(k,o) = w[o*IN + k].
// Generator constants: N IN OUT GM GN GK A_SM A_SK B_SK B_SN BM BN BK TM TN THREADS
// Launch: grid (ceil(N/BM), ceil(OUT/BN)), block (THREADS).
extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const float *__restrict__ x, const float *__restrict__ w, const float *__restrict__ b,
          float *__restrict__ y)
{
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
    float acc[TM][TN], unused = 0.0f;
    fc_gemm_block(x, w, m0, n0, acc, false, unused);
    const int row = threadIdx.x / (BN / TN), col = threadIdx.x % (BN / TN);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + row + i * (BM / TM);
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int o = n0 + col + j * (BN / TN);
            if (m < GM && o < GN) y[m * GN + o] = acc[i][j] + b[o];
        }
    }
}
PP_KERNEL_EXPORT(${KERNEL})
