// gemm_pipeline.cuh - how the implicit-GEMM loaders fill shared-memory tiles (and the
// accumulators start), whatever the tile product (gemm_tile.cuh or gemm_mma.cuh). With
// STAGES == 1 a loader stores each element itself and the kernel computes on the tile
// after a barrier; with STAGES == 2 it issues cp.async copies (ptx_async_copy.cuh) for the
// next k-step while the block computes on the current one:
//   prologue: load step 0, commit
//   step s:   load step s+1 (if any) into the other stage, commit, wait for all but the
//             newest group (step s has landed), barrier, compute, barrier
// The trailing barrier keeps a stage from being refilled while a warp still reads it.

// The accumulators (TM, TN) start at zero, whichever tile product fills them.
__device__ __forceinline__ void tile_zero(float (&acc)[TM][TN])
{
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
}

// *dst = valid ? *src : 0, now (STAGES == 1) or asynchronously (STAGES > 1).
__device__ __forceinline__ void tile_load(float *dst, const float *src, bool valid)
{
    if (STAGES > 1) pp_cp_async_f32(dst, src, valid);
    else *dst = valid ? *src : 0.0f;
}

// Before computing on step s: make this thread's copies of step s complete.
__device__ __forceinline__ void tile_pipeline_wait()
{
    if (STAGES > 1) {
        pp_cp_async_commit();
        pp_cp_async_wait_all_but_newest();
    }
}
