// Device, memory, stream and graph management behind plain C functions, so the Rust side never
// touches HIP/CUDA types. Every call returns a status code; nothing aborts.
#include "rf_kernels.h"
#include <stdio.h>
#include <string.h>

extern "C" const char* rf_error_string(int code) {
    switch (code) {
        case RF_ERR_BAD_TYPE: return "tensor type not supported by the GPU kernels";
        case RF_ERR_SHAPE: return "tensor shape not supported by the GPU kernels";
        case RF_ERR_BLAS: return "BLAS call failed";
        case RF_ERR_NO_BLAS: {
            const char* why = rf_blas_unavailable_reason();
            return why ? why : "the BLAS library is open";
        }
#if defined(RF_PLATFORM_AMD)
        case RF_ERR_NO_RUNTIME: return rf_runtime_unavailable_reason();
#endif
        default: return hipGetErrorString((hipError_t)code);
    }
}

extern "C" int rf_device_count(int* count) {
    *count = 0;
#if defined(RF_PLATFORM_AMD)
    if (int e = rf_runtime_open()) return e;
#endif
    return (int)hipGetDeviceCount(count);
}

extern "C" int rf_device_info(int device, char* name, char* arch, size_t* total_mem,
                              size_t* free_mem) {
    hipDeviceProp_t p;
    hipError_t e = hipGetDeviceProperties(&p, device);
    if (e != hipSuccess) return (int)e;
    snprintf(name, 256, "%s", p.name);
#if defined(RF_PLATFORM_AMD)
    snprintf(arch, 64, "%s", p.gcnArchName);
#else
    snprintf(arch, 64, "sm_%d%d", p.major, p.minor);
#endif
    e = hipSetDevice(device);
    if (e != hipSuccess) return (int)e;
    return (int)hipMemGetInfo(free_mem, total_mem);
}

extern "C" int rf_set_device(int device) { return (int)hipSetDevice(device); }

extern "C" int rf_malloc(void** ptr, size_t bytes) {
    *ptr = nullptr;
    return (int)hipMalloc(ptr, bytes);
}
extern "C" int rf_free(void* ptr) { return (int)hipFree(ptr); }
extern "C" int rf_host_alloc(void** ptr, size_t bytes) {
    *ptr = nullptr;
    return (int)hipHostMalloc(ptr, bytes, 0);
}
extern "C" int rf_host_free(void* ptr) { return (int)hipHostFree(ptr); }

extern "C" int rf_stream_create(void** stream) {
    hipStream_t s = nullptr;
    hipError_t e = hipStreamCreateWithFlags(&s, hipStreamNonBlocking);
    *stream = (void*)s;
    return (int)e;
}
extern "C" int rf_stream_destroy(void* stream) { return (int)hipStreamDestroy((hipStream_t)stream); }
extern "C" int rf_stream_sync(void* stream) { return (int)hipStreamSynchronize((hipStream_t)stream); }

extern "C" int rf_memcpy_h2d(void* dst, const void* src, size_t bytes, void* stream) {
    return (int)hipMemcpyAsync(dst, src, bytes, hipMemcpyHostToDevice, (hipStream_t)stream);
}
extern "C" int rf_memcpy_d2h(void* dst, const void* src, size_t bytes, void* stream) {
    return (int)hipMemcpyAsync(dst, src, bytes, hipMemcpyDeviceToHost, (hipStream_t)stream);
}
extern "C" int rf_memset(void* dst, int value, size_t bytes, void* stream) {
    return (int)hipMemsetAsync(dst, value, bytes, (hipStream_t)stream);
}
extern "C" int rf_last_error(void) { return (int)hipGetLastError(); }

extern "C" int rf_graph_begin(void* stream) {
    return (int)hipStreamBeginCapture((hipStream_t)stream, hipStreamCaptureModeThreadLocal);
}
extern "C" int rf_graph_end(void* stream, void** exec) {
    hipGraph_t g = nullptr;
    *exec = nullptr;
    hipError_t e = hipStreamEndCapture((hipStream_t)stream, &g);
    if (e != hipSuccess) return (int)e;
    hipGraphExec_t x = nullptr;
    e = hipGraphInstantiate(&x, g, nullptr, nullptr, 0);
    (void)hipGraphDestroy(g);
    *exec = (void*)x;
    return (int)e;
}
extern "C" int rf_graph_launch(void* exec, void* stream) {
    return (int)hipGraphLaunch((hipGraphExec_t)exec, (hipStream_t)stream);
}
extern "C" int rf_graph_destroy(void* exec) { return (int)hipGraphExecDestroy((hipGraphExec_t)exec); }

extern "C" int rf_measure_copy(void* dst, const void* src, size_t bytes, int iters, void* stream,
                               float* ms) {
    hipStream_t s = (hipStream_t)stream;
    hipEvent_t a, b;
    hipError_t e = hipEventCreate(&a);
    if (e != hipSuccess) return (int)e;
    e = hipEventCreate(&b);
    if (e != hipSuccess) { (void)hipEventDestroy(a); return (int)e; }
    // One warm-up copy, then the timed ones.
    e = hipMemcpyAsync(dst, src, bytes, hipMemcpyDeviceToDevice, s);
    if (e == hipSuccess) e = hipEventRecord(a, s);
    for (int i = 0; i < iters && e == hipSuccess; i++)
        e = hipMemcpyAsync(dst, src, bytes, hipMemcpyDeviceToDevice, s);
    if (e == hipSuccess) e = hipEventRecord(b, s);
    if (e == hipSuccess) e = hipEventSynchronize(b);
    if (e == hipSuccess) e = hipEventElapsedTime(ms, a, b);
    (void)hipEventDestroy(a);
    (void)hipEventDestroy(b);
    return (int)e;
}
