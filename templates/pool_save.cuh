// pool_save.cuh - the pool-save (DESIGN.md section 1) written by the kernel that produces a
// convolution's input x, from the values it has just computed, so that the convolution
// need not read x a second time (bn_apply_pool.cu, maxpool_fwd_pool.cu).
//   x: (N,XH,XW,C)  xp: (N,HP,WP,C) pooled by POOL_F  xp2: (N,HP2,WP2,C) pooled by POOL_F2
// Windows are f x f at stride f, cut at the border (HP = ceil(XH/POOL_F), ...); avg divides
// by the number of elements that exist, max (POOL_MAX) takes fmaxf over them.
// Exactness: xp must be bitwise what conv_fwd.cu's own pool-save makes of the same x. Both
// visit a window's existing elements row by row, columns within a row, and do the same
// float operations in that order: avg: s = 0, s += x for each, then one s / (float)count;
// max: v = the first element, then v = fmaxf(v, x) for each (the first included).
// Two factors: a producer may serve two consumer convolutions that pool its output by
// different factors. POOL_F2 (1: none) divides POOL_F, so each POOL_F window is tiled by
// SUB x SUB POOL_F2 windows (the border cuts both alike), and the POOL_F window's row-major
// walk visits each POOL_F2 window's elements in its own row-major order: one walk feeds
// both sets of accumulators, each in conv_fwd's order.
// Use: a thread owns one POOL_F window of one channel; it calls pool_add for the window's
// existing elements in row-major order (offsets dh, dw in [0, POOL_F)), then pool_store.
// bf16 storage (the producer's ACT_BF16): x, xp and xp2 are bf16 bits. pool_add gets each
// element as stored (act_store's widened bf16 value, not the fp32 value before rounding),
// the accumulation above runs in fp32 unchanged, and pool_store rounds the window's mean
// (or max) to bf16 once (nearest even; a max is a bf16 value already, so exact): xp is what
// pooling the stored x in fp32 and rounding gives, the same for any reader of x.
// Generator constants: C XH XW POOL_F POOL_F2 POOL_MAX HP WP HP2 WP2
static_assert(POOL_F > 1 && (POOL_F2 == 1 || (POOL_F2 < POOL_F && POOL_F % POOL_F2 == 0)),
              "pool-save: POOL_F > 1; POOL_F2 is 1 or a proper divisor of POOL_F");

constexpr int SUB = POOL_F2 > 1 ? POOL_F / POOL_F2 : 1; // POOL_F2 windows per POOL_F window side

struct pool_acc {
    float v;            // the POOL_F window
    float v2[SUB * SUB]; // its POOL_F2 windows, row-major (used when POOL_F2 > 1)
};

__device__ __forceinline__ void pool_init(pool_acc &p)
{
    p.v = 0.0f;
#pragma unroll
    for (int s = 0; s < SUB * SUB; ++s) p.v2[s] = 0.0f;
}

// One accumulator's step: element x, first = whether it opens the window.
__device__ __forceinline__ void pool_step(float &acc, float x, bool first)
{
    if (POOL_MAX) {
        if (first) acc = x;
        acc = fmaxf(acc, x);
    } else {
        acc += x;
    }
}

// Element (dh, dw) of the thread's window (it exists: inside x).
__device__ __forceinline__ void pool_add(pool_acc &p, int dh, int dw, float x)
{
    pool_step(p.v, x, dh == 0 && dw == 0);
    if (POOL_F2 > 1)
        pool_step(p.v2[(dh / POOL_F2) * SUB + dw / POOL_F2], x, dh % POOL_F2 == 0 && dw % POOL_F2 == 0);
}

// Writes window (n, i, j) of channel c to xp, and its POOL_F2 windows that exist to xp2;
// T: float, or unsigned short for bf16 storage (ops_common.cuh act_store).
template <class T>
__device__ __forceinline__ void pool_store(const pool_acc &p, int n, int i, int j, int c, T *xp, T *xp2)
{
    const int rows = pp_min(POOL_F, XH - i * POOL_F), cols = pp_min(POOL_F, XW - j * POOL_F);
    const float v = POOL_MAX ? p.v : p.v / (float)(rows * cols);
    act_store(xp, ((n * HP + i) * WP + j) * C + c, v);
    if (POOL_F2 > 1) {
#pragma unroll
        for (int a = 0; a < SUB; ++a) {
#pragma unroll
            for (int b = 0; b < SUB; ++b) {
                const int i2 = i * SUB + a, j2 = j * SUB + b;
                if (i2 >= HP2 || j2 >= WP2) continue;
                const int rows2 = pp_min(POOL_F2, XH - i2 * POOL_F2), cols2 = pp_min(POOL_F2, XW - j2 * POOL_F2);
                const float v2 = POOL_MAX ? p.v2[a * SUB + b] : p.v2[a * SUB + b] / (float)(rows2 * cols2);
                act_store(xp2, ((n * HP2 + i2) * WP2 + j2) * C + c, v2);
            }
        }
    }
}
