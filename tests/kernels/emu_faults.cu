// emu_faults.cu - test kernels for the host emulation backend (tests/runtime/test_host_emu.c):
// faults the scheduler must report as PP_ERR_KERNEL instead of hanging or crashing.
//   emu_even_barrier      only even threads call __syncthreads (odd ones exit): deadlock
//   emu_split_barrier     even and odd threads wait at two different __syncthreads
//   emu_early_exit        threads >= 8 return before a barrier the others wait at
//   emu_checked           assert(in[t] < 5): fails where the input says so
//   emu_warp_exit         lanes >= 4 exit while the others wait in a warp shuffle
#ifndef PP_KERNEL_EXPORT
#define PP_KERNEL_EXPORT(name)
#endif

extern "C" __global__ void emu_even_barrier(float *out)
{
    if (threadIdx.x % 2 == 0) __syncthreads();
    out[threadIdx.x] = 1.0f;
}
PP_KERNEL_EXPORT(emu_even_barrier)

extern "C" __global__ void emu_split_barrier(float *out)
{
    if (threadIdx.x % 2 == 0) {
        __syncthreads(); // MARK: even barrier
    } else {
        __syncthreads(); // MARK: odd barrier
    }
    out[threadIdx.x] = 2.0f;
}
PP_KERNEL_EXPORT(emu_split_barrier)

extern "C" __global__ void emu_early_exit(float *out)
{
    if (threadIdx.x >= 8) return;
    __syncthreads(); // MARK: early exit barrier
    out[threadIdx.x] = 3.0f;
}
PP_KERNEL_EXPORT(emu_early_exit)

extern "C" __global__ void emu_checked(const int *in, int *out)
{
    const int v = in[blockIdx.x * blockDim.x + threadIdx.x];
    assert(v < 5); // MARK: assert
    out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}
PP_KERNEL_EXPORT(emu_checked)

extern "C" __global__ void emu_warp_exit(float *out)
{
    if (threadIdx.x >= 4) return;
    out[threadIdx.x] = __shfl_down_sync(0xfu, 1.0f, 1); // MARK: warp exit
}
PP_KERNEL_EXPORT(emu_warp_exit)
