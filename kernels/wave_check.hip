// The cross-lane helpers of arch.h checked on the device that runs them, against exact values:
// every xor exchange of a wave, the wave sum and max, the block sum and the 32-lane group
// operations, in blocks of one, four and sixteen 64-lane waves. The inputs are small integers,
// so every float sum is exact whatever the order and any difference is a wrong lane. Run by
// tests/gpu_parity.rs; in the wave-64 emulation build (arch.h) this is what shows that the
// emulated exchange across the two halves of a wave gives what CDNA hardware gives.
#include "arch.h"
#include "rf_kernels.h"

__global__ void wave_check_kernel(int* counts) {
    __shared__ float scratch[1024 / RF_WAVE];
    const int tid = threadIdx.x, lane = tid % RF_WAVE, first = tid - lane;
    const float v = (float)(tid + 1);
    int failed = 0, checks = 0;
    for (int m = 1; m < RF_WAVE; m <<= 1) {
        failed += rf_shfl_xor(v, m) != (float)((tid ^ m) + 1);
        checks++;
    }
    // Lanes first+1 .. first+RF_WAVE.
    const float wave_sum = (float)(RF_WAVE * first + RF_WAVE * (RF_WAVE + 1) / 2);
    failed += rf_wave_sum(v) != wave_sum;
    failed += rf_wave_max(v) != (float)(first + RF_WAVE);
    const int n = blockDim.x;
    failed += rf_block_sum(v, scratch) != (float)(n * (n + 1) / 2);
    const int g = tid - tid % 32;  // the first thread of this thread's 32-lane group
    failed += rf_group32_sum(v) != (float)(32 * g + 32 * 33 / 2);
    failed += rf_group32_max(v) != (float)(g + 32);
    failed += rf_shfl_group32(v, (tid + 5) % 32) != (float)(g + (tid + 5) % 32 + 1);
    checks += 6;
    atomicAdd(&counts[0], checks);
    atomicAdd(&counts[1], failed);
    if (tid == 0) counts[2] = RF_WAVE;  // the device's wave size: the host pass cannot know it
}

// host_result: [checks made, checks failed, the kernels' wave size].
extern "C" int rf_wave_check(int* host_result) {
    host_result[0] = host_result[1] = host_result[2] = 0;
    int* counts = nullptr;
    hipError_t e = hipMalloc((void**)&counts, 3 * sizeof(int));
    if (e != hipSuccess) return (int)e;
    const hipStream_t s = 0;
    e = hipMemsetAsync(counts, 0, 3 * sizeof(int), s);
    const int blocks[] = {64, 256, 1024};
    for (int threads : blocks) {
        if (e != hipSuccess) break;
        hipLaunchKernelGGL(wave_check_kernel, dim3(2), dim3(threads), 0, s, counts);
        e = hipGetLastError();
    }
    if (e == hipSuccess)
        e = hipMemcpyAsync(host_result, counts, 3 * sizeof(int), hipMemcpyDeviceToHost, s);
    if (e == hipSuccess) e = hipStreamSynchronize(s);
    hipError_t freed = hipFree(counts);
    if (e == hipSuccess) e = freed;
    return (int)e;
}
