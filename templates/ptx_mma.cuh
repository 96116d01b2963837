// ptx_mma.cuh - the tensor-core instructions of the TF32 and BF16 GEMM tiles, one PTX
// instruction per device function, each with a host implementation of the per-lane
// semantics the PTX ISA documents ("Matrix fragments for mma.m16n8k8" and
// "... mma.m16n8k16", .row.col, f32 accumulators). With lane = 4*g + t (g = lane/4,
// t = lane%4):
//   D, C (16x8, f32):  d0 = (g, 2t)  d1 = (g, 2t+1)  d2 = (g+8, 2t)  d3 = (g+8, 2t+1)
//   m16n8k8 .tf32   A (16x8): a0 = (g, t)  a1 = (g+8, t)  a2 = (g, t+4)  a3 = (g+8, t+4)
//                   B (8x8):  b0 = (t, g)  b1 = (t+4, g)
//   m16n8k16 .bf16  A (16x16), two elements per register, the lower column in the low half:
//                   a0 = (g, 2t..2t+1)  a1 = (g+8, 2t..2t+1)  a2 = (g, 2t+8..2t+9)
//                   a3 = (g+8, 2t+8..2t+9)
//                   B (16x8): b0 = (2t..2t+1, g)  b1 = (2t+8..2t+9, g), the lower row low
// The host implementations gather all 32 lanes' fragments (one warp exchange per pair of
// registers) and compute this lane's elements of D = A*B + C from that layout: products of
// TF32 or BF16 values are exact in f32; the k terms are added to C in increasing k, one
// f32 rounding each. The hardware's summation order is unspecified, so results may differ
// from the host in the last bits of the f32 sum; tests bound the error, they do not
// compare bits.
#if !defined(PP_HOST_EMULATION) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "tensor-core (TF32/BF16 mma) variants need sm_80 or later"
#endif

// f32 -> tf32 (cvt.rna: to nearest, ties away from zero), kept in a 32-bit register with
// the low 13 mantissa bits zero. NaN and infinity pass unchanged.
__device__ __forceinline__ unsigned pp_f32_to_tf32(float x)
{
#if defined(PP_HOST_EMULATION)
    unsigned u = __float_as_uint(x);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
    return u;
#else
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r;
#endif
}

// Two f32 -> one register of two bf16 (cvt.rn.bf16x2.f32: to nearest even); lo in bits
// 0..15, hi in bits 16..31. A NaN becomes the canonical bf16 NaN 0x7fff.
__device__ __forceinline__ unsigned pp_pack_bf16x2(float lo, float hi)
{
#if defined(PP_HOST_EMULATION)
    const float in[2] = { lo, hi };
    unsigned half[2];
    for (int i = 0; i < 2; ++i) {
        const unsigned u = __float_as_uint(in[i]);
        if ((u & 0x7fffffffu) > 0x7f800000u) half[i] = 0x7fffu;
        else half[i] = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    }
    return half[0] | (half[1] << 16);
#else
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
#endif
}

#if defined(PP_HOST_EMULATION)
// The gathered fragments of a warp: a01[lane] = that lane's (a0, a1), a23 = (a2, a3),
// b01 = (b0, b1); one warp exchange each.
struct pp_mma_fragments {
    unsigned a01[32][2], a23[32][2], b01[32][2];
};
__device__ __forceinline__ void pp_mma_gather_pair(unsigned lo, unsigned hi, unsigned (&out)[32][2])
{
    unsigned long long all[32];
    ::pp_emu::exchange((unsigned long long)lo | ((unsigned long long)hi << 32), all, __LINE__);
    for (int l = 0; l < 32; ++l) {
        out[l][0] = (unsigned)all[l];
        out[l][1] = (unsigned)(all[l] >> 32);
    }
}
__device__ __forceinline__ float pp_tf32_value(unsigned r) { return __uint_as_float(r & 0xffffe000u); }
__device__ __forceinline__ float pp_bf16_value(unsigned r, int high)
{
    return __uint_as_float(high ? (r & 0xffff0000u) : (r << 16));
}
// d += A*B for this lane's four D elements (layout above), with A(row, k) and B(k, col)
// read from the gathered fragments f by the functions a_at and b_at.
template <class AAt, class BAt>
__device__ __forceinline__ void pp_mma_host(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2], int kdim,
                                            AAt a_at, BAt b_at)
{
    pp_mma_fragments f;
    pp_mma_gather_pair(a[0], a[1], f.a01);
    pp_mma_gather_pair(a[2], a[3], f.a23);
    pp_mma_gather_pair(b[0], b[1], f.b01);
    const int lane = (int)::pp_emu::lane_id();
    const int g = lane / 4, t = lane % 4;
    for (int e = 0; e < 4; ++e) {
        const int row = g + (e >= 2 ? 8 : 0), col = 2 * t + (e & 1);
        float sum = d[e];
        for (int k = 0; k < kdim; ++k) sum += a_at(f, row, k) * b_at(f, k, col);
        d[e] = sum;
    }
}
#endif

// d += A*B for one 16x8x8 TF32 tile; a, b from pp_f32_to_tf32.
__device__ __forceinline__ void pp_mma_tf32_16x8x8(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2])
{
#if defined(PP_HOST_EMULATION)
    pp_mma_host(
        d, a, b, 8,
        // A(row, k): lane 4*(row%8) + k%4, register a0/a1 (k < 4) or a2/a3 by row/8.
        [](const pp_mma_fragments &f, int row, int k) {
            return pp_tf32_value((k < 4 ? f.a01 : f.a23)[4 * (row % 8) + k % 4][row / 8]);
        },
        // B(k, col): lane 4*col + k%4, register b0 (k < 4) or b1.
        [](const pp_mma_fragments &f, int k, int col) { return pp_tf32_value(f.b01[4 * col + k % 4][k / 4]); });
#else
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// d += A*B for one 16x8x16 BF16 tile; a, b from pp_pack_bf16x2.
__device__ __forceinline__ void pp_mma_bf16_16x8x16(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2])
{
#if defined(PP_HOST_EMULATION)
    pp_mma_host(
        d, a, b, 16,
        // A(row, k): lane 4*(row%8) + (k%8)/2, register a0/a1 (k < 8) or a2/a3 by row/8, half k%2.
        [](const pp_mma_fragments &f, int row, int k) {
            return pp_bf16_value((k < 8 ? f.a01 : f.a23)[4 * (row % 8) + (k % 8) / 2][row / 8], k % 2);
        },
        // B(k, col): lane 4*col + (k%8)/2, register b0 (k < 8) or b1, half k%2.
        [](const pp_mma_fragments &f, int k, int col) {
            return pp_bf16_value(f.b01[4 * col + (k % 8) / 2][k / 8], k % 2);
        });
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}
