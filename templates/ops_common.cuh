// ops_common.cuh - helpers the non-convolution kernels (generator/poolprop/ops.lua) share:
// bf16 rounding, activation loads and stores (float or bf16 storage), deterministic warp and
// block reductions, Welford/Chan merges and the BN statistics' final store. The generator
// emits it inside each kernel's namespace, after that kernel's constants; the block helpers
// use the kernel's THREADS (a multiple of 32, at most 1024).
// Determinism: every reduction combines values in a fixed tree (shfl_down within a warp,
// then warp 0 over the warps' results in warp order; the column reductions: shfl_down
// within a warp, then a pairwise tree over the warps in shared memory), whatever order
// threads run in.
// Column reductions (NHWC data, threads along the channels): thread t holds channel lane
// t % CT and pixel group t / CT (CT a power of two <= 32, so a warp holds 32/CT whole
// groups); they reduce over the THREADS/CT groups of each lane and hand every thread its
// lane's result.
// Types: unsigned / unsigned short / unsigned char stand for uint32/uint16/uint8, which
// NVRTC does not declare without headers.

constexpr int WARPS = THREADS / 32;
constexpr int WARPS_POW2 = WARPS <= 1 ? 1 : WARPS <= 2 ? 2 : WARPS <= 4 ? 4 : WARPS <= 8 ? 8 : WARPS <= 16 ? 16 : 32;
static_assert(THREADS % 32 == 0 && THREADS >= 32 && THREADS <= 1024, "THREADS: whole warps, at most 1024");

// float -> bf16 bits, round to nearest even on the float's bits; NaN stays a (quiet) NaN
// with its sign; overflow rounds to infinity as IEEE round-to-nearest does.
__device__ __forceinline__ unsigned short bf16_round(float x)
{
    const unsigned bits = __float_as_uint(x);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((bits >> 16) | 0x0040u);
    return (unsigned short)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ float bf16_to_float(unsigned short b) { return __uint_as_float((unsigned)b << 16); }

// Activation storage: a kernel with ACT_BF16 = 1 keeps its activation tensors as bf16 bits
// (its act_t = unsigned short), the others as float (act_t = float); arithmetic is fp32 in
// both. act_load widens element i to float. act_store rounds v to the storage type (bf16:
// nearest even, bf16_round), stores it at i and returns the value as stored, widened, so
// that whatever the kernel derives from v afterwards (a mask bit, a pool-save) is what a
// later reader of the tensor sees. For float storage both are a plain load and store.
__device__ __forceinline__ float act_load(const float *p, int i) { return p[i]; }
__device__ __forceinline__ float act_load(const unsigned short *p, int i) { return bf16_to_float(p[i]); }
__device__ __forceinline__ float act_store(float *p, int i, float v)
{
    p[i] = v;
    return v;
}
__device__ __forceinline__ float act_store(unsigned short *p, int i, float v)
{
    const unsigned short b = bf16_round(v);
    p[i] = b;
    return bf16_to_float(b);
}

// Sum of v over the warp; the full sum lands in lane 0 (other lanes hold partial sums).
__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    return v;
}

// Sums of a and b over the block, returned to every thread. scratch: __shared__ float[2*WARPS].
// Contains barriers: every thread of the block must call it.
__device__ __forceinline__ void block_sum2(float &a, float &b, float *scratch)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    a = warp_sum(a);
    b = warp_sum(b);
    if (lane == 0) {
        scratch[warp] = a;
        scratch[WARPS + warp] = b;
    }
    __syncthreads();
    if (warp == 0) {
        a = lane < WARPS ? scratch[lane] : 0.0f;
        b = lane < WARPS ? scratch[WARPS + lane] : 0.0f;
        a = warp_sum(a);
        b = warp_sum(b);
        if (lane == 0) {
            scratch[0] = a;
            scratch[WARPS] = b;
        }
    }
    __syncthreads();
    a = scratch[0];
    b = scratch[WARPS];
    __syncthreads(); // scratch may be reused right after
}

// Running statistics of a set of values: count, mean, sum of squared deviations (M2).
struct welford {
    float n, mean, m2;
};

// Welford's update with one value.
__device__ __forceinline__ void welford_add(welford &w, float x)
{
    w.n += 1.0f;
    const float d = x - w.mean;
    w.mean += d / w.n;
    w.m2 += d * (x - w.mean);
}

// Chan et al.'s merge of two sets; either may be empty.
__device__ __forceinline__ welford welford_merge(welford a, welford b)
{
    if (b.n == 0.0f) return a;
    if (a.n == 0.0f) return b;
    welford r;
    r.n = a.n + b.n;
    const float d = b.mean - a.mean, fb = b.n / r.n;
    r.mean = a.mean + d * fb;
    r.m2 = a.m2 + b.m2 + d * d * a.n * fb;
    return r;
}

