// bn_apply_pool.cu - bn_apply.cu (training form) that also writes the pool-save of what it
// writes, for the convolutions reading its output (pool_save.cuh): x = out is computed
// once, written once, and pooled from registers, so no kernel reads x again for the save.
//   y, residual, out: (N,H,W,C) act_t (float, or bf16 bits if ACT_BF16)
//   mean, invstd, gamma, beta: (C) float  mask: (ceil(COUNT/32)) words
//   y_bf16: (N,H,W,C) bf16 bits  xp: (N,HP,WP,C) act_t  xp2: (N,HP2,WP2,C) act_t (null when
//   POOL_F2 == 1)
// Element (n,h,w,c) at flat index i = ((n*H + h)*W + w)*C + c. out, mask and y_bf16 are
// bitwise bn_apply's (same element value, bn_apply_value.cuh; same mask bits, bits past
// COUNT in the last word 0; same rounding); xp, xp2 bitwise conv_fwd.cu's pool-save of out.
// ACT_BF16 (SAVE_BF16 then 0): out is rounded to bf16 once, and the mask bit and the pool-save
// take the value as stored (pool_save.cuh): xp = bf16 of the fp32 mean (or max) of the
// window's stored elements widened, what un-pooling the stored out and pooling it again gives.
// Pointers an option does not use may be null: residual without ADD, y_bf16 without
// SAVE_BF16, xp2 without POOL_F2; mask is tested at run time (null: no mask).
// Indexing: thread e = blockIdx.x*THREADS + threadIdx.x owns channel c = e % C of the
// POOL_F x POOL_F window e / C = (n, i, j) of out (rows POOL_F*i.., columns POOL_F*j..)
// and walks the window's elements row by row (fully unrolled, elements past the border
// skipped). Consecutive threads take consecutive channels of one window: coalesced loads
// and stores whenever C >= 32.
// Mask: each element's bit comes from one __ballot_sync of the warp (every lane votes, past
// the border or past the last window with 0). A run of CG consecutive lanes whose first
// channel is a multiple of CG (CG = the largest power of two dividing C, at most 32) holds
// CG consecutive elements of one pixel, and those lie in one mask word (C % CG == 0, CG
// divides 32). CG == 32 (C % 32 == 0): the run is a whole word, stored by its first lane.
// Otherwise the first lane merges its run's bits into the word with atomicAnd (clear them)
// then atomicOr (set them): each bit has one owner, so the word ends right whatever the
// order of the runs sharing it; the run that ends at COUNT also clears the bits past COUNT.
// Generator constants: N C H W HW (= H*W) COUNT (= N*HW*C) RELU ADD SAVE_BF16 ACT_BF16 CG, the
//   pool-save's XH (= H) XW (= W) POOL_F POOL_F2 POOL_MAX HP WP HP2 WP2, WINDOWS (= N*HP*WP),
//   THREADS
// Launch: grid (ceil(WINDOWS*C/THREADS)), block (THREADS).
static_assert(XH == H && XW == W && HW == H * W, "the pool-save pools out");
static_assert(CG >= 1 && CG <= 32 && (CG & (CG - 1)) == 0 && C % CG == 0, "CG: a power of two dividing C, <= 32");
static_assert(!(ACT_BF16 && SAVE_BF16), "ACT_BF16: y is bf16 already, no separate copy");
using act_t = pp_select_t<ACT_BF16 == 1, unsigned short, float>;

extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const act_t *__restrict__ y, const float *__restrict__ mean, const float *__restrict__ invstd,
          const float *__restrict__ gamma, const float *__restrict__ beta, const act_t *__restrict__ residual,
          act_t *__restrict__ out, unsigned *__restrict__ mask, unsigned short *__restrict__ y_bf16,
          act_t *__restrict__ xp, act_t *__restrict__ xp2)
{
    const int e = blockIdx.x * THREADS + threadIdx.x;
    const bool active = e < WINDOWS * C;
    const int c = e % C, win = e / C;
    const int n = win / (HP * WP), ij = win - n * (HP * WP), i = ij / WP, j = ij - i * WP;
    const int lane = threadIdx.x % 32;
    float m = 0.0f, s = 0.0f, g = 0.0f, b = 0.0f;
    if (active) {
        m = mean[c];
        s = invstd[c];
        g = gamma[c];
        b = beta[c];
    }
    pool_acc acc;
    pool_init(acc);
#pragma unroll
    for (int dh = 0; dh < POOL_F; ++dh) {
#pragma unroll
        for (int dw = 0; dw < POOL_F; ++dw) {
            const int h = i * POOL_F + dh, w = j * POOL_F + dw;
            const bool valid = active && h < H && w < W;
            const int idx = ((n * H + h) * W + w) * C + c;
            float v = 0.0f;
            if (valid) {
                const float x = act_load(y, idx);
                v = bn_apply_value(x, m, s, g, b, ADD ? act_load(residual, idx) : 0.0f);
                v = act_store(out, idx, v); // as stored
                if (SAVE_BF16) y_bf16[idx] = bf16_round(x);
                pool_add(acc, dh, dw, v);
            }
            if (RELU && mask != nullptr) {
                const unsigned vote = __ballot_sync(0xffffffffu, valid && v > 0.0f);
                if (valid && c % CG == 0) {
                    if (CG == 32) {
                        mask[idx / 32] = vote; // idx % 32 == 0: the whole word
                    } else {
                        const unsigned run = CG == 32 ? 0xffffffffu : (1u << CG) - 1u;
                        const int off = idx % 32;
                        const unsigned clear = idx + CG == COUNT ? ~0u << off : run << off;
                        atomicAnd(mask + idx / 32, ~clear);
                        atomicOr(mask + idx / 32, ((vote >> lane) & run) << off);
                    }
                }
            }
        }
    }
    if (active) pool_store(acc, n, i, j, c, xp, xp2);
}
PP_KERNEL_EXPORT(${KERNEL})
