// ptx_async_copy.cuh - the asynchronous global-to-shared copy (cp.async, sm_80 and later)
// behind the pipelined tile loaders, one PTX instruction per device function.
// Semantics (PTX ISA, "cp.async"): a copy issued by a thread lands in shared memory at
// some point before that thread's cp.async.wait_group covering its group returns; copies
// are grouped by cp.async.commit_group; wait_group n returns once at most n of the
// thread's most recent groups are still pending. Other threads see the data only after a
// barrier that follows the wait.
// Host emulation: the same semantics, with copies deferred until the wait (pp_emu
// async_copy_*), so a kernel that reads a tile before waiting reads stale data on the host
// as it may on a GPU. Below sm_80 the copy is a plain load and store: complete at once,
// which the semantics above allow.

// dst[0] = valid ? *src : 0.0f, asynchronously. src is not read when !valid.
__device__ __forceinline__ void pp_cp_async_f32(float *dst, const float *src, bool valid)
{
#if defined(PP_HOST_EMULATION)
    ::pp_emu::async_copy_f32(dst, src, valid);
#elif __CUDA_ARCH__ >= 800
    const unsigned smem = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem), "l"(src),
                 "r"(valid ? 4 : 0)
                 : "memory");
#else
    *dst = valid ? *src : 0.0f;
#endif
}

// 16 bytes, asynchronously: the first src_bytes (0 or 16) from src, the rest zero-filled
// (cp.async.cg: cached in L2 only, as tiles are read once per block). dst and src are
// 16-byte aligned; src is not read when src_bytes == 0.
__device__ __forceinline__ void pp_cp_async_16(void *dst, const void *src, int src_bytes)
{
#if defined(PP_HOST_EMULATION)
    ::pp_emu::async_copy(dst, src, 16, (unsigned)src_bytes);
#elif __CUDA_ARCH__ >= 800
    const unsigned smem = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem), "l"(src), "r"(src_bytes)
                 : "memory");
#else
    const float4 zero = {0.0f, 0.0f, 0.0f, 0.0f};
    *(float4 *)dst = src_bytes ? *(const float4 *)src : zero;
#endif
}

// 8 or 4 bytes (BYTES), asynchronously: the first src_bytes (0 or BYTES) from src, the rest
// zero-filled (cp.async.ca: .cg copies 16 bytes only). dst and src are BYTES-aligned; src is
// not read when src_bytes == 0. The bf16 tiles' copies of 4 or 2 channels.
template <int BYTES>
__device__ __forceinline__ void pp_cp_async_small(void *dst, const void *src, int src_bytes)
{
    static_assert(BYTES == 4 || BYTES == 8, "cp.async.ca copies 4, 8 or 16 bytes");
#if defined(PP_HOST_EMULATION)
    ::pp_emu::async_copy(dst, src, BYTES, (unsigned)src_bytes);
#elif __CUDA_ARCH__ >= 800
    const unsigned smem = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(smem), "l"(src), "n"(BYTES), "r"(src_bytes)
                 : "memory");
#else
    if (BYTES == 8) *(unsigned long long *)dst = src_bytes ? *(const unsigned long long *)src : 0ull;
    else *(unsigned *)dst = src_bytes ? *(const unsigned *)src : 0u;
#endif
}

__device__ __forceinline__ void pp_cp_async_commit()
{
#if defined(PP_HOST_EMULATION)
    ::pp_emu::async_commit();
#elif __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// Waits until at most the newest group of this thread is pending.
__device__ __forceinline__ void pp_cp_async_wait_all_but_newest()
{
#if defined(PP_HOST_EMULATION)
    ::pp_emu::async_wait(1);
#elif __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group 1;\n" ::: "memory");
#endif
}

// Waits until at most `pending` (a compile-time constant, 0..3) of this thread's newest
// groups are pending.
__device__ __forceinline__ void pp_cp_async_wait_pending(int pending)
{
#if defined(PP_HOST_EMULATION)
    ::pp_emu::async_wait((size_t)pending);
#elif __CUDA_ARCH__ >= 800
    switch (pending) {
    case 0: asm volatile("cp.async.wait_group 0;\n" ::: "memory"); break;
    case 1: asm volatile("cp.async.wait_group 1;\n" ::: "memory"); break;
    case 2: asm volatile("cp.async.wait_group 2;\n" ::: "memory"); break;
    default: asm volatile("cp.async.wait_group 3;\n" ::: "memory"); break;
    }
#endif
}

// Waits until no copy of this thread is pending.
__device__ __forceinline__ void pp_cp_async_wait_all()
{
#if defined(PP_HOST_EMULATION)
    ::pp_emu::async_wait(0);
#elif __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
#endif
}
