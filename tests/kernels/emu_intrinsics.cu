// emu_intrinsics.cu - test kernel for the host emulation backend (tests/runtime/test_host_emu.c):
// the rest of the emulated CUDA surface in one block of 64 threads, each result written to
// out[] for the test to compare: __syncthreads_count/and/or, __syncwarp with and without
// a mask, integer atomics, float4/make_* vector types, bit and math intrinsics, min/max.
//   out: (64 + 16) int
#ifndef PP_KERNEL_EXPORT
#define PP_KERNEL_EXPORT(name)
#endif

__device__ __forceinline__ int twice(int v) { return 2 * v; }

extern "C" __global__ void emu_intrinsics(const float4 *__restrict__ in4, int *__restrict__ out)
{
    __shared__ int counter, maxv, minv;
    const int t = threadIdx.x;
    if (t == 0) {
        counter = 0;
        maxv = -1;
        minv = 1 << 30;
    }
    __syncthreads();
    const int below10 = __syncthreads_count(t < 10); // 10
    const int all_pos = __syncthreads_and(t >= 0);   // 1
    const int any_big = __syncthreads_or(t > 100);   // 0
    __syncwarp();
    __syncwarp(0xffffffffu);
    atomicAdd(&counter, 1);
    atomicMax(&maxv, t);
    atomicMin(&minv, t);
    atomicSub(&counter, 0);
    __syncthreads();
    const float4 v = __ldg(&in4[t % 4]);
    const float2 p = make_float2(v.x, v.w);
    out[t] = twice(t) + (int)(p.x + p.y); // 2t + (x + w) of in4[t % 4]
    if (t == 0) {
        out[64] = below10;
        out[65] = all_pos;
        out[66] = any_big;
        out[67] = counter;                                                               // 64
        out[68] = maxv;                                                                  // 63
        out[69] = minv;                                                                  // 0
        out[70] = __popc(0xF0F0u);                                                       // 8
        out[71] = __clz(1);                                                              // 31
        out[72] = __ffs(8);                                                              // 4
        out[73] = (int)__brev(1u);                                                       // INT_MIN
        out[74] = __float_as_int(1.0f);                                                  // 0x3f800000
        out[75] = (int)(rsqrtf(16.0f) * 1000.0f);                                        // 250
        out[76] = (int)(__fmaf_rn(2.0f, 3.0f, 1.0f) + __expf(0.0f) + __saturatef(7.0f)); // 9
        out[77] = max(3, 7u) + min(-2, 5);                                               // 5
        out[78] = (int)fmaxf(__fdividef(1.0f, 4.0f) * 4.0f, 0.0f) + (int)warpSize;       // 33
        const int old = atomicCAS(&counter, 64, 5);
        out[79] = old + counter; // 64 + 5
    }
}
PP_KERNEL_EXPORT(emu_intrinsics)
