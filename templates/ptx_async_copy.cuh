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

// Waits until no copy of this thread is pending.
__device__ __forceinline__ void pp_cp_async_wait_all()
{
#if defined(PP_HOST_EMULATION)
    ::pp_emu::async_wait(0);
#elif __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
#endif
}
