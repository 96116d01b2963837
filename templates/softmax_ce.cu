// softmax_ce.cu - softmax cross-entropy loss and its gradient, one block for the batch.
//   logits, dlogits: (N,CLASSES)  labels: (N) int32  loss: (2)
//   loss[0]    = (1/N) * sum_n (logsumexp(z_n) - z_n[label_n]),  logsumexp(z) = max z + log sum exp(z - max z)
//   loss[1]    = the number of rows whose prediction (the first index of the row's maximum)
//                is the label: training accuracy at no extra pass over the logits
//   dlogits[n] = (softmax(z_n) - onehot(label_n)) / N
// Warp w handles rows w, w+WARPS, ... (softmax_ce_row.cuh: the row max and the sum of
// exp(z - max) with warp reductions, then dlogits), and puts the row's loss into shared
// memory; then thread t adds rows t, t+THREADS, ... in order and the block adds the threads'
// sums in a fixed tree (block_sum2: deterministic), and thread 0 writes loss.
// A label outside [0, CLASSES) is not read out of bounds: it is clamped for dlogits and
// the row's loss is NaN, so the batch loss is NaN and the runtime can report it. NaN logits
// give a NaN loss too.
// For larger batches the generator uses the multi-block pair softmax_ce_rows +
// softmax_ce_reduce instead (same rows, same final sum, so the same bits).
// Generator constants: N CLASSES THREADS
// Launch: grid (1), block (THREADS).
extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const float *__restrict__ logits, const int *__restrict__ labels, float *__restrict__ loss,
          float *__restrict__ dlogits)
{
    __shared__ float row_loss[N];
    __shared__ float row_correct[N];
    __shared__ float scratch[2 * WARPS];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int row = warp; row < N; row += WARPS) {
        float l, hit;
        softmax_ce_row(logits, labels, dlogits, row, l, hit);
        if (lane == 0) {
            row_loss[row] = l;
            row_correct[row] = hit;
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
