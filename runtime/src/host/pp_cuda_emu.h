// pp_cuda_emu.h - lets a CUDA kernel source compile unchanged with the host C++ compiler
// (C++17) for the host emulation backend. The backend compiles
//     emu_abi.h + this header + #line 1 "<source name>" + the kernel source
// into a shared object; the scheduler (runtime/src/host/scheduler.c) runs each CUDA
// thread as a fiber and binds the module to its callbacks with pp_emu_bind().
//
// What it provides: the CUDA qualifiers, threadIdx/blockIdx/blockDim/gridDim, dim3 and
// the vector types, __syncthreads (and _count/_and/_or), warp shuffles/votes/__syncwarp,
// atomics, __ldg, the fast-math intrinsics, assert/__trap, the deferred copies behind
// cp.async (templates/ptx_async_copy.cuh), and PP_KERNEL_EXPORT(name),
// which emits extern "C" pp_emu_entry_<name>(void **args): args[i] points at the i-th
// parameter (pointers as 8-byte values), unpacked into the kernel's own parameter types.
//
// Invariants this relies on:
// - All fibers of a block run on one OS thread, so __shared__ = static thread_local is
//   shared by exactly the threads of one block at a time. Shared memory keeps whatever an
//   earlier block on that OS thread left there (like a GPU: it is not zeroed).
// - A fiber is only switched inside abi->syncthreads / abi->warp_exchange (and at its
//   start and end), so `cur` (the running CUDA thread's indices) is refreshed after each
//   of those calls and at entry, and is valid whenever kernel code runs.
// - Every warp operation takes the call's __LINE__, so the scheduler can report lanes of
//   one warp meeting at different operations. Warp operations involve all lanes of the
//   warp that exist in the block (the mask is checked to contain the calling lane and
//   filters votes, but does not let a subset of lanes meet on their own).
// - No names outside namespace pp_emu except the CUDA ones: generated code uses short
//   constant names (N, C, H, ...) in its own namespaces.
// - assert (ours, or glibc's if a source includes <assert.h> again) and __trap report
//   through abi->trap with the source line: the kernel fails, the process does not abort.
// The backend prepends emu_abi.h's text (so the #include below is skipped); compiled on
// its own, this header includes emu_abi.h from its directory.
// Defines PP_HOST_EMULATION to 1, so a source can give inline PTX a host implementation.
// Not provided: dynamic (extern) shared memory, half/bfloat16 types, texture objects,
// warp operations on a subset of a warp's lanes, __match_*_sync, clock64.
#ifndef PP_CUDA_EMU_H
#define PP_CUDA_EMU_H

#ifndef __cplusplus
#error "pp_cuda_emu.h is C++17"
#endif

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmath>
#include <cstddef>
#include <type_traits>
#include <utility>
#include <vector>

#ifndef PP_EMU_ABI_H
#include "emu_abi.h"
#endif

#define PP_HOST_EMULATION 1

// ---- qualifiers ----
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static thread_local
#define PP_EMU_EXPORT extern "C" __attribute__((visibility("default")))

// ---- the running CUDA thread ----
namespace pp_emu {
inline const pp_emu_abi *abi = nullptr;
static thread_local const pp_emu_thread_state *cur = nullptr;

static inline void refresh() { cur = abi->self(); }
static inline unsigned linear_tid()
{
    return cur->thread_idx.x + cur->block_dim.x * (cur->thread_idx.y + cur->block_dim.y * cur->thread_idx.z);
}
static inline unsigned lane_id() { return linear_tid() & 31u; }
// Mask of the lanes of the caller's warp that exist in the block.
static inline unsigned lanes_mask()
{
    unsigned n = cur->block_dim.x * cur->block_dim.y * cur->block_dim.z - (linear_tid() & ~31u);
    return n >= 32 ? 0xffffffffu : (1u << n) - 1u;
}
[[noreturn]] static inline void trap(const char *message, int line)
{
    abi->trap(message, line);
    __builtin_unreachable();
}
static inline void syncthreads(int line)
{
    abi->syncthreads(line);
    refresh();
}
} // namespace pp_emu

typedef pp_emu_dim3 uint3;
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(const uint3 &v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};
#define threadIdx (::pp_emu::cur->thread_idx)
#define blockIdx (::pp_emu::cur->block_idx)
#define blockDim (::pp_emu::cur->block_dim)
#define gridDim (::pp_emu::cur->grid_dim)
static constexpr int warpSize = 32;

