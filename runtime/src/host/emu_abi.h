/* emu_abi.h - the contract between the host backend's scheduler (runtime, C) and the
 * emulation header compiled into each host kernel module (pp_cuda_emu.h, C++).
 *
 * A host kernel module is a shared object built from: pp_cuda_emu.h + the generated
 * CUDA source, unchanged + one export line per kernel. It exports
 *   void pp_emu_bind(const pp_emu_abi *abi);          called once after dlopen
 *   void pp_emu_entry_<kernel>(void **args);          runs one CUDA thread
 * The scheduler runs each CUDA thread of a block as a fiber on one OS thread, so that
 * __shared__ variables (thread_local in the module) are shared within the block.
 * Everything here is plain C so both sides agree on the layout. */
#ifndef PP_EMU_ABI_H
#define PP_EMU_ABI_H

#ifdef __cplusplus
extern "C" {
#endif

#define PP_EMU_ABI_VERSION 1

typedef struct pp_emu_dim3 {
    unsigned x, y, z;
} pp_emu_dim3;

typedef struct pp_emu_thread_state {
    pp_emu_dim3 thread_idx, block_idx, block_dim, grid_dim;
} pp_emu_thread_state;

typedef struct pp_emu_abi {
    int version;
    /* The state of the CUDA thread (fiber) running now on this OS thread. */
    pp_emu_thread_state *(*self)(void);
    /* __syncthreads(): suspends the fiber until every thread of the block arrives.
     * line identifies the call site, so divergent barriers can be reported. */
    void (*syncthreads)(int line);
    /* Warp exchange behind __shfl*_sync, __syncwarp and the votes: every lane of the
     * warp publishes value; when all lanes of the warp (those that exist in the block)
     * have arrived, each receives in all_values[i] the value lane i published (0 for a
     * lane that does not exist). The fiber is suspended until then; a warp whose lanes
     * arrive from different lines, or where some lanes exited, is reported as an error. */
    void (*warp_exchange)(unsigned long long value, unsigned long long all_values[32], int line);
    /* Reports a fatal kernel error (assert, trap) and ends the fiber's block. Does not return. */
    void (*trap)(const char *message, int line);
} pp_emu_abi;

#ifdef __cplusplus
}
#endif
#endif
