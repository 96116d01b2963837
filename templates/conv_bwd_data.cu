// conv_bwd_data.cu - the input gradient of a convolution, exact, as an implicit GEMM (fp32
// FFMA, or TF32/BF16 tensor cores with f32 accumulation, per variant), one GEMM per stride
// phase.
//   dy: (N,P,Q,K)  wt: (K,R,S,C)  dx: (N,H,W,C)   (channels last)
// dx[n,h,w,c] = sum over k and the taps (r,t) with (h+PAD-r) and (w+PAD-t) divisible by
// STRIDE of wt[k,r,t,c] * dy[n,(h+PAD-r)/STRIDE,(w+PAD-t)/STRIDE,k] (in range, else 0).
// Stride phases: the input positions with (h+PAD) % STRIDE == ph and (w+PAD) % STRIDE == pw
// all use the same taps, r = ph + STRIDE*a and t = pw + STRIDE*b, so phase
// (ph,pw) = (blockIdx.z / PHASES_W, blockIdx.z % PHASES_W) is its own GEMM with no taps that
// are zero by divisibility (a stride-2 layer would otherwise spend 3/4 of its work on them);
// phases with no tap at all are not launched (see the end of the kernel):
//   rows m = (n,i,j) in [0,MX): h = H0 + STRIDE*i, w = W0 + STRIDE*j, where H0 and W0 are
//     the first positions of the phase; rows past the phase's own extent are skipped;
//   columns c in [0,C); reduction g = (a,b,k) in [0,GX), k fastest, GX = RA*SA*K, with
//     RA = ceil(R/STRIDE) (taps past R in a phase with fewer are 0):
//   A[m][g] = dy[n,(h+PAD-r)/STRIDE,(w+PAD-t)/STRIDE,k] (0 outside), B[g][c] = wt[k,r,t,c].
// With STRIDE 1 there is one phase and this is the plain implicit GEMM over (k,r,t).
// Tiling as conv_fwd: a block computes BM x BN of (m,c); the thread owns tile rows
// tile_row(i) and columns tile_col(j) (with FFMA tiles consecutive threads write
// consecutive m).
// ACCUMULATE: dx += the result instead of dx = (x feeds two layers; the second adds its share).
// Generator constants: N C H W K R S STRIDE PAD P Q ACCUMULATE, HS = ceil(H/STRIDE),
//   WS = ceil(W/STRIDE), RA = ceil(R/STRIDE), SA = ceil(S/STRIDE), MX = N*HS*WS, GX = K*RA*SA,
//   PHASES_H = min(STRIDE, R), PHASES_W = min(STRIDE, S),
//   A_VEC B_VEC (floats per copy: 4 or 1), and the tile product's and main loop's
//   (gemm_tile.cuh or gemm_mma.cuh, gemm_mainloop.cuh): BM BN BK TM TN THREADS TILE_PAD
//   STAGES MATH (A_KMAJOR = 1, B_KMAJOR = 0 for tensor cores)
// Launch: grid (ceil(MX/BM), ceil(C/BN), PHASES_H*PHASES_W).
// __launch_bounds__ names a minimum of 1 block per SM: with the thread count alone, NVRTC's
// ptxas capped a 512-thread variant at 40 registers and spilled (nvcc's did not).

// The block's stride phase: its taps' offsets (ph, pw) and first input row and column.
struct phase {
    int ph, pw, h0, w0, rows_h, rows_w;
};

__device__ __forceinline__ phase phase_of(int ph, int pw)
{
    phase p;
    p.ph = ph;
    p.pw = pw;
    p.h0 = ((p.ph - PAD) % STRIDE + STRIDE) % STRIDE; // first h with (h + PAD) % STRIDE == ph
    p.w0 = ((p.pw - PAD) % STRIDE + STRIDE) % STRIDE;
    p.rows_h = p.h0 < H ? (H - p.h0 + STRIDE - 1) / STRIDE : 0;
    p.rows_w = p.w0 < W ? (W - p.w0 + STRIDE - 1) / STRIDE : 0;
    return p;
}

// Only phases with taps are launched: ph < PHASES_H = min(STRIDE, R), pw < PHASES_W.
__device__ __forceinline__ phase block_phase() { return phase_of(blockIdx.z / PHASES_W, blockIdx.z % PHASES_W); }

// Operand iterator. A (BM x BK) is dy gathered through the phase's transposed im2col
// view, copied in units of A_VEC consecutive g (= channels k of one tap, K % A_VEC == 0);
// B (BK x BN) is wt: row g = (a,b,k) is wt[k,r,t,c0..], contiguous along c, copied in
// units of B_VEC. Per thread, unit e = tid + i*THREADS of A is row e / AU, column
// (e % AU)*A_VEC; the rows' output coordinates are computed once per block. For a row at
// (n, h, w) = (n, h0 + STRIDE*i, w0 + STRIDE*j) of phase (ph, pw) and a tap (a, b):
// (h + PAD - r)/STRIDE = i + OY0 - a with OY0 = (h0 + PAD - ph)/STRIDE (exact, >= 0).
constexpr int AU = BK / A_VEC, A_UNITS = BM * AU, A_PER = (A_UNITS + THREADS - 1) / THREADS;
constexpr int BU = BN / B_VEC, B_UNITS = BK * BU, B_PER = (B_UNITS + THREADS - 1) / THREADS;
static_assert(K % A_VEC == 0 && C % B_VEC == 0, "a copy unit never straddles a tap");

struct operand_iterator {
    const float *dy, *wt;
    int g0;                                // first g of the next K-tile
    int ph, pw;
    int image[A_PER], oy[A_PER], ox[A_PER]; // per A row: n*P*Q, i + OY0, j + OX0
};

