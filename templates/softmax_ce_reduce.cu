// softmax_ce_reduce.cu - softmax cross-entropy, multi-block form, second pass: the batch's
// mean loss and count of correct predictions from the rows softmax_ce_rows.cu wrote.
//   rows: (N,2) = (loss, correct) per row  loss: (2)
//   loss[0] = (1/N) * sum_n rows[n][0]  (NaN if any row's loss is NaN: a bad label, NaN logits)
//   loss[1] = sum_n rows[n][1], the number of rows predicted correctly (exact in fp32 below 2^24)
// Order: thread t adds rows t, t+THREADS, ... in order, then the block adds the threads'
// sums in block_sum2's fixed tree: deterministic, no atomics. With the THREADS of
// softmax_ce.cu (512) these are the additions that kernel makes, so both forms give the
// same bits.
// Generator constants: N THREADS
// Launch: grid (1), block (THREADS).
extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const float *__restrict__ rows, float *__restrict__ loss)
{
    __shared__ float scratch[2 * WARPS];
    float total = 0.0f, correct = 0.0f;
    for (int r = threadIdx.x; r < N; r += THREADS) total += rows[r * 2], correct += rows[r * 2 + 1];
    block_sum2(total, correct, scratch);
    if (threadIdx.x == 0) {
        loss[0] = total / (float)N;
        loss[1] = correct;
    }
}
PP_KERNEL_EXPORT(${KERNEL})