// ---- vector types ----
// One-line structs keep the vector types readable.
// clang-format off
#define PP_EMU_VEC2(T, name, al)                                                               \
    struct __attribute__((aligned(al))) name { T x, y; };                                      \
    static inline name make_##name(T x, T y) { return name{x, y}; }
#define PP_EMU_VEC3(T, name)                                                                   \
    struct name { T x, y, z; };                                                                \
    static inline name make_##name(T x, T y, T z) { return name{x, y, z}; }
#define PP_EMU_VEC4(T, name, al)                                                               \
    struct __attribute__((aligned(al))) name { T x, y, z, w; };                                \
    static inline name make_##name(T x, T y, T z, T w) { return name{x, y, z, w}; }
// clang-format on
PP_EMU_VEC2(float, float2, 8)
PP_EMU_VEC3(float, float3)
PP_EMU_VEC4(float, float4, 16)
PP_EMU_VEC2(int, int2, 8)
PP_EMU_VEC3(int, int3)
PP_EMU_VEC4(int, int4, 16)
PP_EMU_VEC2(unsigned, uint2, 8)
PP_EMU_VEC4(unsigned, uint4, 16)
PP_EMU_VEC2(double, double2, 16)
static inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }
#undef PP_EMU_VEC2
#undef PP_EMU_VEC3
#undef PP_EMU_VEC4

// ---- barriers ----
#define __syncthreads() ::pp_emu::syncthreads(__LINE__)
#define __syncthreads_count(pred) ::pp_emu::syncthreads_reduce(__LINE__, (pred), 0)
#define __syncthreads_and(pred) ::pp_emu::syncthreads_reduce(__LINE__, (pred), 1)
#define __syncthreads_or(pred) ::pp_emu::syncthreads_reduce(__LINE__, (pred), 2)
namespace pp_emu {
// Block-wide count of non-zero predicates: barrier, the block's first thread resets the
// (block-shared) counters, barrier, everyone adds, barrier, everyone reads. The next call
// cannot reset before everyone has read, because of its own first barrier.
static inline int syncthreads_reduce(int line, int pred, int op)
{
    static thread_local int count, total;
    syncthreads(line);
    if (linear_tid() == 0) count = total = 0;
    syncthreads(line);
    count += pred != 0;
    total += 1;
    syncthreads(line);
    return op == 0 ? count : op == 1 ? count == total : count != 0;
}
} // namespace pp_emu