// A channel's batch statistics from its mean and biased variance over m values: invstd,
// and PyTorch's running averages (the variance's unbiased, m/(m-1)).
__device__ __forceinline__ void bn_store_stats(int c, float mu, float var, float m, float eps, float momentum,
                                               float *mean, float *invstd, float *running_mean, float *running_var)
{
    mean[c] = mu;
    invstd[c] = 1.0f / sqrtf(var + eps);
    const float unbiased = var * (m / (m - 1.0f));
    running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mu;
    running_var[c] = (1.0f - momentum) * running_var[c] + momentum * unbiased;
}

// Merge over the warp; the result lands in lane 0.
__device__ __forceinline__ welford warp_welford(welford w)
{
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        welford o;
        o.n = __shfl_down_sync(0xffffffffu, w.n, off);
        o.mean = __shfl_down_sync(0xffffffffu, w.mean, off);
        o.m2 = __shfl_down_sync(0xffffffffu, w.m2, off);
        w = welford_merge(w, o);
    }
    return w;
}

// Merge over the block; the result is valid in thread 0. scratch: __shared__ welford[WARPS].
// Contains a barrier: every thread of the block must call it.
__device__ __forceinline__ welford block_welford(welford w, welford *scratch)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    w = warp_welford(w);
    if (lane == 0) scratch[warp] = w;
    __syncthreads();
    if (warp == 0) {
        welford v = { 0.0f, 0.0f, 0.0f };
        if (lane < WARPS) v = scratch[lane];
        w = warp_welford(v);
    }
    return w;
}

// Column (per channel lane) sums of a and b over the block's THREADS/CT pixel groups,
// returned to every thread (its lane's sums). Tree: shfl_down by 16, 8, ..., CT within the
// warp (log2(32/CT) levels, partners hold the same lane), then a pairwise tree over the
// warps (ceil(log2(WARPS)) levels): log2(THREADS/CT) levels in all.
// scratch: __shared__ float[2*WARPS*CT]. Contains barriers: every thread must call it.
template <int CT>
__device__ __forceinline__ void block_sum2_cols(float &a, float &b, float *scratch)
{
    static_assert(CT >= 1 && CT <= 32 && (CT & (CT - 1)) == 0, "CT: a power of two, at most 32");
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
    for (int off = 16; off >= CT; off >>= 1) {
        a += __shfl_down_sync(0xffffffffu, a, off);
        b += __shfl_down_sync(0xffffffffu, b, off);
    }
    float *sa = scratch, *sb = scratch + WARPS * CT;
    if (lane < CT) {
        sa[warp * CT + lane] = a;
        sb[warp * CT + lane] = b;
    }
    __syncthreads();
    for (int half = WARPS_POW2 / 2; half > 0; half >>= 1) {
        if (lane < CT && warp < half && warp + half < WARPS) {
            sa[warp * CT + lane] += sa[(warp + half) * CT + lane];
            sb[warp * CT + lane] += sb[(warp + half) * CT + lane];
        }
        __syncthreads();
    }
    a = sa[threadIdx.x % CT];
    b = sb[threadIdx.x % CT];
    __syncthreads(); // scratch may be reused right after
}

// Column (per channel lane) Welford merge over the block's THREADS/CT pixel groups, in the
// same tree as block_sum2_cols; every thread gets its lane's result.
// scratch: __shared__ welford[WARPS*CT]. Contains barriers: every thread must call it.
template <int CT>
__device__ __forceinline__ welford block_welford_cols(welford w, welford *scratch)
{
    static_assert(CT >= 1 && CT <= 32 && (CT & (CT - 1)) == 0, "CT: a power of two, at most 32");
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
    for (int off = 16; off >= CT; off >>= 1) {
        welford o;
        o.n = __shfl_down_sync(0xffffffffu, w.n, off);
        o.mean = __shfl_down_sync(0xffffffffu, w.mean, off);
        o.m2 = __shfl_down_sync(0xffffffffu, w.m2, off);
        w = welford_merge(w, o);
    }
    if (lane < CT) scratch[warp * CT + lane] = w;
    __syncthreads();
    for (int half = WARPS_POW2 / 2; half > 0; half >>= 1) {
        if (lane < CT && warp < half && warp + half < WARPS)
            scratch[warp * CT + lane] = welford_merge(scratch[warp * CT + lane], scratch[(warp + half) * CT + lane]);
        __syncthreads();
    }
    w = scratch[threadIdx.x % CT];
    __syncthreads(); // scratch may be reused right after
    return w;
}
