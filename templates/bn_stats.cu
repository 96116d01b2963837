// bn_stats.cu - batch-norm statistics in training mode, one block per channel (PyTorch
// train-mode semantics).
//   y: (N,C,HW)  mean, invstd, running_mean, running_var: (C)
// Over the M = N*HW values of channel c:
//   mean[c] = sum y / M,  var = sum (y - mean)^2 / M (biased),  invstd[c] = 1/sqrt(var + EPS)
//   running_mean[c] = (1-MOMENTUM)*running_mean[c] + MOMENTUM*mean
//   running_var[c]  = (1-MOMENTUM)*running_var[c]  + MOMENTUM*var*M/(M-1)  (unbiased)
// Numerics: the values are shifted by the channel's first value K = y[0,c,0] (exact or
// nearly so where values are close, and it makes the data's mean small against its
// spread, so a large common offset costs no accuracy: fp32 Welford on the raw values lost
// ~1e-4 of the variance at offset 1000 and spread 1, shifted it keeps ~1e-7). Each thread
// runs Welford's update over its shifted values (j = tid, tid+THREADS, ... of the channel
// in (n, hw) order, so a warp reads consecutive addresses), then the block merges the
// threads' (count, mean, M2) with Chan's formula in a fixed tree: no sum-of-squares
// cancellation, and the result does not depend on the thread schedule.
//   mean = K + shifted mean,  var = M2 / M
// Generator constants: N C HW M (= N*HW, >= 2) MOMENTUM EPS THREADS
// Launch: grid (C), block (THREADS).
extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const float *__restrict__ y, float *__restrict__ mean, float *__restrict__ invstd,
          float *__restrict__ running_mean, float *__restrict__ running_var)
{
    __shared__ welford scratch[WARPS];
    const int c = blockIdx.x;
    const float shift = y[c * HW];
    welford w = { 0.0f, 0.0f, 0.0f };
    for (int j = threadIdx.x; j < M; j += THREADS) {
        const int n = j / HW, i = j - n * HW;
        welford_add(w, y[(n * C + c) * HW + i] - shift);
    }
    w = block_welford(w, scratch);
    if (threadIdx.x == 0)
        bn_store_stats(c, shift + w.mean, w.m2 / (float)M, (float)M, EPS, MOMENTUM, mean, invstd, running_mean,
                       running_var);
}
PP_KERNEL_EXPORT(${KERNEL})
