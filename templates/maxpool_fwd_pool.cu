// maxpool_fwd_pool.cu - maxpool_fwd.cu (the stem's max pooling) that also writes the
// pool-save of its output y for the convolutions reading it (pool_save.cuh): each element
// of y is computed once, written once, and pooled from registers.
//   x: (N,H,W,C)  y: (N,P,Q,C)  argmax: (N,P,Q,C) bytes  xp: (N,HP,WP,C)
//   xp2: (N,HP2,WP2,C) (null when POOL_F2 == 1); x, y, xp, xp2: act_t (float, or bf16 bits
//   if ACT_BF16: the pool-save then takes y as stored and rounds xp once, pool_save.cuh)
// y and argmax are bitwise maxpool_fwd's (same element, maxpool_window.cuh); xp, xp2 bitwise
// conv_fwd.cu's pool-save of y.
// Indexing: thread e = blockIdx.x*THREADS + threadIdx.x owns channel c = e % C of the
// POOL_F x POOL_F window e / C = (n, i, j) of y (rows POOL_F*i.., columns POOL_F*j..) and
// walks its elements row by row (fully unrolled, elements past the border skipped).
// Consecutive threads take consecutive channels of one window (coalesced when C >= 32).
// Generator constants: N C H W R STRIDE PAD P Q ACT_BF16, the pool-save's XH (= P) XW (= Q) POOL_F
//   POOL_F2 POOL_MAX HP WP HP2 WP2, WINDOWS (= N*HP*WP), THREADS
// Launch: grid (ceil(WINDOWS*C/THREADS)), block (THREADS).
static_assert(XH == P && XW == Q, "the pool-save pools y");
using act_t = pp_select_t<ACT_BF16 == 1, unsigned short, float>;

extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const act_t *__restrict__ x, act_t *__restrict__ y, unsigned char *__restrict__ argmax,
          act_t *__restrict__ xp, act_t *__restrict__ xp2)
{
    const int e = blockIdx.x * THREADS + threadIdx.x;
    if (e >= WINDOWS * C) return;
    const int c = e % C, win = e / C;
    const int n = win / (HP * WP), ij = win - n * (HP * WP), i = ij / WP, j = ij - i * WP;
    const act_t *image = x + n * (H * W * C) + c;
    pool_acc acc;
    pool_init(acc);
#pragma unroll
    for (int dh = 0; dh < POOL_F; ++dh) {
#pragma unroll
        for (int dw = 0; dw < POOL_F; ++dw) {
            const int oy = i * POOL_F + dh, ox = j * POOL_F + dw;
            if (oy >= P || ox >= Q) continue;
            const int o = ((n * P + oy) * Q + ox) * C + c;
            unsigned char arg;
            const float v = act_store(y, o, maxpool_at(image, oy, ox, arg)); // as stored
            argmax[o] = arg;
            pool_add(acc, dh, dw, v);
        }
    }
    pool_store(acc, n, i, j, c, xp, xp2);
}
PP_KERNEL_EXPORT(${KERNEL})
