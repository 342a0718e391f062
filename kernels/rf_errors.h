// The kernel library's own status codes, next to HIP's and CUDA's (which are > 0). Plain C: the
// runtime loader (amd_runtime_loader.c) includes it too. src/backend/hip/ffi.rs mirrors them.
#pragma once

#define RF_ERR_BAD_TYPE (-1000)
#define RF_ERR_SHAPE (-1001)
#define RF_ERR_BLAS (-1002)
// The GPU runtime library could not be opened (rf_error_string says why): a build with a GPU
// backend running on a machine without that runtime.
#define RF_ERR_NO_RUNTIME (-1003)
// The vendor BLAS library could not be opened (rf_blas_unavailable_reason says why).
#define RF_ERR_NO_BLAS (-1004)
// rf_matvec_pair has no one-launch kernel for these two types or this width: nothing was
// launched, and the caller runs the two products one by one.
#define RF_MATVEC_NOT_PAIRED (-1005)
