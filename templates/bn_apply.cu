// bn_apply.cu - batch-norm normalisation and affine transform, fused with the residual
// add, the ReLU, the ReLU's 1-bit mask and the bf16 copy of the BN input, elementwise
// over y (N,HW,C), channels-last: element (n,hw,c) at flat index i = (n*HW + hw)*C + c.
//   y, residual, out: (N,HW,C) act_t (float, or bf16 bits if ACT_BF16)
//   mean, invstd, gamma, beta, running_mean, running_var: (C) float
//   mask: (ceil(COUNT/32)) words over the flat index i  y_bf16: (N,HW,C) bf16 bits
// With s = invstd (training) or 1/sqrt(running_var + EPS) (EVAL) and m = mean (training)
// or running_mean (EVAL):
//   out = gamma[c]*(y - m[c])*s[c] + beta[c]  (+ residual if ADD),  then ReLU if RELU (NaN stays NaN)
//   mask bit i = (out_i > 0) after the add, written if RELU, not EVAL and mask != null
//     (element i is bit i%32 of word i/32; bits past COUNT in the last word are 0)
//   y_bf16[i] = y[i] rounded to bf16 (nearest even), if SAVE_BF16
// ACT_BF16: y and residual are widened to float, out is computed in fp32 as above and
// rounded once to bf16 (nearest even); the mask bit is taken from out as stored (a tiny
// positive value that rounds to 0 votes 0, as a reader of out would see it). SAVE_BF16 is
// 0 (the generator refuses both: y already is bf16).
// Pointers an option does not use may be null and are not touched: mean/invstd under
// EVAL, running_mean/running_var without EVAL, residual without ADD, y_bf16 without
// SAVE_BF16; mask is tested at run time, so a plan that keeps the ReLU output instead of
// the mask (baseline policy) passes null.
// Indexing: one element per thread, flat index i = blockIdx.x*THREADS + threadIdx.x, channel
// c = i % C (consecutive threads, consecutive channels: coalesced), so a warp owns the 32
// consecutive elements of one mask word and writes it whole with one __ballot_sync (lanes
// past COUNT vote 0; every lane takes part in the vote).
// Generator constants: N C HW COUNT (= N*C*HW) RELU ADD SAVE_BF16 EVAL EPS ACT_BF16 THREADS
// (the element's value: bn_apply_value.cuh; bn_apply_pool.cu is the form that also pools it)
// Launch: grid (ceil(COUNT/THREADS)), block (THREADS).
static_assert(!(ACT_BF16 && SAVE_BF16), "ACT_BF16: y is bf16 already, no separate copy");
using act_t = pp_select_t<ACT_BF16 == 1, unsigned short, float>;

extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const act_t *__restrict__ y, const float *__restrict__ mean, const float *__restrict__ invstd,
          const float *__restrict__ gamma, const float *__restrict__ beta, const act_t *__restrict__ residual,
          act_t *__restrict__ out, unsigned *__restrict__ mask, unsigned short *__restrict__ y_bf16,
          const float *__restrict__ running_mean, const float *__restrict__ running_var)
{
    const int i = blockIdx.x * THREADS + threadIdx.x;
    const bool active = i < COUNT;
    float v = 0.0f;
    if (active) {
        const int c = i % C;
        const float x = act_load(y, i);
        float m, s;
        if (EVAL) {
            m = running_mean[c];
            s = 1.0f / sqrtf(running_var[c] + EPS);
        } else {
            m = mean[c];
            s = invstd[c];
        }
        v = bn_apply_value(x, m, s, gamma[c], beta[c], ADD ? act_load(residual, i) : 0.0f); // bn_apply_value.cuh
        v = act_store(out, i, v); // as stored
        if (SAVE_BF16) y_bf16[i] = bf16_round(x);
    }
    if (RELU && !EVAL && mask != nullptr) {
        const unsigned word = __ballot_sync(0xffffffffu, active && v > 0.0f);
        if (threadIdx.x % 32 == 0 && i < COUNT) mask[i / 32] = word;
    }
}
PP_KERNEL_EXPORT(${KERNEL})