__device__ __forceinline__ void iterator_init(operand_iterator &it, const float *dy, const float *wt, const phase &p)
{
    it.dy = dy;
    it.wt = wt;
    it.g0 = 0;
    it.ph = p.ph;
    it.pw = p.pw;
    const int oy0 = (p.h0 + PAD - p.ph) / STRIDE, ox0 = (p.w0 + PAD - p.pw) / STRIDE;
#pragma unroll
    for (int i = 0; i < A_PER; ++i) {
        const int e = (int)threadIdx.x + i * THREADS;
        const int m = blockIdx.x * BM + e / AU;
        const int n = m / (HS * WS), ij = m - n * (HS * WS), pi = ij / WS, pj = ij - pi * WS;
        const bool row = m < MX && e < A_UNITS && pi < p.rows_h && pj < p.rows_w;
        it.image[i] = n * (P * Q);
        it.oy[i] = row ? pi + oy0 : -(1 << 24); // never in [0, P) when the row is outside the phase
        it.ox[i] = pj + ox0;
    }
}

// Issues the copies of the iterator's next K-tile into one stage and advances.
__device__ __forceinline__ void load_tiles(operand_iterator &it, float *a, float *b)
{
    const int tid = (int)threadIdx.x;
#pragma unroll
    for (int i = 0; i < A_PER; ++i) {
        const int e = tid + i * THREADS;
        const int kc = (THREADS % AU == 0 ? tid % AU : e % AU) * A_VEC;
        const int g = it.g0 + kc, ab = g / K, k = g - ab * K, ta = ab / SA, tb = ab - ta * SA;
        const int oy = it.oy[i] - ta, ox = it.ox[i] - tb;
        const bool valid = g < GX && it.ph + STRIDE * ta < R && it.pw + STRIDE * tb < S &&
                           (unsigned)oy < (unsigned)P && (unsigned)ox < (unsigned)Q;
        const float *src = valid ? it.dy + (it.image[i] + oy * Q + ox) * K + k : it.dy;
        if (A_UNITS % THREADS == 0 || e < A_UNITS) tile_copy(a + a_offset(e / AU, kc), src, valid, A_VEC);
    }
#pragma unroll
    for (int i = 0; i < B_PER; ++i) {
        const int e = tid + i * THREADS;
        const int cc = (THREADS % BU == 0 ? tid % BU : e % BU) * B_VEC;
        const int gi = e / BU, g = it.g0 + gi, ab = g / K, k = g - ab * K, ta = ab / SA, tb = ab - ta * SA;
        const int r = it.ph + STRIDE * ta, t = it.pw + STRIDE * tb, c = blockIdx.y * BN + cc;
        const bool valid = g < GX && r < R && t < S && c < C;
        const float *src = valid ? it.wt + ((k * R + r) * S + t) * C + c : it.wt;
        if (B_UNITS % THREADS == 0 || e < B_UNITS) tile_copy(b + b_offset(gi, cc), src, valid, B_VEC);
    }
    it.g0 += BK;
}

extern "C" __global__ void __launch_bounds__(THREADS, 1)
${KERNEL}(const float *__restrict__ dy, const float *__restrict__ wt, float *__restrict__ dx)
{
    const int m0 = blockIdx.x * BM;
    const int c0 = blockIdx.y * BN;
    const phase p = block_phase();

    float acc[TM][TN];
    tile_zero(acc);
    operand_iterator it;
    iterator_init(it, dy, wt, p);
    gemm_mainloop(it, (GX + BK - 1) / BK, acc);

#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + tile_row(i);
        if (m >= MX) continue;
        const int n = m / (HS * WS), ij = m % (HS * WS), pi = ij / WS, pj = ij % WS;
        if (pi >= p.rows_h || pj >= p.rows_w) continue;
        const int hw = (p.h0 + STRIDE * pi) * W + p.w0 + STRIDE * pj;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int c = c0 + tile_col(j);
            if (c >= C) continue;
            const int at = (n * (H * W) + hw) * C + c;
            dx[at] = ACCUMULATE ? dx[at] + acc[i][j] : acc[i][j];
        }
    }

    // Phases without taps (ph >= R or pw >= S: a 1x1 stride-2 layer has three) are not
    // launched: their dx is 0 (untouched when accumulating). The blocks of the first phase
    // write those zeros for their rows (n,i,j) and columns: every phase's positions are
    // (h0 + STRIDE*i, w0 + STRIDE*j) with i < HS, j < WS.
    if (!ACCUMULATE && (PHASES_H < STRIDE || PHASES_W < STRIDE) && blockIdx.z == 0) {
#pragma unroll
        for (int i = 0; i < TM; ++i) {
            const int m = m0 + tile_row(i);
            if (m >= MX) continue;
            const int n = m / (HS * WS), ij = m % (HS * WS), pi = ij / WS, pj = ij % WS;
            for (int e = 0; e < STRIDE * STRIDE; ++e) {
                const phase q = phase_of(e / STRIDE, e % STRIDE);
                if ((q.ph < PHASES_H && q.pw < PHASES_W) || pi >= q.rows_h || pj >= q.rows_w) continue;
                const int hw = (q.h0 + STRIDE * pi) * W + q.w0 + STRIDE * pj;
#pragma unroll
                for (int j = 0; j < TN; ++j) {
                    const int c = c0 + tile_col(j);
                    if (c < C) dx[(n * (H * W) + hw) * C + c] = 0.0f;
                }
            }
        }
    }
}
PP_KERNEL_EXPORT(${KERNEL})
