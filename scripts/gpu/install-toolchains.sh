#!/usr/bin/env bash
# Installs what the GPU build checks need, when missing:
# - Debian's hipcc (HIP 5.2 on clang-15, with the HIP runtime) for the `rocm` build (gfx90a,
#   gfx1030), and Debian's clang-19 for gfx942 and gfx1100 code objects (amd-targets-newer.sh) and llvm-19 to
#   read them (check-amd-paths.sh);
# - the CUDA 13.0 toolchain from PyPI into .cuda/ (pinned to the GPU machine's CUDA 13.0, nvvm
#   and crt too: newer ones emit PTX that its ptxas rejects), for the `cuda` feature build.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v hipcc >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hipcc >/dev/null
fi
if ! command -v clang++-19 >/dev/null || ! command -v llvm-objdump-19 >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang-19 lld-19 llvm-19 >/dev/null
fi
if [ ! -x .cuda/lib/python3*/site-packages/nvidia/cu13/bin/nvcc ] 2>/dev/null; then
    python3 -m venv .cuda
    .cuda/bin/pip install --quiet --disable-pip-version-check \
        nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
        nvidia-cuda-runtime==13.0.96 nvidia-cublas==13.1.0.3 nvidia-cuda-cccl==13.0.85
fi