// ---- warp operations ----
namespace pp_emu {
enum shfl_mode {
    SHFL_IDX,
    SHFL_UP,
    SHFL_DOWN,
    SHFL_BFLY
};

static inline void exchange(unsigned long long value, unsigned long long all[32], int line)
{
    abi->warp_exchange(value, all, line);
    refresh();
}
static inline void check_mask(unsigned mask, int line)
{
    if (!((mask >> lane_id()) & 1u)) trap("warp operation: the calling lane is not in the mask", line);
}
template <class T> static inline unsigned long long to_bits(T v)
{
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "warp exchange of a type over 8 bytes");
    unsigned long long b = 0;
    memcpy(&b, &v, sizeof v);
    return b;
}
template <class T> static inline T from_bits(unsigned long long b)
{
    T v;
    memcpy(&v, &b, sizeof v);
    return v;
}
// PTX shfl.sync semantics, with c = ((32 - width) << 8) | (up ? 0 : 31) as CUDA builds it.
template <class T> static inline T shfl(int line, int mode, unsigned mask, T var, int b, int width)
{
    if (width < 1 || width > 32 || (width & (width - 1)))
        trap("warp shuffle: width must be a power of 2 in 1..32", line);
    check_mask(mask, line);
    unsigned long long all[32];
    exchange(to_bits(var), all, line);
    const int lane = (int)lane_id();
    const int segmask = (32 - width) & 31, cval = mode == SHFL_UP ? 0 : 31, bval = b & 31;
    const int max_lane = (lane & segmask) | (cval & ~segmask), min_lane = lane & segmask;
    int j;
    bool ok;
    switch (mode) {
    case SHFL_UP:
        j = lane - bval;
        ok = j >= max_lane;
        break;
    case SHFL_DOWN:
        j = lane + bval;
        ok = j <= max_lane;
        break;
    case SHFL_BFLY:
        j = lane ^ bval;
        ok = j <= max_lane;
        break;
    default:
        j = min_lane | (bval & ~segmask);
        ok = j <= max_lane;
        break;
    }
    return ok ? from_bits<T>(all[j]) : var;
}
template <class T> static inline T shfl_idx(int line, unsigned mask, T var, int src, int width = 32)
{
    return shfl(line, SHFL_IDX, mask, var, src, width);
}
template <class T> static inline T shfl_up(int line, unsigned mask, T var, unsigned delta, int width = 32)
{
    return shfl(line, SHFL_UP, mask, var, (int)delta, width);
}
template <class T> static inline T shfl_down(int line, unsigned mask, T var, unsigned delta, int width = 32)
{
    return shfl(line, SHFL_DOWN, mask, var, (int)delta, width);
}
template <class T> static inline T shfl_xor(int line, unsigned mask, T var, int lane_mask, int width = 32)
{
    return shfl(line, SHFL_BFLY, mask, var, lane_mask, width);
}
static inline unsigned ballot(int line, unsigned mask, int pred)
{
    check_mask(mask, line);
    unsigned long long all[32];
    exchange(pred != 0, all, line);
    unsigned r = 0;
    for (int l = 0; l < 32; l++) r |= (all[l] != 0 ? 1u : 0u) << l;
    return r & mask;
}
// True when the predicate holds on every lane of the mask that exists.
static inline bool all(int line, unsigned mask, int pred) { return ballot(line, mask, pred) == (mask & lanes_mask()); }
// __syncwarp() and __syncwarp(mask) through one macro: ISO mode has no comma elision.
struct syncwarp_at {
    int line;
    void operator()(unsigned mask = 0xffffffffu) const
    {
        check_mask(mask, line);
        unsigned long long all[32];
        exchange(0, all, line);
    }
};
} // namespace pp_emu
#define __shfl_sync(...) ::pp_emu::shfl_idx(__LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) ::pp_emu::shfl_up(__LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) ::pp_emu::shfl_down(__LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) ::pp_emu::shfl_xor(__LINE__, __VA_ARGS__)
#define __ballot_sync(mask, pred) ::pp_emu::ballot(__LINE__, (mask), (pred))
#define __any_sync(mask, pred) (::pp_emu::ballot(__LINE__, (mask), (pred)) != 0u)
#define __all_sync(mask, pred) ::pp_emu::all(__LINE__, (mask), (pred))
#define __syncwarp(...) ::pp_emu::syncwarp_at{__LINE__}(__VA_ARGS__)
static inline unsigned __activemask() { return ::pp_emu::lanes_mask(); }

// ---- memory ----
static inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
template <class T> static inline T __ldg(const T *p) { return *p; }

// ---- atomics (blocks run on different OS threads: real atomic instructions) ----
namespace pp_emu {
template <class T, class F> static inline T atomic_update(T *addr, F f)
{
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "atomic on an unsupported type");
    typedef typename std::conditional<sizeof(T) == 4, unsigned, unsigned long long>::type U;
    U *p = reinterpret_cast<U *>(addr);
    U old = __atomic_load_n(p, __ATOMIC_RELAXED);
    for (;;) {
        T value = from_bits<T>(old), next = f(value);
        U want;
        memcpy(&want, &next, sizeof want);
        if (__atomic_compare_exchange_n(p, &old, want, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) return value;
    }
}
} // namespace pp_emu
#define PP_EMU_INT_ATOMICS(T)                                                                     \
    static inline T atomicAdd(T *a, T v) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); }   \
    static inline T atomicSub(T *a, T v) { return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST); }   \
    static inline T atomicAnd(T *a, T v) { return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST); }   \
    static inline T atomicOr(T *a, T v) { return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST); }     \
    static inline T atomicXor(T *a, T v) { return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST); }   \
    static inline T atomicExch(T *a, T v) { return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); } \
    static inline T atomicMin(T *a, T v)                                                          \
    {                                                                                             \
        return ::pp_emu::atomic_update(a, [v](T o) { return v < o ? v : o; });                    \
    }                                                                                             \
    static inline T atomicMax(T *a, T v)                                                          \
    {                                                                                             \
        return ::pp_emu::atomic_update(a, [v](T o) { return v > o ? v : o; });                    \
    }                                                                                             \
    static inline T atomicCAS(T *a, T compare, T v)                                               \
    {                                                                                             \
        __atomic_compare_exchange_n(a, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);   \
        return compare;                                                                           \
    }
