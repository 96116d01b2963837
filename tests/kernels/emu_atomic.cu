// emu_atomic.cu - test kernel for the host emulation backend (tests/runtime/test_host_emu.c):
// atomicAdd on one float and one int from every thread of every block, which run on
// several OS threads at once.
//   in: (n) float  total: (1) float  count: (1) int
#ifndef PP_KERNEL_EXPORT
#define PP_KERNEL_EXPORT(name)
#endif

extern "C" __global__ void emu_atomic_sum(const float *__restrict__ in, float *total, int *count, int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    atomicAdd(total, __ldg(&in[i]));
    atomicAdd(count, 1);
}
PP_KERNEL_EXPORT(emu_atomic_sum)
