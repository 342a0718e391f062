//! Compute backends. The CPU backend is always built; GPU backends come with build features.

pub mod cpu;
pub mod numerics;

/// GPU backend (HIP; on NVIDIA through the project's HIP-to-CUDA header).
#[cfg(any(feature = "rocm", feature = "cuda"))]
pub mod hip;
