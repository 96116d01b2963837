// emu_bad.cu - test kernel for the host emulation backend (tests/runtime/test_host_emu.c):
// does not compile (an undeclared identifier), so the compile error must come back as
// PP_ERR_COMPILE naming this file and the line marked below.
#ifndef PP_KERNEL_EXPORT
#define PP_KERNEL_EXPORT(name)
#endif

extern "C" __global__ void emu_bad(float *out)
{
    out[threadIdx.x] = undeclared_value; // MARK: compile error
}
PP_KERNEL_EXPORT(emu_bad)
