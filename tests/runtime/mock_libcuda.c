/* mock_libcuda.c - a stand-in libcuda.so.1 for testing the cuda backend where no GPU and
 * no driver exist (CI, developer machines). Built as <build>/tests/mock_cuda/libcuda.so.1
 * and found through LD_LIBRARY_PATH by the test_cuda_backend_mock CTest entry only.
 *
 * It implements the driver entry points the backend resolves, with "device memory" in
 * host memory, module images checked to be ELF files (the CUBIN NVRTC made) whose string
 * table must name the requested kernel, and kernels executed in C by name:
 *   pp_test_saxpb(const float *x, float *y, float a, float b, int n): y[i] = a*x[i] + b
 *   pp_test_fault(...): faults (CUDA_ERROR_ILLEGAL_ADDRESS at the next synchronising call)
 * Behaviour is chosen per cuInit by environment variables:
 *   PP_MOCK_CUDA = gpu (default) | nodevice | stub | zero
 *   PP_MOCK_CUDA_CC = compute capability as XY (default 90)
 *   PP_MOCK_CUDA_LOAD_ERROR = a CUresult cuModuleLoadData returns (e.g. 222)
 * pp_mock_cuda_counts() lets the test check that everything acquired was released. */
#include <cuda.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

enum {
    max_allocs = 1024,
    max_modules = 64,
    max_functions = 256
};
static const size_t total_memory = (size_t)1 << 30;

static int initialised, primary_refs, launches;
static CUresult sticky; /* a kernel fault, reported by the next synchronising call */
static struct {
    void *ptr;
    size_t bytes;
} allocs[max_allocs];
static size_t allocated;
static struct {
    unsigned char *image;
    size_t size;
} modules[max_modules];
typedef struct mock_function {
    int module; /* -1 once its module is unloaded */
    char name[256];
    int max_dynamic_shared; /* bytes a launch may ask for: 48 KB until cuFuncSetAttribute raises it */
} mock_function;
static mock_function functions[max_functions];
static int function_count;

static const char *mode(void)
{
    const char *m = getenv("PP_MOCK_CUDA");
    return m && *m ? m : "gpu";
}

static int device_cc(void)
{
    const char *cc = getenv("PP_MOCK_CUDA_CC");
    return cc && *cc ? atoi(cc) : 90;
}

EXPORT void pp_mock_cuda_counts(int *refs, int *loaded_modules, size_t *bytes, int *launch_count)
{
    int n = 0;
    for (int i = 0; i < max_modules; i++) n += modules[i].image != NULL;
    *refs = primary_refs;
    *loaded_modules = n;
    *bytes = allocated;
    *launch_count = launches;
}

EXPORT CUresult cuGetErrorName(CUresult e, const char **s)
{
    switch (e) {
    case CUDA_SUCCESS: *s = "CUDA_SUCCESS"; return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_VALUE: *s = "CUDA_ERROR_INVALID_VALUE"; return CUDA_SUCCESS;
    case CUDA_ERROR_OUT_OF_MEMORY: *s = "CUDA_ERROR_OUT_OF_MEMORY"; return CUDA_SUCCESS;
    case CUDA_ERROR_NOT_INITIALIZED: *s = "CUDA_ERROR_NOT_INITIALIZED"; return CUDA_SUCCESS;
    case CUDA_ERROR_STUB_LIBRARY: *s = "CUDA_ERROR_STUB_LIBRARY"; return CUDA_SUCCESS;
    case CUDA_ERROR_NO_DEVICE: *s = "CUDA_ERROR_NO_DEVICE"; return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_DEVICE: *s = "CUDA_ERROR_INVALID_DEVICE"; return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_IMAGE: *s = "CUDA_ERROR_INVALID_IMAGE"; return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_CONTEXT: *s = "CUDA_ERROR_INVALID_CONTEXT"; return CUDA_SUCCESS;
    case CUDA_ERROR_UNSUPPORTED_PTX_VERSION: *s = "CUDA_ERROR_UNSUPPORTED_PTX_VERSION"; return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_HANDLE: *s = "CUDA_ERROR_INVALID_HANDLE"; return CUDA_SUCCESS;
    case CUDA_ERROR_NOT_FOUND: *s = "CUDA_ERROR_NOT_FOUND"; return CUDA_SUCCESS;
    case CUDA_ERROR_ILLEGAL_ADDRESS: *s = "CUDA_ERROR_ILLEGAL_ADDRESS"; return CUDA_SUCCESS;
    case CUDA_ERROR_NOT_SUPPORTED: *s = "CUDA_ERROR_NOT_SUPPORTED"; return CUDA_SUCCESS;
    default: *s = NULL; return CUDA_ERROR_INVALID_VALUE;
    }
}

