// Hardware facts the kernels depend on, in one place.
//
// Wave (warp) size: 64 on AMD CDNA (gfx9xx), 32 on AMD RDNA (gfx10xx/gfx11xx, wave32 mode)
// and on NVIDIA. Kernels size their cross-lane reductions and block shapes from RF_WAVE and
// must be correct for both values.
//
// Wave-64 emulation (RF_WAVE64_EMULATION, an NVIDIA test build only: ROCMFORGE_WAVE64_EMULATION=1
// with the `cuda` feature, see build.rs): RF_WAVE is 64 as on CDNA, and the one cross-lane
// operation that spans the two 32-lane halves of a 64-lane wave (an xor exchange with mask 32)
// goes through shared memory between two block-wide barriers. Exchanges inside a half run as
// the native 32-lane shuffle, which is what a 64-lane wave computes for them too. So kernels
// run the instruction sequences they would run on CDNA, slowly, and the GPU parity tests check
// them on NVIDIA hardware. The emulated exchange requires what wave-64 hardware rewards anyway:
// whole 64-lane waves in the block and all of a wave's lanes converged at the exchange; it
// traps (the launch then fails with an error the host reports) when that does not hold.
#pragma once
#include "hip_compat.h"

#if defined(RF_PLATFORM_AMD)
#if defined(RF_WAVE64_EMULATION)
#error "RF_WAVE64_EMULATION is an NVIDIA test build; AMD hardware has its own wave size"
#endif
#if defined(__AMDGCN_WAVEFRONT_SIZE)
#define RF_WAVE __AMDGCN_WAVEFRONT_SIZE
#elif defined(__GFX9__)
#define RF_WAVE 64
#else
#define RF_WAVE 32
#endif
#elif defined(RF_WAVE64_EMULATION)
#define RF_WAVE 64
#else
#define RF_WAVE 32
#endif

// Threads per block used by most kernels: a whole number of waves for both wave sizes.
#define RF_BLOCK 256

// Cross-lane sum / max over one wave. HIP 5.x names the shuffle without `_sync` and has no mask;
// CUDA requires the `_sync` form with the mask of participating lanes.
#if defined(RF_WAVE64_EMULATION)
// The value of lane `lane ^ 32` of this thread's 64-lane wave (emulation only, see above).
// Waves are numbered by the flat thread index, as AMD numbers them.
static __device__ __noinline__ float rf_emulated_cross_half(float v) {
    __shared__ float exchange[1024];  // one slot per thread of the largest block
    const unsigned tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const unsigned threads = blockDim.x * blockDim.y * blockDim.z;
    if (threads % 64 != 0 || __activemask() != 0xffffffffu) __trap();
    __syncthreads();  // the previous exchange's readers are done with the slots
    exchange[tid] = v;
    __syncthreads();
    return exchange[tid ^ 32];
}
#endif

__device__ __forceinline__ float rf_shfl_xor(float v, int lane_mask) {
#if defined(RF_PLATFORM_AMD)
    return __shfl_xor(v, lane_mask, RF_WAVE);
#elif defined(RF_WAVE64_EMULATION)
    // Masks below 32 stay inside a 32-lane half: the native shuffle gives what wave-64 gives.
    if (lane_mask < 32) return __shfl_xor_sync(0xffffffffu, v, lane_mask, 32);
    return rf_emulated_cross_half(v);
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

// Four-way int8 dot product with accumulate: c + sum(a[i] * b[i]) over the signed bytes of a
// and b, wrapping on overflow (the kernels' sums stay far below it). Native on NVIDIA (sm_61+)
// and on AMD chips with dot instructions; a plain fallback elsewhere. Which instruction each AMD
// target gets is checked in its code object by scripts/gpu/check-amd-paths.sh, and the
// arithmetic of each against the CPU's in tests/amd_paths.rs (neither runs here otherwise).
__device__ __forceinline__ int rf_dp4a(int a, int b, int c) {
#if defined(RF_PLATFORM_NVIDIA)
    return __dp4a(a, b, c);
#elif defined(__gfx906__) || defined(__gfx908__) || defined(__gfx90a__) || defined(__gfx940__) || \
    defined(__gfx941__) || defined(__gfx942__) || defined(__gfx1030__)
    return __builtin_amdgcn_sdot4(a, b, c, false);  // v_dot4_i32_i8, no clamp: wraps like C
#elif (defined(__gfx1100__) || defined(__gfx1101__) || defined(__gfx1102__) || \
       defined(__gfx1103__)) && __has_builtin(__builtin_amdgcn_sudot4)
    // RDNA3 has no v_dot4_i32_i8; v_dot4_i32_iu8 with both operands marked signed is the same.
    return __builtin_amdgcn_sudot4(true, a, true, b, c, false);
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
