// prelude.cuh - definitions every generated kernel source starts with. Included once per
// translation unit (guarded), before the kernels' namespaces.
#ifndef PP_PRELUDE_CUH
#define PP_PRELUDE_CUH

// On the host emulation backend the emulation header defines PP_KERNEL_EXPORT to emit the
// entry point that runs one CUDA thread; under NVRTC it expands to nothing.
#ifndef PP_KERNEL_EXPORT
#define PP_KERNEL_EXPORT(name)
#endif

__device__ __forceinline__ int pp_min(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int pp_max(int a, int b) { return a > b ? a : b; }

// pp_select_t<B, T, F>: T when B, else F (std::conditional_t, which NVRTC has no header for).
template <bool B, class T, class F> struct pp_select { using type = T; };
template <class T, class F> struct pp_select<false, T, F> { using type = F; };
template <bool B, class T, class F> using pp_select_t = typename pp_select<B, T, F>::type;

#endif // PP_PRELUDE_CUH
