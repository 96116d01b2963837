// emu_race.cu - test kernels for the host emulation backend (tests/runtime/test_host_emu.c):
// every thread writes shared[t] and then reads its neighbour's shared[(t+1) % n].
// emu_neighbour_racy deliberately lacks the __syncthreads between the write and the
// read (a bug that only some thread orders expose); emu_neighbour_synced has it.
//   in: (blocks, n) float  out: (blocks, n) float, n = blockDim.x
#ifndef PP_KERNEL_EXPORT
#define PP_KERNEL_EXPORT(name)
#endif

extern "C" __global__ void emu_neighbour_racy(const float *__restrict__ in, float *__restrict__ out)
{
    __shared__ float s[1024];
    const unsigned t = threadIdx.x, n = blockDim.x, base = blockIdx.x * n;
    s[t] = in[base + t];
    // BUG (on purpose): no __syncthreads() here
    out[base + t] = s[(t + 1) % n];
}
PP_KERNEL_EXPORT(emu_neighbour_racy)

extern "C" __global__ void emu_neighbour_synced(const float *__restrict__ in, float *__restrict__ out)
{
    __shared__ float s[1024];
    const unsigned t = threadIdx.x, n = blockDim.x, base = blockIdx.x * n;
    s[t] = in[base + t];
    __syncthreads();
    out[base + t] = s[(t + 1) % n];
}
PP_KERNEL_EXPORT(emu_neighbour_synced)
