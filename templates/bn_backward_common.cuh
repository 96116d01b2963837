// bn_backward_common.cuh - what the BN backward kernels (bn_backward.cu, and the sliced
// pair bn_backward_sums.cu / bn_backward_dx.cu) share: the activation storage type, dout
// through the ReLU's backward and the load of BN's saved input. The generator emits it
// inside each kernel's namespace, after that kernel's constants (MASK, BF16, ACT_BF16) and
// ops_common.cuh.
//   act_t: the activations' storage (dout, dy, dres, the MASK 2 ReLU output): float, or
//     bf16 bits if ACT_BF16 (loads widen to float; all arithmetic is fp32)
//   dout: act_t, flat index i (any layout: the mask and y use the same index)
//   mask: MASK 1: bit i%32 of word i/32 set = the ReLU was active;
//         MASK 2: the ReLU output (act_t), > 0 = active; MASK 0: no ReLU (mask unused)
//   y: fp32, or bf16 bits if BF16 (ACT_BF16 implies BF16: the generator sets it)
static_assert(!ACT_BF16 || BF16, "ACT_BF16 stores y as bf16");
using act_t = pp_select_t<ACT_BF16 == 1, unsigned short, float>;

// dout[i] through the ReLU's backward: dout[i], or 0 where the ReLU was inactive.
__device__ __forceinline__ float relu_backward(const act_t *__restrict__ dout, const void *__restrict__ mask, int i)
{
    float g = act_load(dout, i);
    if (MASK == 1 && !((static_cast<const unsigned *>(mask)[i / 32] >> (i % 32)) & 1u)) g = 0.0f;
    if (MASK == 2 && !(act_load(static_cast<const act_t *>(mask), i) > 0.0f)) g = 0.0f;
    return g;
}

__device__ __forceinline__ float load_y(const void *__restrict__ y, int i)
{
    if (BF16) return bf16_to_float(static_cast<const unsigned short *>(y)[i]);
    return static_cast<const float *>(y)[i];
}
