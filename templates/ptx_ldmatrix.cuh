// ptx_ldmatrix.cuh - the warp-wide shared-memory matrix load (ldmatrix, sm_75 and later)
// that builds tensor-core fragments, one PTX instruction per device function, each with a
// host implementation of the per-lane semantics the PTX ISA documents ("ldmatrix"):
//   ldmatrix.sync.aligned.m8n8.x4.shared.b16 {r0, r1, r2, r3}, [addr]
// loads four 8x8 matrices of 16-bit elements; lanes 8i..8i+7 give the addresses of the 8
// rows (16 bytes each) of matrix i, and lane t receives in r_i the elements at row t/4,
// columns 2(t%4) and 2(t%4)+1 of matrix i (the lower column in the low half). The same
// instruction moves 32-bit elements when a row is read as 4 of them: lane t then gets
// row t/4, column t%4 (the TF32 fragment layout). .trans delivers the transpose: lane t
// gets row 2(t%4) and 2(t%4)+1, column t/4.
// Host: every lane's row address is gathered through one warp exchange; each lane then
// reads its own elements from the block's shared memory (all fibers of a block share it).

// r[i] = lane's 32 bits of matrix i; row_address: this lane's row (16 bytes, 16-aligned).
__device__ __forceinline__ void pp_ldmatrix_x4(unsigned (&r)[4], const void *row_address)
{
#if defined(PP_HOST_EMULATION)
    unsigned long long rows[32];
    ::pp_emu::exchange((unsigned long long)(uintptr_t)row_address, rows, __LINE__);
    const int lane = (int)::pp_emu::lane_id();
    for (int i = 0; i < 4; ++i) {
        const unsigned char *row = (const unsigned char *)(uintptr_t)rows[8 * i + lane / 4];
        memcpy(&r[i], row + 4 * (lane % 4), 4);
    }
#else
    const unsigned smem = static_cast<unsigned>(__cvta_generic_to_shared(row_address));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem));
#endif
}

// The transposed load of 16-bit elements: r[i] = (row 2(t%4), column t/4) in the low half
// and (row 2(t%4)+1, column t/4) in the high half of matrix i.
__device__ __forceinline__ void pp_ldmatrix_x4_trans(unsigned (&r)[4], const void *row_address)
{
#if defined(PP_HOST_EMULATION)
    unsigned long long rows[32];
    ::pp_emu::exchange((unsigned long long)(uintptr_t)row_address, rows, __LINE__);
    const int lane = (int)::pp_emu::lane_id();
    for (int i = 0; i < 4; ++i) {
        unsigned short lo, hi;
        memcpy(&lo, (const unsigned char *)(uintptr_t)rows[8 * i + 2 * (lane % 4)] + 2 * (lane / 4), 2);
        memcpy(&hi, (const unsigned char *)(uintptr_t)rows[8 * i + 2 * (lane % 4) + 1] + 2 * (lane / 4), 2);
        r[i] = (unsigned)lo | ((unsigned)hi << 16);
    }
#else
    const unsigned smem = static_cast<unsigned>(__cvta_generic_to_shared(row_address));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem));
#endif
}
