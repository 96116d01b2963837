// avgpool_fwd.cu - global average pooling, channels-last, one block per (image, group of CT
// channels).
//   x: (N,HW,C) act_t (float, or bf16 bits if ACT_BF16), element (n,i,c) at (n*HW + i)*C + c
//   y: (N,C) float (the classifier's input stays fp32)
//   y[n,c] = (sum over i of x[n,i,c]) / HW  (ACT_BF16: of the widened elements, in fp32)
// Indexing: block b covers image n = b / CB and channels cb*CT .. cb*CT + CT-1 (cb = b % CB,
// CB = ceil(C/CT)); thread t takes channel c = cb*CT + t%CT and pixel group g = t/CT of
// PG = 32, so a warp reads 32/CT pixels of CT consecutive channels (coalesced). Each thread
// sums its pixels i = g, g+32, ... in order, then the block adds the 32 groups' sums of each
// channel in a fixed 5-level tree (ops_common.cuh block_sum2_cols: deterministic).
// Generator constants: N C HW CT (a power of two <= 32) CB (= ceil(C/CT)) PG (= 32)
//   ACT_BF16 THREADS (= CT*PG)
// Launch: grid (N*CB), block (THREADS).
static_assert(PG == 32 && PG * CT == THREADS, "32 pixel groups of CT channels");
using act_t = pp_select_t<ACT_BF16 == 1, unsigned short, float>;

extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const act_t *__restrict__ x, float *__restrict__ y)
{
    __shared__ float scratch[2 * WARPS * CT];
    const int n = blockIdx.x / CB, g = threadIdx.x / CT, c = (blockIdx.x % CB) * CT + threadIdx.x % CT;
    float sum = 0.0f, unused = 0.0f;
    if (c < C) {
        const act_t *src = x + n * (HW * C) + c;
        for (int i = g; i < HW; i += PG) sum += act_load(src, i * C);
    }
    block_sum2_cols<CT>(sum, unused, scratch);
    if (g == 0 && c < C) y[n * C + c] = sum / (float)HW;
}
PP_KERNEL_EXPORT(${KERNEL})
