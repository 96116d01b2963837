// softmax_ce.cu - softmax cross-entropy loss and its gradient, one block for the batch.
//   logits, dlogits: (N,CLASSES)  labels: (N) int32  loss: (2)
//   loss[0]    = (1/N) * sum_n (logsumexp(z_n) - z_n[label_n]),  logsumexp(z) = max z + log sum exp(z - max z)
//   loss[1]    = the number of rows whose prediction (the first index of the row's maximum)
//                is the label: training accuracy at no extra pass over the logits
//   dlogits[n] = (softmax(z_n) - onehot(label_n)) / N
// Warp w handles rows w, w+WARPS, ...: the row max and the sum of exp(z - max) with warp
// reductions, then dlogits, and the row's loss into shared memory; then the block adds
// the N row losses in a fixed tree (deterministic) and thread 0 writes loss.
// A label outside [0, CLASSES) is not read out of bounds: it is clamped for dlogits and
// the row's loss is NaN, so the batch loss is NaN and the runtime can report it. NaN logits
// give a NaN loss too.
// Generator constants: N CLASSES THREADS
// Launch: grid (1), block (THREADS).
__device__ __forceinline__ float warp_max_all(float v)
{
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v; // every lane holds the same maximum
}

extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const float *__restrict__ logits, const int *__restrict__ labels, float *__restrict__ loss,
          float *__restrict__ dlogits)
{
    __shared__ float row_loss[N];
    __shared__ float row_correct[N];
    __shared__ float scratch[2 * WARPS];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int row = warp; row < N; row += WARPS) {
        const float *z = logits + row * CLASSES;
        float top = -__int_as_float(0x7f800000);
        for (int j = lane; j < CLASSES; j += 32) top = fmaxf(top, z[j]);
        top = warp_max_all(top);
        float sum = 0.0f;
        for (int j = lane; j < CLASSES; j += 32) sum += expf(z[j] - top);
        sum = __shfl_sync(0xffffffffu, warp_sum(sum), 0);
        const int label = labels[row];
        const bool bad = label < 0 || label >= CLASSES;
        const int at = bad ? (label < 0 ? 0 : CLASSES - 1) : label;
        float *d = dlogits + row * CLASSES;
        for (int j = lane; j < CLASSES; j += 32)
            d[j] = (expf(z[j] - top) / sum - (j == at ? 1.0f : 0.0f)) / (float)N;
        int first = CLASSES;
        for (int j = lane; j < CLASSES; j += 32)
            if (z[j] == top && j < first) first = j;
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            const int other = __shfl_xor_sync(0xffffffffu, first, off);
            first = other < first ? other : first;
        }
        if (lane == 0) {
            row_loss[row] = bad ? __int_as_float(0x7fc00000) : logf(sum) + top - z[at];
            row_correct[row] = !bad && first == label ? 1.0f : 0.0f;
        }
    }
    __syncthreads();
    float total = 0.0f, correct = 0.0f;
    for (int r = threadIdx.x; r < N; r += THREADS) total += row_loss[r], correct += row_correct[r];
    block_sum2(total, correct, scratch);
    if (threadIdx.x == 0) {
        loss[0] = total / (float)N;
        loss[1] = correct; // an integer below 2^24: exact in float
    }
}
PP_KERNEL_EXPORT(${KERNEL})
