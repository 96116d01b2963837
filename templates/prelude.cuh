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

#endif // PP_PRELUDE_CUH