PP_EMU_INT_ATOMICS(int)
PP_EMU_INT_ATOMICS(unsigned)
PP_EMU_INT_ATOMICS(unsigned long long)
PP_EMU_INT_ATOMICS(long long)
#undef PP_EMU_INT_ATOMICS
static inline float atomicAdd(float *a, float v)
{
    return ::pp_emu::atomic_update(a, [v](float o) { return o + v; });
}
static inline double atomicAdd(double *a, double v)
{
    return ::pp_emu::atomic_update(a, [v](double o) { return o + v; });
}
static inline float atomicExch(float *a, float v)
{
    return ::pp_emu::atomic_update(a, [v](float) { return v; });
}
static inline unsigned atomicInc(unsigned *a, unsigned v)
{
    return ::pp_emu::atomic_update(a, [v](unsigned o) { return o >= v ? 0u : o + 1u; });
}
static inline unsigned atomicDec(unsigned *a, unsigned v)
{
    return ::pp_emu::atomic_update(a, [v](unsigned o) { return (o == 0u || o > v) ? v : o - 1u; });
}

// ---- math and bit intrinsics ----
// glibc declares some of these names itself (__expf, __sinf, ...) and C23 adds rsqrt, so
// they are macros for functions in pp_emu rather than new global functions.
namespace pp_emu {
static inline float f_rsqrt(float x) { return 1.0f / sqrtf(x); }
static inline double d_rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float f_exp(float x) { return expf(x); }
static inline float f_exp10(float x) { return powf(10.0f, x); }
static inline float f_log(float x) { return logf(x); }
static inline float f_log2(float x) { return log2f(x); }
static inline float f_log10(float x) { return log10f(x); }
static inline float f_sin(float x) { return sinf(x); }
static inline float f_cos(float x) { return cosf(x); }
static inline float f_tan(float x) { return tanf(x); }
static inline float f_pow(float x, float y) { return powf(x, y); }
} // namespace pp_emu
#define rsqrtf ::pp_emu::f_rsqrt
#define rsqrt ::pp_emu::d_rsqrt
#define __expf ::pp_emu::f_exp
#define __exp10f ::pp_emu::f_exp10
#define __logf ::pp_emu::f_log
#define __log2f ::pp_emu::f_log2
#define __log10f ::pp_emu::f_log10
#define __sinf ::pp_emu::f_sin
#define __cosf ::pp_emu::f_cos
#define __tanf ::pp_emu::f_tan
#define __powf ::pp_emu::f_pow
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
static inline float __saturatef(float x) { return x >= 1.0f ? 1.0f : x > 0.0f ? x : 0.0f; }
static inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
static inline int __float2int_rz(float x) { return (int)x; }
static inline int __float2int_rd(float x) { return (int)floorf(x); }
static inline int __float2int_ru(float x) { return (int)ceilf(x); }
static inline float __int2float_rn(int x) { return (float)x; }
static inline int __float_as_int(float x) { return ::pp_emu::from_bits<int>(::pp_emu::to_bits(x)); }
static inline unsigned __float_as_uint(float x) { return ::pp_emu::from_bits<unsigned>(::pp_emu::to_bits(x)); }
static inline float __int_as_float(int x) { return ::pp_emu::from_bits<float>(::pp_emu::to_bits(x)); }
static inline float __uint_as_float(unsigned x) { return ::pp_emu::from_bits<float>(::pp_emu::to_bits(x)); }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
static inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
static inline unsigned __brev(unsigned x)
{
    unsigned r = 0;
    for (int i = 0; i < 32; i++) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}
static inline int __mul24(int a, int b)
{
    long long a24 = ((a & 0xffffff) ^ 0x800000) - 0x800000, b24 = ((b & 0xffffff) ^ 0x800000) - 0x800000;
    return (int)(unsigned)(a24 * b24);
}
static inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
// CUDA's min/max overloads: floating point as fminf/fmaxf (a NaN loses), integers by
// comparison in the usual arithmetic conversions.
template <class A, class B, class R = typename std::common_type<A, B>::type,
          class = typename std::enable_if<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value>::type>
static inline R min(A a, B b)
{
    if constexpr (std::is_floating_point<R>::value)
        return std::fmin((R)a, (R)b);
    else
        return (R)a < (R)b ? (R)a : (R)b;
}
template <class A, class B, class R = typename std::common_type<A, B>::type,
          class = typename std::enable_if<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value>::type>
static inline R max(A a, B b)
{
    if constexpr (std::is_floating_point<R>::value)
        return std::fmax((R)a, (R)b);
    else
        return (R)a > (R)b ? (R)a : (R)b;
}

