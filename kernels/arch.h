// Hardware facts the kernels depend on, in one place.
//
// Wave (warp) size: 64 on AMD CDNA (gfx9xx), 32 on AMD RDNA (gfx10xx/gfx11xx, wave32 mode)
// and on NVIDIA. Kernels size their cross-lane reductions and block shapes from RF_WAVE and
// must be correct for both values.
#pragma once
#include "hip_compat.h"

#if defined(RF_PLATFORM_AMD)
#if defined(__AMDGCN_WAVEFRONT_SIZE)
#define RF_WAVE __AMDGCN_WAVEFRONT_SIZE
#elif defined(__GFX9__)
#define RF_WAVE 64
#else
#define RF_WAVE 32
#endif
#else
#define RF_WAVE 32
#endif

// Threads per block used by most kernels: a whole number of waves for both wave sizes.
#define RF_BLOCK 256

// Cross-lane sum / max over one wave. HIP 5.x names the shuffle without `_sync` and has no mask;
// CUDA requires the `_sync` form with the mask of participating lanes.
__device__ __forceinline__ float rf_shfl_xor(float v, int lane_mask) {
#if defined(RF_PLATFORM_AMD)
    return __shfl_xor(v, lane_mask, RF_WAVE);
#else
    return __shfl_xor_sync(0xffffffffu, v, lane_mask, RF_WAVE);
#endif
}

__device__ __forceinline__ float rf_wave_sum(float v) {
#pragma unroll
    for (int m = RF_WAVE / 2; m > 0; m >>= 1) v += rf_shfl_xor(v, m);
    return v;
}

__device__ __forceinline__ float rf_wave_max(float v) {
#pragma unroll
    for (int m = RF_WAVE / 2; m > 0; m >>= 1) v = fmaxf(v, rf_shfl_xor(v, m));
    return v;
}

// Sum over a whole block of `blockDim.x` threads (a multiple of RF_WAVE, at most 1024).
// Every thread gets the result. `scratch` holds at least 1024 / RF_WAVE floats.
__device__ __forceinline__ float rf_block_sum(float v, float* scratch) {
    const int lane = threadIdx.x % RF_WAVE, wave = threadIdx.x / RF_WAVE;
    const int n_waves = blockDim.x / RF_WAVE;
    v = rf_wave_sum(v);
    __syncthreads();
    if (lane == 0) scratch[wave] = v;
    __syncthreads();
    v = lane < n_waves ? scratch[lane] : 0.0f;
    return rf_wave_sum(v);
}

// Four-way int8 dot product with accumulate: c + sum(a[i] * b[i]) over the bytes of a and b.
// Native on NVIDIA (sm_61+) and on AMD chips with dot instructions; a plain fallback elsewhere.
__device__ __forceinline__ int rf_dp4a(int a, int b, int c) {
#if defined(RF_PLATFORM_NVIDIA)
    return __dp4a(a, b, c);
#elif defined(__gfx906__) || defined(__gfx908__) || defined(__gfx90a__) || defined(__gfx940__) || \
    defined(__gfx941__) || defined(__gfx942__) || defined(__gfx1030__)
    return __builtin_amdgcn_sdot4(a, b, c, false);
#else
    const signed char* x = (const signed char*)&a;
    const signed char* y = (const signed char*)&b;
    return c + x[0] * y[0] + x[1] * y[1] + x[2] * y[2] + x[3] * y[3];
#endif
}

// Max / sum over the 32 lanes of an aligned group (half a wave on wave64): masks below 32
// never cross a group.
__device__ __forceinline__ float rf_group32_max(float v) {
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) v = fmaxf(v, rf_shfl_xor(v, m));
    return v;
}
__device__ __forceinline__ float rf_group32_sum(float v) {
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) v += rf_shfl_xor(v, m);
    return v;
}

// Lane `src` of the aligned 32-lane group's value of v (a broadcast inside the group).
__device__ __forceinline__ float rf_shfl_group32(float v, int src) {
#if defined(RF_PLATFORM_AMD)
    return __shfl(v, src, 32);
#else
    return __shfl_sync(0xffffffffu, v, src, 32);
#endif
}
