// softmax_ce_rows.cu - softmax cross-entropy, multi-block form, first pass: one warp per
// row computes the row's gradient, loss and hit; softmax_ce_reduce then adds the rows in a
// fixed order. The generator uses this pair instead of the one-block softmax_ce.cu for
// larger batches, so the rows spread over the GPU's SMs.
//   logits, dlogits: (N,CLASSES)  labels: (N) int32
//   rows: (N,2) = (loss, correct) of row n at n*2 (softmax_ce_row.cuh defines both, and
//     dlogits[n] = (softmax(z_n) - onehot(label_n)) / N)
// Indexing: warp w of block b handles row b*WARPS + w; warps past N (last block) do nothing.
// No block-wide barrier, no atomics: each row is written by one warp, so the output does
// not depend on the block or thread schedule.
// Generator constants: N CLASSES THREADS
// Launch: grid (ceil(N/WARPS)), block (THREADS).
extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const float *__restrict__ logits, const int *__restrict__ labels, float *__restrict__ rows,
          float *__restrict__ dlogits)
{
    const int row = blockIdx.x * WARPS + threadIdx.x / 32;
    if (row >= N) return; // the whole warp: the row's shuffles see all 32 lanes
    float l, hit;
    softmax_ce_row(logits, labels, dlogits, row, l, hit);
    if (threadIdx.x % 32 == 0) {
        rows[row * 2] = l;
        rows[row * 2 + 1] = hit;
    }
}
PP_KERNEL_EXPORT(${KERNEL})
