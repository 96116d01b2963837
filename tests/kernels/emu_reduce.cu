// emu_reduce.cu - test kernel for the host emulation backend (tests/runtime/test_host_emu.c):
// a correct block reduction through shared memory and __syncthreads, for 1D/2D/3D blocks
// whose thread count is a power of two (at most 1024). It sits in a namespace, as
// generated kernels do, so PP_KERNEL_EXPORT must resolve the name inside it.
//   in: (blocks, T) float  out: (blocks) float, T = threads per block, blocks in x,y,z order
#ifndef PP_KERNEL_EXPORT
#define PP_KERNEL_EXPORT(name)
#endif

namespace emu_test_reduce {

extern "C" __global__ void __launch_bounds__(1024) emu_block_sum(const float *__restrict__ in, float *__restrict__ out)
{
    __shared__ float partial[1024];
    const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const unsigned n = blockDim.x * blockDim.y * blockDim.z;
    const unsigned b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    partial[t] = in[b * n + t];
    __syncthreads();
    for (unsigned s = n / 2; s > 0; s /= 2) {
        if (t < s) partial[t] += partial[t + s];
        __syncthreads();
    }
    if (t == 0) out[b] = partial[0];
}
PP_KERNEL_EXPORT(emu_block_sum)

} // namespace emu_test_reduce
