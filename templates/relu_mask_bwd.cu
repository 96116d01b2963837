// relu_mask_bwd.cu - the lean ReLU's backward from its 1-bit mask, elementwise over a flat
// tensor (the flat index relu_mask_fwd.cu wrote the mask over).
//   dy, dx: (COUNT) float; dx may be dy (in place: each element is read, then written, by
//     the same thread)
//   mask: (ceil(COUNT/32)) words, bit i%32 of word i/32 = the ReLU was active at i
//   dx[i] = mask bit i set ? dy[i] : 0  (a NaN in dy where the bit is clear gives 0)
// Indexing: one element per thread, i = blockIdx.x*THREADS + threadIdx.x: consecutive
// threads read one mask word and consecutive elements (coalesced).
// Generator constants: COUNT THREADS
// Launch: grid (ceil(COUNT/THREADS)), block (THREADS).
extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const float *dy, const unsigned *__restrict__ mask, float *dx)
{
    const int i = blockIdx.x * THREADS + threadIdx.x;
    if (i >= COUNT) return;
    const bool on = (mask[i / 32] >> (i % 32)) & 1u;
    dx[i] = on ? dy[i] : 0.0f;
}
PP_KERNEL_EXPORT(${KERNEL})
