// bn_stats_merge.cu - batch-norm statistics in training mode (as bn_stats.cu) from the
// per-block partial statistics the forward convolution left in its epilogue, so the
// convolution's output is not read a second time for them (SHIFT 0), or from the per-slice
// partials of bn_stats_part.cu (SHIFT 1). One block per channel.
//   partials: (PARTS,C,3) = (count, mean, M2) of disjoint sets of the channel's M = N*HW
//     values (a set may be empty: count 0), at (p*C + c)*3;
//     SHIFT 1: the means are relative to a shift K[c], stored after them at PARTS*C*3 + c,
//     and mean = K[c] + the merged mean (bn_stats_part: K[c] is the channel's first value)
//   mean, invstd, running_mean, running_var: (C)
// The partials are merged with Chan's formula (ops_common.cuh welford_merge): each thread
// merges parts tid, tid+THREADS, ... in order, then the block merges the threads' results
// in a fixed tree, so the result does not depend on the thread schedule. Each partial is
// centred on its own mean, so there is no sum-of-squares cancellation. Then, as bn_stats:
//   var = M2 / MG (biased), invstd = 1/sqrt(var + EPS),
//   running_mean = (1-MOMENTUM)*running_mean + MOMENTUM*mean,
//   running_var  = (1-MOMENTUM)*running_var  + MOMENTUM*var*MG/(MG-1)
// MG = M, or M*WORLD under synchronised BN: the partials then cover the batches of WORLD
// ranks (the runtime merges the ranks' partials into these before the launch).
// Generator constants: C PARTS M SHIFT (0|1) MOMENTUM EPS MG THREADS.
// Launch: grid (C), block (THREADS).
extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(const float *__restrict__ partials, float *__restrict__ mean, float *__restrict__ invstd,
          float *__restrict__ running_mean, float *__restrict__ running_var)
{
    __shared__ welford scratch[WARPS];
    const int c = blockIdx.x;
    welford w = { 0.0f, 0.0f, 0.0f };
    for (int p = threadIdx.x; p < PARTS; p += THREADS) {
        const float *q = partials + (p * C + c) * 3;
        const welford part = { q[0], q[1], q[2] };
        w = welford_merge(w, part);
    }
    w = block_welford(w, scratch);
    if (threadIdx.x == 0) {
        const float mu = SHIFT ? partials[PARTS * C * 3 + c] + w.mean : w.mean;
        bn_store_stats(c, mu, w.m2 / (float)MG, (float)MG, EPS, MOMENTUM, mean, invstd, running_mean, running_var);
    }
}
PP_KERNEL_EXPORT(${KERNEL})
