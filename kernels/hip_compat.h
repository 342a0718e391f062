// The one bridge between HIP and CUDA for this project.
//
// On AMD (hipcc, feature `rocm`) the real HIP headers are used. On NVIDIA (nvcc, feature `cuda`)
// the HIP names our kernels and runtime glue use are mapped onto CUDA here. Only names the
// project uses are mapped: add a line when a kernel needs a new one. HIP's own NVIDIA headers
// are not used because older ones reference CUDA APIs removed in CUDA 12.
#pragma once

#if defined(__HIP_PLATFORM_AMD__) || defined(__HIPCC__) && !defined(__CUDACC__)
#include <hip/hip_runtime.h>
#include <hip/hip_fp16.h>
#define RF_PLATFORM_AMD 1
#else
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#define RF_PLATFORM_NVIDIA 1

typedef cudaError_t hipError_t;
typedef cudaStream_t hipStream_t;
typedef cudaEvent_t hipEvent_t;
typedef cudaGraph_t hipGraph_t;
typedef cudaGraphExec_t hipGraphExec_t;
typedef cudaDeviceProp hipDeviceProp_t;

#define hipSuccess cudaSuccess
#define hipErrorOutOfMemory cudaErrorMemoryAllocation
#define hipGetErrorString cudaGetErrorString
#define hipGetLastError cudaGetLastError
#define hipGetDeviceCount cudaGetDeviceCount
#define hipFuncSetAttribute cudaFuncSetAttribute
#define hipGetDevice cudaGetDevice
#define hipFuncAttributeMaxDynamicSharedMemorySize cudaFuncAttributeMaxDynamicSharedMemorySize
#define hipGetDeviceProperties cudaGetDeviceProperties
#define hipSetDevice cudaSetDevice
#define hipMemGetInfo cudaMemGetInfo
#define hipMalloc cudaMalloc
#define hipFree cudaFree
#define hipHostMalloc(p, n, flags) cudaMallocHost(p, n)
#define hipHostFree cudaFreeHost
#define hipMemcpyAsync cudaMemcpyAsync
#define hipMemsetAsync cudaMemsetAsync
#define hipMemcpyHostToDevice cudaMemcpyHostToDevice
#define hipMemcpyDeviceToHost cudaMemcpyDeviceToHost
#define hipMemcpyDeviceToDevice cudaMemcpyDeviceToDevice
#define hipStreamCreateWithFlags cudaStreamCreateWithFlags
#define hipStreamNonBlocking cudaStreamNonBlocking
#define hipStreamDestroy cudaStreamDestroy
#define hipStreamSynchronize cudaStreamSynchronize
#define hipStreamBeginCapture cudaStreamBeginCapture
#define hipStreamEndCapture cudaStreamEndCapture
#define hipStreamCaptureModeThreadLocal cudaStreamCaptureModeThreadLocal
#define hipGraphInstantiate(e, g, a, b, c) cudaGraphInstantiate(e, g, 0)
#define hipGraphLaunch cudaGraphLaunch
#define hipGraphExecDestroy cudaGraphExecDestroy
#define hipGraphDestroy cudaGraphDestroy
#define hipEventCreate cudaEventCreate
#define hipEventRecord cudaEventRecord
#define hipEventSynchronize cudaEventSynchronize
#define hipEventElapsedTime cudaEventElapsedTime
#define hipEventDestroy cudaEventDestroy
#define hipLaunchKernelGGL(kernel, grid, block, shmem, stream, ...) \
    kernel<<<(grid), (block), (shmem), (stream)>>>(__VA_ARGS__)
#endif

// Overlapped launches ("programmatic dependent launch", NVIDIA sm_90+): a kernel launched with
// RF_LAUNCH_OVERLAPPED may start while the previous kernel on the stream still runs, so its
// prologue (loading weights, which no kernel writes) hides the previous kernel's tail and its
// own launch latency. Such a kernel must call rf_wait_previous() before it touches any memory
// another kernel writes or reads (activations, outputs, the KV cache), and should call
// rf_release_next() once all its blocks may let the next kernel start. Elsewhere (AMD, older
// NVIDIA) these are plain launches and no-ops.
__device__ __forceinline__ void rf_wait_previous() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void rf_release_next() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}
// Asks for the cache line holding p in L2 (NVIDIA; a no-op elsewhere). L2 is coherent, so this
// is safe before rf_wait_previous() even on lines the previous kernel is still writing.
__device__ __forceinline__ void rf_prefetch_l2(const void* p) {
#if defined(__CUDA_ARCH__)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
#else
    (void)p;
#endif
}
// A load that sees other blocks' writes made visible by __threadfence() (bypasses the
// non-coherent L1), for the last block of a kernel reading what the others wrote.
__device__ __forceinline__ float rf_load_coherent(const float* p) {
#if defined(RF_PLATFORM_AMD)
    return *(const volatile float*)p;
#else
    return __ldcg(p);
#endif
}
#if defined(RF_PLATFORM_AMD)
#define RF_LAUNCH_OVERLAPPED(kernel, grid, block, shmem, stream, ...) \
    hipLaunchKernelGGL(kernel, grid, block, shmem, stream, __VA_ARGS__)
#else
template <typename... Params, typename... Args>
static inline void rf_launch_overlapped(void (*kernel)(Params...), dim3 grid, dim3 block,
                                        size_t shmem, cudaStream_t stream, Args... args) {
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = shmem;
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    (void)cudaLaunchKernelEx(&cfg, kernel, args...);  // errors surface via hipGetLastError
}
#define RF_LAUNCH_OVERLAPPED(kernel, grid, block, shmem, stream, ...) \
    rf_launch_overlapped(kernel, grid, block, shmem, stream, __VA_ARGS__)
#endif

// Half precision conversions with one spelling on both platforms.
__device__ __forceinline__ float rf_half_to_float(unsigned short bits) {
    __half_raw r;
    r.x = bits;
    return __half2float(__half(r));
}
__device__ __forceinline__ float rf_bf16_to_float(unsigned short bits) {
    return __uint_as_float(((unsigned int)bits) << 16);
}
