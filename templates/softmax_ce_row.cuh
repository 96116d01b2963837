// softmax_ce_row.cuh - one row of the softmax cross-entropy, computed by one warp: what the
// one-block kernel (softmax_ce.cu) and the row kernel of the multi-block form
// (softmax_ce_rows.cu) share, so both give the same bits for a row. The generator emits it
// inside each kernel's namespace, after that kernel's constants (N, CLASSES) and
// ops_common.cuh.
//   logits, dlogits: (N,CLASSES)  labels: (N) int32
// For row n with z = logits[n]:
//   loss    = logsumexp(z) - z[label],  logsumexp(z) = max z + log sum exp(z - max z)
//   correct = 1 if the prediction (the first index of the row's maximum) is the label, else 0
//   dlogits[n] = (softmax(z) - onehot(label)) / N
// The row max and the sum of exp(z - max) are warp reductions (lane j takes columns j,
// j+32, ... in order; then a fixed shuffle tree): deterministic.
// A label outside [0, CLASSES) is not read out of bounds: it is clamped for dlogits and the
// row's loss is NaN (so a batch loss is NaN and the runtime can report it); NaN logits give
// a NaN loss too.

__device__ __forceinline__ float warp_max_all(float v)
{
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v; // every lane holds the same maximum
}

// Called by all 32 lanes of a warp for the same row; writes dlogits' row; the row's loss and
// correct (0 or 1) are valid in lane 0.
__device__ __forceinline__ void softmax_ce_row(const float *__restrict__ logits, const int *__restrict__ labels,
                                               float *__restrict__ dlogits, int row, float &loss, float &correct)
{
    const int lane = threadIdx.x % 32;
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
    loss = bad ? __int_as_float(0x7fc00000) : logf(sum) + top - z[at];
    correct = !bad && first == label ? 1.0f : 0.0f;
}