EXPORT CUresult cuGetErrorString(CUresult e, const char **s)
{
    switch (e) {
    case CUDA_ERROR_OUT_OF_MEMORY: *s = "out of memory"; return CUDA_SUCCESS;
    case CUDA_ERROR_STUB_LIBRARY: *s = "CUDA driver is a stub library"; return CUDA_SUCCESS;
    case CUDA_ERROR_NO_DEVICE: *s = "no CUDA-capable device is detected"; return CUDA_SUCCESS;
    case CUDA_ERROR_UNSUPPORTED_PTX_VERSION:
        *s = "the provided PTX was compiled with an unsupported toolchain.";
        return CUDA_SUCCESS;
    case CUDA_ERROR_NOT_FOUND: *s = "named symbol not found"; return CUDA_SUCCESS;
    case CUDA_ERROR_ILLEGAL_ADDRESS: *s = "an illegal memory access was encountered"; return CUDA_SUCCESS;
    default: return cuGetErrorName(e, s);
    }
}

EXPORT CUresult cuInit(unsigned int flags)
{
    if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
    if (strcmp(mode(), "nodevice") == 0) return CUDA_ERROR_NO_DEVICE;
    if (strcmp(mode(), "stub") == 0) return CUDA_ERROR_STUB_LIBRARY;
    initialised = 1;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDriverGetVersion(int *v)
{
    *v = 13000;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetCount(int *n)
{
    if (!initialised) return CUDA_ERROR_NOT_INITIALIZED;
    *n = strcmp(mode(), "zero") == 0 ? 0 : 1;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGet(CUdevice *d, int ordinal)
{
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *d = 0;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetName(char *name, int len, CUdevice d)
{
    if (d != 0 || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    strncpy(name, "Mock GPU", (size_t)len);
    name[len - 1] = '\0';
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetAttribute(int *v, CUdevice_attribute a, CUdevice d)
{
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    switch (a) {
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *v = device_cc() / 10; return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *v = device_cc() % 10; return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *v = 4; return CUDA_SUCCESS;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d)
{
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    primary_refs++;
    *c = (CUcontext)&primary_refs;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice d)
{
    if (d != 0 || primary_refs <= 0) return CUDA_ERROR_INVALID_CONTEXT;
    /* Like a real context, a faulted one stays faulted until it is destroyed. */
    if (--primary_refs == 0) sticky = CUDA_SUCCESS;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxSetCurrent(CUcontext c)
{
    return c == (CUcontext)&primary_refs && primary_refs > 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
}

/* Events: a kernel "takes" 0.25 ms, so timings through events are recognisable. */
EXPORT CUresult cuEventCreate(CUevent *e, unsigned int flags)
{
    static int event_tokens[64];
    static int next;
    if (!e || (flags & ~2u)) return CUDA_ERROR_INVALID_VALUE; /* 2: CU_EVENT_DISABLE_TIMING */
    *e = (CUevent)&event_tokens[next++ % 64];
    return CUDA_SUCCESS;
}
EXPORT CUresult cuEventRecord(CUevent e, CUstream s)
{
    (void)s;
    return e ? (sticky ? sticky : CUDA_SUCCESS) : CUDA_ERROR_INVALID_HANDLE;
}
EXPORT CUresult cuEventSynchronize(CUevent e)
{
    return e ? (sticky ? sticky : CUDA_SUCCESS) : CUDA_ERROR_INVALID_HANDLE;
}
EXPORT CUresult cuEventElapsedTime(float *ms, CUevent a, CUevent b)
{
    if (!ms || !a || !b) return CUDA_ERROR_INVALID_VALUE;
    *ms = 0.25f;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuEventDestroy_v2(CUevent e) { return e ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE; }

/* Streams: the mock runs every launch at once, so a stream is a token and waits are checks. */
static int stream_tokens[16], streams_live;
EXPORT CUresult cuStreamCreate(CUstream *stream, unsigned int flags)
{
    if (!stream || flags > 1) return CUDA_ERROR_INVALID_VALUE;
    *stream = (CUstream)&stream_tokens[streams_live++ % 16];
    return CUDA_SUCCESS;
}
EXPORT CUresult cuStreamDestroy_v2(CUstream stream)
{
    if (!stream) return CUDA_ERROR_INVALID_HANDLE;
    streams_live--;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuStreamWaitEvent(CUstream stream, CUevent event, unsigned int flags)
{
    (void)stream;
    return event && !flags ? (sticky ? sticky : CUDA_SUCCESS) : CUDA_ERROR_INVALID_VALUE;
}

EXPORT CUresult cuCtxSynchronize(void) { return sticky; }

static size_t elf_size(const unsigned char *p)
{
    uint64_t shoff;
    uint16_t shentsize, shnum;
    memcpy(&shoff, p + 0x28, 8);
    memcpy(&shentsize, p + 0x3a, 2);
    memcpy(&shnum, p + 0x3c, 2);
    return (size_t)(shoff + (uint64_t)shentsize * shnum);
}

EXPORT CUresult cuModuleLoadData(CUmodule *m, const void *image)
{
    const char *err = getenv("PP_MOCK_CUDA_LOAD_ERROR");
    if (err && *err) return (CUresult)atoi(err);
    const unsigned char *p = image;
    if (!p ||
        memcmp(p,
               "\x7f"
               "ELF",
               4) != 0 ||
        p[4] != 2)
        return CUDA_ERROR_INVALID_IMAGE;
    size_t size = elf_size(p);
    if (size < 64 || size > ((size_t)64 << 20)) return CUDA_ERROR_INVALID_IMAGE;
    for (int i = 0; i < max_modules; i++) {
        if (modules[i].image) continue;
        modules[i].image = malloc(size);
        if (!modules[i].image) return CUDA_ERROR_OUT_OF_MEMORY;
        memcpy(modules[i].image, p, size);
        modules[i].size = size;
        *m = (CUmodule)&modules[i];
        return CUDA_SUCCESS;
    }
    return CUDA_ERROR_OUT_OF_MEMORY;
}

static int module_index(CUmodule m)
{
    for (int i = 0; i < max_modules; i++)
        if ((CUmodule)&modules[i] == m && modules[i].image) return i;
    return -1;
}

EXPORT CUresult cuModuleUnload(CUmodule m)
{
    int i = module_index(m);
    if (i < 0) return CUDA_ERROR_INVALID_HANDLE;
    free(modules[i].image);
    modules[i].image = NULL;
    for (int f = 0; f < function_count; f++)
        if (functions[f].module == i) functions[f].module = -1;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuModuleGetFunction(CUfunction *fn, CUmodule m, const char *name)
{
    int i = module_index(m);
    if (i < 0) return CUDA_ERROR_INVALID_HANDLE;
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof functions[0].name) return CUDA_ERROR_NOT_FOUND;
    /* The kernel's name as a NUL-delimited entry of the ELF string table. */
    int found = 0;
    for (size_t at = 1; at + n < modules[i].size && !found; at++)
        found = modules[i].image[at - 1] == '\0' && memcmp(modules[i].image + at, name, n) == 0 &&
                modules[i].image[at + n] == '\0';
    if (!found) return CUDA_ERROR_NOT_FOUND;
    if (function_count == max_functions) return CUDA_ERROR_OUT_OF_MEMORY;
    functions[function_count].module = i;
    strcpy(functions[function_count].name, name);
    functions[function_count].max_dynamic_shared = 48 * 1024;
    *fn = (CUfunction)&functions[function_count++];
    return CUDA_SUCCESS;
}

EXPORT CUresult cuFuncGetAttribute(int *v, CUfunction_attribute a, CUfunction fn)
{
    if (!fn) return CUDA_ERROR_INVALID_HANDLE;
    switch (a) {
    case CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *v = 1024; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_NUM_REGS: *v = 16; return CUDA_SUCCESS;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

/* As on sm_90: up to 227 KB of dynamic shared memory per block. */
EXPORT CUresult cuFuncSetAttribute(CUfunction fn, CUfunction_attribute a, int v)
{
    if (!fn) return CUDA_ERROR_INVALID_HANDLE;
    if (a != CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES || v < 0 || v > 227 * 1024)
        return CUDA_ERROR_INVALID_VALUE;
    ((mock_function *)fn)->max_dynamic_shared = v;
    return CUDA_SUCCESS;
}

static unsigned last_shared_bytes;
static CUstream last_stream;
/* The dynamic shared memory the last launch asked for. */
EXPORT unsigned pp_mock_cuda_last_shared_bytes(void) { return last_shared_bytes; }
/* The stream of the last launch (the mock runs every launch at once, on any stream). */
EXPORT void *pp_mock_cuda_last_stream(void) { return last_stream; }

EXPORT CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total_bytes)
{
    *free_bytes = total_memory - allocated;
    *total_bytes = total_memory;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t bytes)
{
    if (bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    if (bytes > total_memory - allocated) return CUDA_ERROR_OUT_OF_MEMORY;
    for (int i = 0; i < max_allocs; i++) {
        if (allocs[i].ptr) continue;
        allocs[i].ptr = malloc(bytes);
        if (!allocs[i].ptr) return CUDA_ERROR_OUT_OF_MEMORY;
        memset(allocs[i].ptr, 0xa5, bytes); /* device memory starts with garbage */
        allocs[i].bytes = bytes;
        allocated += bytes;
        *p = (CUdeviceptr)(uintptr_t)allocs[i].ptr;
        return CUDA_SUCCESS;
    }
    return CUDA_ERROR_OUT_OF_MEMORY;
}

EXPORT CUresult cuMemFree_v2(CUdeviceptr p)
{
    for (int i = 0; i < max_allocs; i++) {
        if (allocs[i].ptr && (CUdeviceptr)(uintptr_t)allocs[i].ptr == p) {
            free(allocs[i].ptr);
            allocs[i].ptr = NULL;
            allocated -= allocs[i].bytes;
            return CUDA_SUCCESS;
        }
    }
    return CUDA_ERROR_INVALID_VALUE;
}

/* 1 if [p, p + bytes) lies inside one allocation. */
static int in_device_memory(CUdeviceptr p, size_t bytes)
{
    for (int i = 0; i < max_allocs; i++) {
        CUdeviceptr base = (CUdeviceptr)(uintptr_t)allocs[i].ptr;
        if (allocs[i].ptr && p >= base && p + bytes <= base + allocs[i].bytes) return 1;
    }
    return 0;
}

EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t bytes)
{
    if (sticky) return sticky;
    if (!in_device_memory(dst, bytes)) return CUDA_ERROR_INVALID_VALUE;
    memcpy((void *)(uintptr_t)dst, src, bytes);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t bytes)
{
    if (sticky) return sticky;
    if (!in_device_memory(src, bytes)) return CUDA_ERROR_INVALID_VALUE;
    memcpy(dst, (const void *)(uintptr_t)src, bytes);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char value, size_t count)
{
    if (sticky) return sticky;
    if (!in_device_memory(dst, count)) return CUDA_ERROR_INVALID_VALUE;
    memset((void *)(uintptr_t)dst, value, count);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                               unsigned bz, unsigned shared_bytes, CUstream stream, void **params, void **extra)
{
    if (sticky) return sticky;
    if (extra || !params) return CUDA_ERROR_INVALID_VALUE;
    if (!gx || !gy || !gz || !bx || !by || !bz || (unsigned long long)bx * by * bz > 1024)
        return CUDA_ERROR_INVALID_VALUE;
    const mock_function *mf = (const mock_function *)f;
    if (mf < functions || mf >= functions + function_count || mf->module < 0) return CUDA_ERROR_INVALID_HANDLE;
    if (shared_bytes > (unsigned)mf->max_dynamic_shared) return CUDA_ERROR_INVALID_VALUE; /* as the driver */
    last_shared_bytes = shared_bytes;
    last_stream = stream;
    const char *name = mf->name;
    launches++;
    if (strcmp(name, "pp_test_saxpb") == 0) {
        CUdeviceptr x = *(CUdeviceptr *)params[0], y = *(CUdeviceptr *)params[1];
        float a = *(float *)params[2], b = *(float *)params[3];
        int n = *(int *)params[4];
        if (n > 0 && (!in_device_memory(x, (size_t)n * 4) || !in_device_memory(y, (size_t)n * 4))) {
            sticky = CUDA_ERROR_ILLEGAL_ADDRESS;
            return CUDA_SUCCESS;
        }
        const float *xp = (const float *)(uintptr_t)x;
        float *yp = (float *)(uintptr_t)y;
        for (unsigned blk = 0; blk < gx; blk++)
            for (unsigned t = 0; t < bx; t++) {
                long long i = (long long)blk * bx + t;
                if (i < n) yp[i] = a * xp[i] + b;
            }
        return CUDA_SUCCESS;
    }
    if (strcmp(name, "pp_test_fault") == 0) {
        sticky = CUDA_ERROR_ILLEGAL_ADDRESS;
        return CUDA_SUCCESS;
    }
    return CUDA_ERROR_NOT_SUPPORTED;
}

/* NVRTC itself opens libcuda.so.1 when it can and asks for the driver's private export
 * tables; a mock has none, which NVRTC handles like a driver that lacks them. */
EXPORT CUresult cuGetExportTable(const void **table, const CUuuid *id)
{
    (void)id;
    if (table) *table = NULL;
    return CUDA_ERROR_NOT_SUPPORTED;
}
