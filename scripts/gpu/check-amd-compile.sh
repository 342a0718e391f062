#!/usr/bin/env bash
# Compiles every GPU kernel for AMD targets into code objects with the system hipcc (Debian 12's
# HIP 5.2 is enough), the check CI runs where no AMD GPU exists. (blas.hip opens rocBLAS at run
# time and needs no BLAS header, so it is compiled too.)
# Usage: scripts/gpu/check-amd-compile.sh [arch ...]   (default: gfx90a gfx1030)
set -euo pipefail
cd "$(dirname "$0")/../.."
archs=("$@")
[ ${#archs[@]} -eq 0 ] && archs=(gfx90a gfx1030)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
n=0
for src in kernels/*.hip; do
    name=$(basename "$src" .hip)
    for arch in "${archs[@]}"; do
        # --offload-arch is always explicit: without it hipcc probes for a GPU and fails.
        hipcc -x hip -std=c++17 -O3 -ffp-contract=off --offload-arch="$arch" --genco -c "$src" -o "$out/$name.$arch.co"
        [ -s "$out/$name.$arch.co" ] || { echo "no code object for $name ($arch)" >&2; exit 1; }
        n=$((n + 1))
    done
done
echo "compiled $n code objects for ${archs[*]}"
