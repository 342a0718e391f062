// The KV cache's element types (src/kv_cache/kv_type.rs's KvType, same ids): how keys and
// values are rounded when written and widened when attention reads them, the same way as the
// CPU backend (src/kv_cache/host.rs), so the GPU's decode stays bit-identical to it.
#pragma once
#include "hip_compat.h"
#include "numerics.h"

#define RF_KV_F32 0   // float: keys and values exactly as computed
#define RF_KV_F16 1   // unsigned short: f16 bits, round-to-nearest-even (as half::f16::from_f32)
#define RF_KV_Q8_0 8  // ggml's block_q8_0 per 32 elements of a row (f16 d, 32 x int8 q): 34 bytes

// The element type kernels instantiate for each id. q8_0 rows are blocks, not elements: its
// tag type is only ever addressed through rf_kv_at / rf_kv_at4 / rf_kv_addr below.
typedef unsigned short rf_kv_f16;
struct rf_kv_q8 {
    unsigned char byte;
};
#define RF_Q8_BLOCK_BYTES 34

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

// Element e of cell c's row (kv_dim elements), widened to f32 exactly; rf_kv_at4: elements e ..
// e + 3 (e a multiple of 4); rf_kv_addr: where element e lies (for prefetches). I: the index
// type the caller computes cell offsets in (int where the host checked they fit).
template <typename T, typename I>
__device__ __forceinline__ float rf_kv_at(const T* cache, I c, int kv_dim, int e) {
    return rf_kv_get(cache + (c * kv_dim + e));
}
template <typename T, typename I>
__device__ __forceinline__ float4 rf_kv_at4(const T* cache, I c, int kv_dim, int e) {
    return rf_kv_get4(cache + (c * kv_dim + e));
}
template <typename T, typename I>
__device__ __forceinline__ const void* rf_kv_addr(const T* cache, I c, int kv_dim, int e) {
    return cache + (c * kv_dim + e);
}

// q8_0: element e is q[e % 32] * d of the row's block e / 32, as the CPU's dequantize (an exact
// product: 8-bit q times an f16 d fits f32's mantissa).
template <typename I>
__device__ __forceinline__ const unsigned char* rf_kv_q8_block(const rf_kv_q8* cache, I c,
                                                               int kv_dim, int e) {
    return (const unsigned char*)cache +
           (c * (kv_dim / 32 * RF_Q8_BLOCK_BYTES) + (e >> 5) * RF_Q8_BLOCK_BYTES);
}
template <typename I>
__device__ __forceinline__ float rf_kv_at(const rf_kv_q8* cache, I c, int kv_dim, int e) {
    const unsigned char* b = rf_kv_q8_block(cache, c, kv_dim, e);
    const float d = rf_half_to_float(*(const unsigned short*)b);
    return (float)(signed char)b[2 + (e & 31)] * d;
}
template <typename I>
__device__ __forceinline__ float4 rf_kv_at4(const rf_kv_q8* cache, I c, int kv_dim, int e) {
    const unsigned char* b = rf_kv_q8_block(cache, c, kv_dim, e);
    const float d = rf_half_to_float(*(const unsigned short*)b);
    // Blocks are 34 bytes: the quants of a group of 4 are 2-byte aligned.
    const unsigned short* q = (const unsigned short*)(b + 2 + (e & 31));
    const unsigned short lo = q[0], hi = q[1];
    return make_float4((float)(signed char)(lo & 0xFF) * d, (float)(signed char)(lo >> 8) * d,
                       (float)(signed char)(hi & 0xFF) * d, (float)(signed char)(hi >> 8) * d);
}
template <typename I>
__device__ __forceinline__ const void* rf_kv_addr(const rf_kv_q8* cache, I c, int kv_dim, int e) {
    return rf_kv_q8_block(cache, c, kv_dim, e) + 2 + (e & 31);
}

// Stores the 32 elements e0 .. e0 + 31 of cell c's row as one q8_0 block, element e0 + i held
// by lane i of an aligned 32-lane group: the CPU's KV encoder (the activation quantizer,
// rf_q8_group32), d stored as f16.
__device__ __forceinline__ void rf_kv_store_q8_block(rf_kv_q8* cache, size_t c, int kv_dim,
                                                     int e0, float v, int lane) {
    float d;
    const float q = rf_q8_group32(v, &d);
    unsigned char* b = (unsigned char*)rf_kv_q8_block((const rf_kv_q8*)cache, c, kv_dim, e0);
    b[2 + lane] = (unsigned char)(signed char)q;
    if (lane == 0) *(unsigned short*)b = __half_as_ushort(__float2half_rn(d));
}
