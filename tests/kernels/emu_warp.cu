// emu_warp.cu - test kernel for the host emulation backend (tests/runtime/test_host_emu.c):
// warp shuffles and votes with their CUDA semantics, on full and partial warps. Every
// operation stays within lanes that exist, so the results are defined on a GPU too.
//   in: (blocks, n) int  out: (7, blocks, n) int, n = blockDim.x; per thread t, lane l:
//   out[0] = __shfl_down_sync tree sum over the lanes of its warp (kept at lane 0)
//   out[1] = __shfl_xor_sync butterfly sum over its 8-lane group (width 8)
//   out[2] = __shfl_sync broadcast of lane 3 of its 16-lane group (width 16)
//   out[3] = __shfl_up_sync by 2 within 16-lane groups (lanes 0,1 of a group keep theirs)
//   out[4] = __ballot_sync of (v % 3 == 0)
//   out[5] = __any_sync(v > 1000) + 2 * __all_sync(v >= 0)
//   out[6] = __shfl_sync from lane 33 (wraps to lane 1 of its 32-lane group)
#ifndef PP_KERNEL_EXPORT
#define PP_KERNEL_EXPORT(name)
#endif

extern "C" __global__ void emu_warp_ops(const int *__restrict__ in, int *__restrict__ out)
{
    const int n = blockDim.x, t = threadIdx.x, lane = t % 32;
    const int g = blockIdx.x * n + t, total = gridDim.x * n;
    const int lanes = min(32, n - (t - lane));
    const unsigned mask = __activemask();
    const int v = in[g];

    int sum = v;
    for (int off = 16; off > 0; off /= 2) {
        const int other = __shfl_down_sync(mask, sum, off);
        if (lane + off < lanes) sum += other;
    }
    out[0 * total + g] = sum;

    int group = v;
    for (int m = 4; m > 0; m /= 2) group += __shfl_xor_sync(mask, group, m, 8);
    out[1 * total + g] = group;

    out[2 * total + g] = __shfl_sync(mask, v, 3, 16);
    out[3 * total + g] = __shfl_up_sync(mask, v, 2, 16);
    out[4 * total + g] = (int)__ballot_sync(mask, v % 3 == 0);
    out[5 * total + g] = (__any_sync(mask, v > 1000) ? 1 : 0) + (__all_sync(mask, v >= 0) ? 2 : 0);
    out[6 * total + g] = __shfl_sync(mask, v, 33);
}
PP_KERNEL_EXPORT(emu_warp_ops)
