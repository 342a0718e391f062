// Attention over the KV cache, split along the cache ("split-K", flash-decoding style):
// block (head, token, split) runs an online softmax over its stretch of cells, one cell per
// wave at a time, and either writes the normalised result (one split) or its running max, sum
// and weighted values for a combine pass. Cells are visible to a token when they hold the
// token's sequence at a position not after its own, so one kernel serves decode, causal
// prefill and several sequences in one batch.
#include "rf_kernels.h"
#include "arch.h"

#define ATT_THREADS 128
#define ATT_MAX_HEAD_DIM 256
#define ATT_PER_LANE (ATT_MAX_HEAD_DIM / 32)

// Writes v (element o of the output) and, when q8 is given, its int8 group quantization with
// the same numerics as rf_act: the next product (the output projection) reads it directly.
// All 32 lanes of a group call this together (head_dim is a multiple of 32).
__device__ __forceinline__ void att_store(float* out, int8_t* q8, float4* q8_scales, size_t o,
                                          float v) {
    out[o] = v;
    if (!q8) return;
    const float amax = rf_group32_max(fabsf(v));
    const float qd = amax / 127.0f;
    const float qv = amax > 0.0f ? rintf(v * (127.0f / amax)) : 0.0f;
    const float qsum = rf_group32_sum(qv);
    q8[o] = (int8_t)qv;
    if ((threadIdx.x & 31) == 0)
        q8_scales[o / 32] = make_float4(__half2float(__float2half(qd)), qsum,
                                        __half2float(__float2half(qd * qsum)), 0.0f);
}

__global__ void attention_kernel(const float* q, int ld_q, const float* k_cache, const float* v_cache,
                                 const int32_t* cell_pos, const uint64_t* cell_seqs,
                                 const int32_t* n_cells_dev, const int32_t* tok_pos,
                                 const int32_t* tok_seq, int n_head, int n_head_kv, int head_dim,
                                 float* partial, float* out, int8_t* q8,
                                 float4* q8_scales) {
    __shared__ float sm_acc[ATT_THREADS / 32][ATT_MAX_HEAD_DIM];
    __shared__ float sm_m[ATT_THREADS / 32], sm_l[ATT_THREADS / 32];
    const int h = blockIdx.x, t = blockIdx.y, split = blockIdx.z;
    const int lane = threadIdx.x % RF_WAVE, wave = threadIdx.x / RF_WAVE;
    const int n_waves = blockDim.x / RF_WAVE;
    const int kv_dim = n_head_kv * head_dim, q_dim = n_head * head_dim;
    const int kv_off = (h / (n_head / n_head_kv)) * head_dim;
    const float scale = 1.0f / sqrtf((float)head_dim);
    // The cell count is read on the device so a captured graph stays valid as the cache grows.
    const int n_cells = *n_cells_dev;
    const int chunk = (n_cells + gridDim.z - 1) / gridDim.z;
    const int c0 = split * chunk, c1 = min(c0 + chunk, n_cells);
    const int pos = tok_pos[t];
    const uint64_t bit = 1ull << tok_seq[t];

    float qr[ATT_PER_LANE], acc[ATT_PER_LANE];
#pragma unroll
    for (int j = 0; j < ATT_PER_LANE; j++) {
        const int e = lane + j * RF_WAVE;
        qr[j] = e < head_dim ? q[(size_t)t * ld_q + h * head_dim + e] : 0.0f;
        acc[j] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int c = c0 + wave; c < c1; c += n_waves) {
        const int cp = cell_pos[c];
        if ((cell_seqs[c] & bit) == 0 || cp < 0 || cp > pos) continue;  // uniform per wave
        const float* kr = k_cache + (size_t)c * kv_dim + kv_off;
        const float* vr = v_cache + (size_t)c * kv_dim + kv_off;
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < ATT_PER_LANE; j++) {
            const int e = lane + j * RF_WAVE;
            if (e < head_dim) s += qr[j] * kr[e];
        }
        s = rf_wave_sum(s) * scale;
        const float m_new = fmaxf(m, s);
        const float corr = expf(m - m_new);  // 0 while m is -inf
        const float p = expf(s - m_new);
        l = l * corr + p;
#pragma unroll
        for (int j = 0; j < ATT_PER_LANE; j++) {
            const int e = lane + j * RF_WAVE;
            if (e < head_dim) acc[j] = acc[j] * corr + p * vr[e];
        }
        m = m_new;
    }
