// Prefill matrix products through the vendor BLAS (hipBLAS on AMD, cuBLAS on NVIDIA): f16
// weights (dequantized per matrix) times f16 activations, accumulated in f32.
// Only built with a full ROCm or CUDA install (Debian's HIP has no hipBLAS).
#define RF_WITH_BLAS 1
#include "rf_kernels.h"

extern "C" int rf_blas_create(void** handle, void* stream) {
    hipblasHandle_t h = nullptr;
    *handle = nullptr;
    if (hipblasCreate(&h) != HIPBLAS_STATUS_SUCCESS) return RF_ERR_BLAS;
    if (hipblasSetStream(h, (hipStream_t)stream) != HIPBLAS_STATUS_SUCCESS) {
        hipblasDestroy(h);
        return RF_ERR_BLAS;
    }
    *handle = (void*)h;
    return 0;
}

extern "C" int rf_blas_destroy(void* handle) {
    return hipblasDestroy((hipblasHandle_t)handle) == HIPBLAS_STATUS_SUCCESS ? 0 : RF_ERR_BLAS;
}

// Row-major y(n, ldy)[:, :rows] = x(n, cols) . W(rows, cols)^T is, column-major,
// Y(rows, n) = W^T(rows, cols) . X(cols, n) with W read as a (cols, rows) matrix.
extern "C" int rf_gemm_f16(void* handle, const void* w_f16, int rows, int cols,
                           const void* x_f16, int n, float* y, int ldy, int accumulate) {
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    hipblasStatus_t st = hipblasGemmEx((hipblasHandle_t)handle, HIPBLAS_OP_T, HIPBLAS_OP_N, rows,
                                       n, cols, &alpha, w_f16, RF_R_16F, cols, x_f16, RF_R_16F,
                                       cols, &beta, y, RF_R_32F, ldy, RF_BLAS_COMPUTE_32F,
                                       HIPBLAS_GEMM_DEFAULT);
    return st == HIPBLAS_STATUS_SUCCESS ? 0 : RF_ERR_BLAS;
}
