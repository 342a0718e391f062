// Prefill matrix products through the vendor BLAS: f16 weights (dequantized per matrix) times f16
// activations, accumulated in f32. The BLAS library is opened at run time (dlopen), so our
// library loads where it is missing and answers with the loader's reason: cuBLAS on NVIDIA,
// rocBLAS on AMD. rocBLAS rather than hipBLAS: hipBLAS is a thin layer over rocBLAS on AMD, and
// its GemmEx changed its signature (hipDataType / hipblasComputeType_t, hipBLAS 3) while
// rocblas_gemm_ex kept its own for every ROCm we target; and no vendor BLAS header is needed
// to build (Debian's HIP has none). The enum values below are rocBLAS's published ABI.
#include "rf_kernels.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#if defined(RF_PLATFORM_NVIDIA)
#include <cublas_v2.h>
// Types from the header; nothing links against cuBLAS. cublasGemmEx is overloaded in C++ (a
// legacy cudaDataType compute type), so the C entry point is named by its signature.
typedef cublasStatus_t (*rf_cublas_gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t,
                                            int, int, int, const void*, const void*, cudaDataType,
                                            int, const void*, cudaDataType, int, const void*,
                                            void*, cudaDataType, int, cublasComputeType_t,
                                            cublasGemmAlgo_t);
#define RF_BLAS_FUNCTIONS(X)                                              \
    X(create, decltype(&cublasCreate), "cublasCreate_v2")                 \
    X(destroy, decltype(&cublasDestroy), "cublasDestroy_v2")              \
    X(set_stream, decltype(&cublasSetStream), "cublasSetStream_v2")       \
    X(gemm_ex, rf_cublas_gemm_ex, "cublasGemmEx")
static const char* const BLAS_LIBRARIES[] = {"libcublas.so.13", "libcublas.so.12",
                                             "libcublas.so"};
#define RF_BLAS_ENV "ROCMFORGE_CUBLAS"
#define RF_BLAS_NAME "cuBLAS"
#else
typedef struct rf_rocblas_handle* rocblas_handle;
typedef int rocblas_status;  // rocblas_status_success = 0
typedef int rocblas_operation;
typedef int rocblas_datatype;
typedef int rocblas_gemm_algo;
enum {
    rocblas_operation_none = 111,
    rocblas_operation_transpose = 112,
    rocblas_datatype_f16_r = 150,
    rocblas_datatype_f32_r = 151,
    rocblas_gemm_algo_standard = 0,
};
extern "C" {
rocblas_status rocblas_create_handle(rocblas_handle* handle);
rocblas_status rocblas_destroy_handle(rocblas_handle handle);
rocblas_status rocblas_set_stream(rocblas_handle handle, hipStream_t stream);
rocblas_status rocblas_gemm_ex(rocblas_handle handle, rocblas_operation trans_a,
                               rocblas_operation trans_b, int m, int n, int k, const void* alpha,
                               const void* a, rocblas_datatype a_type, int lda, const void* b,
                               rocblas_datatype b_type, int ldb, const void* beta, const void* c,
                               rocblas_datatype c_type, int ldc, void* d, rocblas_datatype d_type,
                               int ldd, rocblas_datatype compute_type, rocblas_gemm_algo algo,
                               int32_t solution_index, uint32_t flags);
}
#define RF_BLAS_FUNCTIONS(X)                                                        \
    X(create, decltype(&rocblas_create_handle), "rocblas_create_handle")            \
    X(destroy, decltype(&rocblas_destroy_handle), "rocblas_destroy_handle")         \
    X(set_stream, decltype(&rocblas_set_stream), "rocblas_set_stream")              \
    X(gemm_ex, decltype(&rocblas_gemm_ex), "rocblas_gemm_ex")
static const char* const BLAS_LIBRARIES[] = {"librocblas.so.5", "librocblas.so.4",
                                             "librocblas.so.0", "librocblas.so"};
#define RF_BLAS_ENV "ROCMFORGE_ROCBLAS"
#define RF_BLAS_NAME "rocBLAS"
#endif

static struct {
#define RF_POINTER(field, type, symbol) type field;
    RF_BLAS_FUNCTIONS(RF_POINTER)
#undef RF_POINTER
} blas;
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static bool blas_opened = false;
static char blas_why_not[512] = RF_BLAS_NAME " has not been opened yet";