#pragma unroll
    for (int j = 0; j < ATT_PER_LANE; j++) {
        const int e = lane + j * RF_WAVE;
        if (e < head_dim) sm_acc[wave][e] = acc[j];
    }
    if (lane == 0) {
        sm_m[wave] = m;
        sm_l[wave] = l;
    }
    __syncthreads();
    float big = -INFINITY;
    for (int w = 0; w < n_waves; w++) big = fmaxf(big, sm_m[w]);
    float sum = 0.0f;
    for (int w = 0; w < n_waves; w++)
        if (sm_m[w] != -INFINITY) sum += sm_l[w] * expf(sm_m[w] - big);
    for (int e = threadIdx.x; e < head_dim; e += blockDim.x) {
        float a = 0.0f;
        for (int w = 0; w < n_waves; w++)
            if (sm_m[w] != -INFINITY) a += sm_acc[w][e] * expf(sm_m[w] - big);
        if (gridDim.z == 1) {
            att_store(out, q8, q8_scales, (size_t)t * q_dim + h * head_dim + e,
                      sum > 0.0f ? a / sum : 0.0f);
        } else {
            float* dst = partial + (((size_t)t * n_head + h) * gridDim.z + split) * (head_dim + 2);
            dst[e] = a;
            if (e == 0) {
                dst[head_dim] = big;
                dst[head_dim + 1] = sum;
            }
        }
    }
}

// Merges the splits of one (head, token): rescale each by exp(max_s - max) and normalise.
__global__ void attention_combine_kernel(const float* partial, int n_head, int head_dim,
                                         int n_split, float* out, int8_t* q8,
                                         float4* q8_scales) {
    const int h = blockIdx.x, t = blockIdx.y;
    const float* base = partial + ((size_t)t * n_head + h) * n_split * (head_dim + 2);
    float big = -INFINITY;
    for (int s = 0; s < n_split; s++) big = fmaxf(big, base[s * (head_dim + 2) + head_dim]);
    for (int e = threadIdx.x; e < head_dim; e += blockDim.x) {
        float a = 0.0f, sum = 0.0f;
        for (int s = 0; s < n_split; s++) {
            const float* p = base + s * (head_dim + 2);
            if (p[head_dim] == -INFINITY) continue;
            const float f = expf(p[head_dim] - big);
            a += p[e] * f;
            sum += p[head_dim + 1] * f;
        }
        att_store(out, q8, q8_scales, (size_t)t * n_head * head_dim + h * head_dim + e,
                  sum > 0.0f ? a / sum : 0.0f);
    }
}

extern "C" int rf_attention(const float* q, int ld_q, const float* k_cache, const float* v_cache,
                            const int32_t* cell_pos, const uint64_t* cell_seqs,
                            const int32_t* n_cells, const int32_t* tok_pos,
                            const int32_t* tok_seq, int n, int n_head, int n_head_kv, int head_dim,
                            int n_split, float* partial, float* out, int8_t* q8,
                            void* q8_scales, void* stream) {
    if (n <= 0 || head_dim > ATT_MAX_HEAD_DIM || n_split <= 0 || n_head % n_head_kv != 0)
        return RF_ERR_SHAPE;
    hipStream_t s = (hipStream_t)stream;
    hipLaunchKernelGGL(attention_kernel, dim3(n_head, n, n_split), dim3(ATT_THREADS), 0, s, q, ld_q,
                       k_cache, v_cache, cell_pos, cell_seqs, n_cells, tok_pos, tok_seq, n_head,
                       n_head_kv, head_dim, partial, out, q8, (float4*)q8_scales);
    if (n_split > 1)
        hipLaunchKernelGGL(attention_combine_kernel, dim3(n_head, n), dim3(128), 0, s, partial,
                           n_head, head_dim, n_split, out, q8, (float4*)q8_scales);
    return (int)hipGetLastError();
}
