#!/usr/bin/env bash
# Compiles every GPU kernel into AMD code objects for targets Debian's hipcc (HIP 5.2, clang-15)
# cannot build: gfx942 (MI300) and gfx1100 (RDNA3). scripts/gpu/check-amd-compile.sh covers
# gfx90a and gfx1030 with hipcc itself.
#
# Recipe: Debian 12's clang-19 (apt: clang-19 lld-19, ~50 MB download, ~250 MB installed) with
# Debian's HIP 5.2 headers (/usr/include/hip) and Debian's ROCm 5.2 device libraries. Those
# libraries lack only the per-target oclc_isa_version_<id>.bc, which holds one constant,
# __oclc_ISA_version = major*1000 + minor*100 + stepping (gfx942 -> 9402, gfx1100 -> 11000;
# the formula reproduces all 34 files Debian ships). It is generated here from one line of
# OpenCL with the same clang, into a temporary copy of the library folder.
# clang-22 (bookworm-security) does not work with HIP 5.2's headers: it no longer defines
# __AMDGCN_WAVEFRONT_SIZE and no longer declares __llvm_amdgcn_rcp_f16/_2f16, which they use.
#
# Code objects are v4 (-mcode-object-version=4), as hipcc 5.2 makes them: clang-19 defaults to
# v5 but, for this ROCm version, links oclc_abi_version_400.bc; pinning 4 keeps the two
# consistent. The flags are build.rs's and hipcc's; --cuda-device-only --no-gpu-bundle-output
# gives the plain ELF code object. Each is checked: target in the note, ABI version, no
# undefined symbols.
#
# A host object with the fat binary embedded (what build.rs makes with hipcc) builds the same
# way without --cuda-device-only/--no-gpu-bundle-output, given one --offload-arch per target and
# a clang-offload-bundler on PATH (clang-tools-19, or clang-offload-bundler-15 from hipcc's
# clang-tools-15 linked under that name).
#
# Usage: scripts/gpu/amd-targets-newer.sh [arch ...]   (default: gfx942 gfx1100)
# Env: ROCMFORGE_HIP_CLANG (default clang++-19); ROCMFORGE_AMD_OUT keeps the code objects there.
set -euo pipefail
cd "$(dirname "$0")/../.."
archs=("$@")
[ ${#archs[@]} -eq 0 ] && archs=(gfx942 gfx1100)
clang=${ROCMFORGE_HIP_CLANG:-clang++-19}
if ! command -v "$clang" >/dev/null; then
    echo "$clang not found: apt-get install clang-19 lld-19 (Debian 12)" >&2
    exit 1
fi
devlibs=/usr/lib/x86_64-linux-gnu/amdgcn/bitcode # Debian's rocm-device-libs
[ -f "$devlibs/ockl.bc" ] || { echo "no ROCm device libraries in $devlibs: apt-get install hipcc" >&2; exit 1; }
readelf=$(command -v llvm-readelf-19 llvm-readelf-15 llvm-readelf | head -n1 || true)
nm=$(command -v llvm-nm-19 llvm-nm-15 llvm-nm | head -n1 || true)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=${ROCMFORGE_AMD_OUT:-$tmp/out}
mkdir -p "$out" "$tmp/bitcode"
ln -s "$devlibs"/*.bc "$tmp/bitcode/"
for arch in "${archs[@]}"; do
    id=${arch#gfx}
    [ -e "$tmp/bitcode/oclc_isa_version_$id.bc" ] && continue
    # gfxMMms: major MM (one or two digits), minor m and stepping s (hex digits).
    version=$((${id:0:${#id}-2} * 1000 + 16#${id: -2:1} * 100 + 16#${id: -1}))
    echo "const __constant unsigned __oclc_ISA_version = $version;" >"$tmp/isa_$id.cl"
    # -mcode-object-version=none: no __oclc_ABI_version of its own (oclc_abi_version_*.bc has it).
    "$clang" -x cl -cl-std=CL2.0 -target amdgcn-amd-amdhsa -nogpulib -Xclang -mcode-object-version=none \
        -emit-llvm -c "$tmp/isa_$id.cl" -o "$tmp/bitcode/oclc_isa_version_$id.bc"
done

n=0
for src in kernels/*.hip; do
    name=$(basename "$src" .hip)
    for arch in "${archs[@]}"; do
        co="$out/$name.$arch.co"
        if ! "$clang" -x hip -std=c++17 -O3 -ffp-contract=off -mcode-object-version=4 \
            -mllvm -amdgpu-early-inline-all=true -mllvm -amdgpu-function-calls=false \
            --rocm-path=/usr --rocm-device-lib-path="$tmp/bitcode" --offload-arch="$arch" \
            --cuda-device-only --no-gpu-bundle-output -c "$src" -o "$co" 2>"$tmp/err"; then
            cat "$tmp/err" >&2
            exit 1
        fi
        cat "$tmp/err" >&2
        [ -s "$co" ] || { echo "no code object for $name ($arch)" >&2; exit 1; }
        if [ -n "$readelf" ]; then
            notes=$("$readelf" --notes "$co")
            grep -q "amdhsa.target: *amdgcn-amd-amdhsa--$arch\$" <<<"$notes" ||
                { echo "$co: target is not amdgcn-amd-amdhsa--$arch" >&2; exit 1; }
            header=$("$readelf" -h "$co")
            grep -Eq "ABI Version: +2\$" <<<"$header" ||
                { echo "$co: not a v4 code object" >&2; exit 1; }
            kernels=$(grep -c '\.symbol:' <<<"$notes" || true)
        fi
        if [ -n "$nm" ] && [ -n "$("$nm" -u "$co")" ]; then
            echo "$co: undefined symbols: $("$nm" -u "$co" | tr '\n' ' ')" >&2
            exit 1
        fi
        echo "$name $arch: ${kernels:-?} kernels"
        n=$((n + 1))
    done
done
echo "compiled $n code objects for ${archs[*]} with $clang"