static void open_blas() {
    void* lib = nullptr;
    const char* chosen = getenv(RF_BLAS_ENV);
    if (chosen && *chosen) {
        lib = dlopen(chosen, RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            snprintf(blas_why_not, sizeof blas_why_not, "cannot open " RF_BLAS_NAME ": %s",
                     dlerror());
            return;
        }
    } else {
        for (const char* name : BLAS_LIBRARIES)
            if ((lib = dlopen(name, RTLD_NOW | RTLD_LOCAL))) break;
        if (!lib) {
            snprintf(blas_why_not, sizeof blas_why_not,
                     RF_BLAS_NAME " is not installed (none of %s... found by the dynamic loader; "
                     "set " RF_BLAS_ENV " to its path)",
                     BLAS_LIBRARIES[0]);
            return;
        }
    }
#define RF_LOOKUP(field, type, symbol)                                                          \
    blas.field = (type)dlsym(lib, symbol);                                                      \
    if (!blas.field) {                                                                          \
        snprintf(blas_why_not, sizeof blas_why_not, RF_BLAS_NAME " lacks %s", symbol);          \
        return;                                                                                 \
    }
    RF_BLAS_FUNCTIONS(RF_LOOKUP)
#undef RF_LOOKUP
    blas_opened = true;  // the library stays open for the life of the process
}

extern "C" const char* rf_blas_unavailable_reason(void) {
    pthread_once(&blas_once, open_blas);
    return blas_opened ? nullptr : blas_why_not;
}

extern "C" int rf_blas_create(void** handle, void* stream) {
    *handle = nullptr;
    if (rf_blas_unavailable_reason()) return RF_ERR_NO_BLAS;
#if defined(RF_PLATFORM_NVIDIA)
    cublasHandle_t h = nullptr;
    if (blas.create(&h) != CUBLAS_STATUS_SUCCESS) return RF_ERR_BLAS;
    if (blas.set_stream(h, (cudaStream_t)stream) != CUBLAS_STATUS_SUCCESS) {
        blas.destroy(h);
        return RF_ERR_BLAS;
    }
#else
    rocblas_handle h = nullptr;
    if (blas.create(&h) != 0) return RF_ERR_BLAS;
    if (blas.set_stream(h, (hipStream_t)stream) != 0) {
        blas.destroy(h);
        return RF_ERR_BLAS;
    }
#endif
    *handle = (void*)h;
    return 0;
}

extern "C" int rf_blas_destroy(void* handle) {
    if (!handle || rf_blas_unavailable_reason()) return 0;
#if defined(RF_PLATFORM_NVIDIA)
    return blas.destroy((cublasHandle_t)handle) == CUBLAS_STATUS_SUCCESS ? 0 : RF_ERR_BLAS;
#else
    return blas.destroy((rocblas_handle)handle) == 0 ? 0 : RF_ERR_BLAS;
#endif
}

// Row-major y(n, ldy)[:, :rows] = x(n, cols) . W(rows, cols)^T is, column-major,
// Y(rows, n) = W^T(rows, cols) . X(cols, n) with W read as a (cols, rows) matrix.
extern "C" int rf_gemm_f16(void* handle, const void* w_f16, int rows, int cols,
                           const void* x_f16, int n, float* y, int ldy, int accumulate) {
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
#if defined(RF_PLATFORM_NVIDIA)
    cublasStatus_t st = blas.gemm_ex((cublasHandle_t)handle, CUBLAS_OP_T, CUBLAS_OP_N, rows, n,
                                     cols, &alpha, w_f16, CUDA_R_16F, cols, x_f16, CUDA_R_16F,
                                     cols, &beta, y, CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT);
    return st == CUBLAS_STATUS_SUCCESS ? 0 : RF_ERR_BLAS;
#else
    // rocBLAS writes D and reads C: the same buffer for an in-place accumulate.
    rocblas_status st = blas.gemm_ex(
        (rocblas_handle)handle, rocblas_operation_transpose, rocblas_operation_none, rows, n, cols,
        &alpha, w_f16, rocblas_datatype_f16_r, cols, x_f16, rocblas_datatype_f16_r, cols, &beta, y,
        rocblas_datatype_f32_r, ldy, y, rocblas_datatype_f32_r, ldy, rocblas_datatype_f32_r,
        rocblas_gemm_algo_standard, 0, 0);
    return st == 0 ? 0 : RF_ERR_BLAS;
#endif
}
