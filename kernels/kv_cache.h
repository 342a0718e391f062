// The KV cache's element types (src/kv_cache/kv_type.rs's KvType, same ids): how keys and
// values are rounded when written and widened when attention reads them, the same way as the
// CPU backend (src/kv_cache/host.rs), so the GPU's decode stays bit-identical to it.
#pragma once
#include "hip_compat.h"

#define RF_KV_F32 0  // float: keys and values exactly as computed
#define RF_KV_F16 1  // unsigned short: f16 bits, round-to-nearest-even (as half::f16::from_f32)

// The element type kernels instantiate for each id.
typedef unsigned short rf_kv_f16;

// Stores v into *p rounded to the cache's type.
__device__ __forceinline__ void rf_kv_put(float* p, float v) { *p = v; }
__device__ __forceinline__ void rf_kv_put(rf_kv_f16* p, float v) {
    *p = __half_as_ushort(__float2half_rn(v));
}

// Reads one element widened to f32 (exact for both types).
__device__ __forceinline__ float rf_kv_get(const float* p) { return *p; }
__device__ __forceinline__ float rf_kv_get(const rf_kv_f16* p) { return rf_half_to_float(*p); }

// Reads four consecutive elements (p aligned to four of them) widened to f32.
__device__ __forceinline__ float4 rf_kv_get4(const float* p) { return *(const float4*)p; }
__device__ __forceinline__ float4 rf_kv_get4(const rf_kv_f16* p) {
    const uint2 u = *(const uint2*)p;
    return make_float4(rf_half_to_float(u.x & 0xFFFF), rf_half_to_float(u.x >> 16),
                       rf_half_to_float(u.y & 0xFFFF), rf_half_to_float(u.y >> 16));
}

// Stores v into element i of a cache of type `kv_type` (a uniform run-time branch: for the
// writes of a step, a few per token, where one kernel instance per type would not pay).
__device__ __forceinline__ void rf_kv_store(void* cache, int kv_type, size_t i, float v) {
    if (kv_type == RF_KV_F16)
        rf_kv_put((rf_kv_f16*)cache + i, v);
    else
        rf_kv_put((float*)cache + i, v);
}
