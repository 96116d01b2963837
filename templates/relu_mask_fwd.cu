// relu_mask_fwd.cu - the lean ReLU's forward: the output and its 1-bit mask, elementwise
// over a flat tensor (any layout: the backward reads the same flat index).
//   x, y: (COUNT) float; y may be x (in place: each element is read, then written, by
//     the same thread)
//   mask: (ceil(COUNT/32)) words over the flat index i (bit i%32 of word i/32)
//   y[i] = x[i] < 0 ? 0 : x[i]  (max(x, 0); a NaN stays NaN, as torch.relu)
//   mask bit i = (y[i] > 0); bits past COUNT in the last word are 0
// Indexing: one element per thread, i = blockIdx.x*THREADS + threadIdx.x, so a warp owns
// the 32 elements of one mask word and writes it whole with one __ballot_sync (lanes past
// COUNT vote 0; every lane takes part in the vote).
// Generator constants: COUNT THREADS
// Launch: grid (ceil(COUNT/THREADS)), block (THREADS).
extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const float *x, float *y, unsigned *__restrict__ mask)
{
    const int i = blockIdx.x * THREADS + threadIdx.x;
    const bool active = i < COUNT;
    float v = 0.0f;
    if (active) {
        v = x[i];
        v = v < 0.0f ? 0.0f : v;
        y[i] = v;
    }
    const unsigned word = __ballot_sync(0xffffffffu, active && v > 0.0f);
    if (threadIdx.x % 32 == 0 && active) mask[i / 32] = word;
}
PP_KERNEL_EXPORT(${KERNEL})