// ---- cp.async: copies deferred to the issuing thread's wait (PTX ISA semantics) ----
// Each CUDA thread of the block running on this OS thread has its own queue of pending
// copies, grouped by commit; async_wait(n) performs every group but the newest n. Copies
// not yet committed belong to the next group. Queues are emptied when a thread starts.
namespace pp_emu {
struct async_copy_item {
    void *dst;
    const void *src;           /* nullptr: nothing is read */
    unsigned bytes, src_bytes; /* copy `bytes`, of which the first src_bytes from src, the rest 0 */
};
struct async_queue {
    std::vector<async_copy_item> items; /* in issue order */
    std::vector<size_t> group_ends;     /* items[0, group_ends[i]) are groups 0..i */
};
static thread_local std::vector<async_queue> async_queues;
static inline async_queue &my_async_queue()
{
    const unsigned tid = linear_tid();
    if (async_queues.size() <= tid) async_queues.resize(tid + 1);
    return async_queues[tid];
}
static inline void async_copy(void *dst, const void *src, unsigned bytes, unsigned src_bytes)
{
    my_async_queue().items.push_back(async_copy_item{dst, src_bytes ? src : nullptr, bytes, src_bytes});
}
static inline void async_copy_f32(float *dst, const float *src, bool valid) { async_copy(dst, src, 4, valid ? 4 : 0); }
static inline void async_commit()
{
    async_queue &q = my_async_queue();
    q.group_ends.push_back(q.items.size());
}
static inline void async_wait(size_t pending_groups)
{
    async_queue &q = my_async_queue();
    if (q.group_ends.size() <= pending_groups) return;
    const size_t done_groups = q.group_ends.size() - pending_groups;
    const size_t done_items = q.group_ends[done_groups - 1];
    for (size_t i = 0; i < done_items; i++) {
        const async_copy_item &c = q.items[i];
        if (c.src_bytes) memcpy(c.dst, c.src, c.src_bytes);
        memset((char *)c.dst + c.src_bytes, 0, c.bytes - c.src_bytes);
    }
    q.items.erase(q.items.begin(), q.items.begin() + (std::ptrdiff_t)done_items);
    q.group_ends.erase(q.group_ends.begin(), q.group_ends.begin() + (std::ptrdiff_t)done_groups);
    for (size_t &end : q.group_ends) end -= done_items;
}
static inline void async_reset()
{
    async_queue &q = my_async_queue();
    q.items.clear();
    q.group_ends.clear();
}
} // namespace pp_emu

// ---- assert and trap: reported through the scheduler with the source line ----
namespace pp_emu {
[[noreturn]] static inline void assert_fail(const char *expr, const char *file, int line)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s:%d: assertion '%s' failed", file, line, expr);
    trap(msg, line);
}
} // namespace pp_emu
#undef assert
#ifdef NDEBUG
#define assert(e) ((void)0)
#else
#define assert(e) ((e) ? (void)0 : ::pp_emu::assert_fail(#e, __FILE__, __LINE__))
#endif
#ifdef __GLIBC__
// A source that includes <assert.h> itself gets glibc's assert back, which would abort the
// whole process: this module-local (hidden) __assert_fail reports it like ours instead.
extern "C" __attribute__((visibility("hidden"))) void __assert_fail(const char *expr, const char *file, unsigned line,
                                                                    const char *) noexcept
{
    ::pp_emu::assert_fail(expr, file, (int)line);
}
#endif
#define __trap() ::pp_emu::trap("__trap()", __LINE__)
#define __brkpt() ::pp_emu::trap("__brkpt()", __LINE__)

// ---- module entry points ----
namespace pp_emu {
template <class T> static inline T load_arg(void *p)
{
    typename std::remove_cv<T>::type v;
    memcpy(&v, p, sizeof v);
    return v;
}
template <class... A, std::size_t... I>
static inline void invoke(void (*fn)(A...), void **args, std::index_sequence<I...>)
{
    (void)args;
    fn(load_arg<A>(args[I])...);
}
template <class... A> static inline void run_kernel(void (*fn)(A...), void **args)
{
    refresh();
    async_reset();
    invoke(fn, args, std::index_sequence_for<A...>{});
}
} // namespace pp_emu

// Placed after each kernel, in the kernel's namespace; NVRTC sees the no-op definition.
#define PP_KERNEL_EXPORT(name) \
    PP_EMU_EXPORT void pp_emu_entry_##name(void **pp_emu_args) { ::pp_emu::run_kernel(&name, pp_emu_args); }

// Called once by the runtime after loading the module. Weak, in case a module is ever
// linked from several translation units that each include this header.
PP_EMU_EXPORT __attribute__((weak)) void pp_emu_bind(const pp_emu_abi *abi) { ::pp_emu::abi = abi; }

#endif // PP_CUDA_EMU_H
