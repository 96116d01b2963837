// emu_mma.cu - test kernels for the tensor-core, ldmatrix and cp.async wrappers
// (templates/ptx_mma.cuh, templates/ptx_ldmatrix.cuh, templates/ptx_async_copy.cuh), which
// the test prepends.
// Run by tests/kernels/test_tensor_core.c with one warp per block.
//   mma_tf32:  a (16,8) row-major, b (8,8) row-major, c (16,8): d = a*b + c (16,8)
//   mma_bf16:  a (16,16), b (16,8), c (16,8):                   d = a*b + c (16,8)
// Each lane loads its fragments from a and b with the layout PTX documents, written here
// independently of gemm_mma.cuh.
//   rounding: in (n) -> out (2n) unsigned: out[2i] = pp_f32_to_tf32(in[i]),
//             out[2i+1] = pp_pack_bf16x2(in[i], -in[i])
//   ldmatrix: in (32, 8) 16-bit elements, out (2, 32, 4) unsigned: a shared tile of 32
//             rows of 8 elements; lane l gives the address of tile row (5l + 3) % 32 (a
//             permutation, so that a row's place follows its lane's address, not the tile
//             order); out[0][l] = the four registers pp_ldmatrix_x4 hands lane l,
//             out[1][l] = those of pp_ldmatrix_x4_trans
//   async_copy: in (64), out (3, 64): out[0] = a shared tile after waiting for the older of
//             two copy groups, out[1] = after waiting for both, out[2] = what the newer
//             group's half held before its wait (the sentinel 0xdead on the host, whose
//             copies land at the wait; anything on a GPU).
#ifndef PP_KERNEL_EXPORT
#define PP_KERNEL_EXPORT(name)
#endif

// This lane's elements of a 16x8 row-major C or D: (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1).
__device__ void c_fragment(const float *c, float (&acc)[4])
{
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    for (int e = 0; e < 4; ++e) acc[e] = c[(g + (e / 2) * 8) * 8 + 2 * t + e % 2];
}
__device__ void d_store(const float (&acc)[4], float *d)
{
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    for (int e = 0; e < 4; ++e) d[(g + (e / 2) * 8) * 8 + 2 * t + e % 2] = acc[e];
}

extern "C" __global__ void mma_tf32(const float *a, const float *b, const float *c, float *d)
{
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const unsigned af[4] = {pp_f32_to_tf32(a[g * 8 + t]), pp_f32_to_tf32(a[(g + 8) * 8 + t]),
                            pp_f32_to_tf32(a[g * 8 + t + 4]), pp_f32_to_tf32(a[(g + 8) * 8 + t + 4])};
    const unsigned bf[2] = {pp_f32_to_tf32(b[t * 8 + g]), pp_f32_to_tf32(b[(t + 4) * 8 + g])};
    float acc[4];
    c_fragment(c, acc);
    pp_mma_tf32_16x8x8(acc, af, bf);
    d_store(acc, d);
}
PP_KERNEL_EXPORT(mma_tf32)

extern "C" __global__ void mma_bf16(const float *a, const float *b, const float *c, float *d)
{
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    unsigned af[4], bf[2];
    for (int r = 0; r < 4; ++r) {
        const int row = g + (r % 2) * 8, col = 2 * t + (r / 2) * 8;
        af[r] = pp_pack_bf16x2(a[row * 16 + col], a[row * 16 + col + 1]);
    }
    for (int r = 0; r < 2; ++r) {
        const int row = 2 * t + r * 8;
        bf[r] = pp_pack_bf16x2(b[row * 8 + g], b[(row + 1) * 8 + g]);
    }
    float acc[4];
    c_fragment(c, acc);
    pp_mma_bf16_16x8x16(acc, af, bf);
    d_store(acc, d);
}
PP_KERNEL_EXPORT(mma_bf16)

extern "C" __global__ void rounding(const float *in, unsigned *out, int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    out[2 * i] = pp_f32_to_tf32(in[i]);
    out[2 * i + 1] = pp_pack_bf16x2(in[i], -in[i]);
}
PP_KERNEL_EXPORT(rounding)

extern "C" __global__ void ldmatrix(const unsigned short *in, unsigned *out)
{
    __shared__ __align__(16) unsigned short tile[32 * 8];
    const int lane = threadIdx.x % 32;
    for (int e = 0; e < 8; ++e) tile[lane * 8 + e] = in[lane * 8 + e];
    __syncthreads();
    const unsigned short *row = tile + ((5 * lane + 3) % 32) * 8;
    unsigned r[4], rt[4];
    pp_ldmatrix_x4(r, row);
    pp_ldmatrix_x4_trans(rt, row);
    for (int i = 0; i < 4; ++i) {
        out[lane * 4 + i] = r[i];
        out[128 + lane * 4 + i] = rt[i];
    }
}
PP_KERNEL_EXPORT(ldmatrix)

extern "C" __global__ void async_copy(const float *in, float *out)
{
    __shared__ float tile[64];
    const int t = threadIdx.x; // 32 threads, two elements each
    tile[t] = __uint_as_float(0xdeadu);
    tile[t + 32] = __uint_as_float(0xdeadu);
    __syncthreads();
    pp_cp_async_f32(&tile[t], &in[t], true);
    pp_cp_async_commit();
    pp_cp_async_f32(&tile[t + 32], &in[t + 32], t % 2 == 0); // odd lanes: zero-fill
    pp_cp_async_commit();
    pp_cp_async_wait_all_but_newest();
    out[128 + t] = tile[t + 32];
    __syncthreads();
    out[t] = tile[t];
    out[t + 32] = tile[t + 32];
    __syncthreads();
    pp_cp_async_wait_all();
    __syncthreads();
    out[64 + t] = tile[t];
    out[64 + t + 32] = tile[t + 32];
}
PP_KERNEL_EXPORT(async_copy)
