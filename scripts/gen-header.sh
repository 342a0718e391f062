#!/usr/bin/env bash
# Regenerates include/rocmforge.h from src/ffi/ with the pinned cbindgen (installing it if
# missing, unless ROCMFORGE_NO_INSTALL is set, as the tests do). `--install` only installs it;
# `--check` writes to a temporary file and fails when the checked-in header differs.
set -euo pipefail
cd "$(dirname "$0")/.."
CBINDGEN_VERSION=0.29.0
CBINDGEN="${CARGO_HOME:-$HOME/.cargo}/bin/cbindgen"
if ! "$CBINDGEN" --version 2>/dev/null | grep -qx "cbindgen $CBINDGEN_VERSION"; then
    if [[ -n "${ROCMFORGE_NO_INSTALL:-}" ]]; then
        echo "cbindgen $CBINDGEN_VERSION is not installed (.ci/run installs it)" >&2
        exit 1
    fi
    cargo install cbindgen --version "$CBINDGEN_VERSION" --locked >&2
fi
[[ "${1:-}" == "--install" ]] && exit 0
generate() { "$CBINDGEN" --quiet --config cbindgen.toml --output "$1" src/ffi/mod.rs; }
if [[ "${1:-}" == "--check" ]]; then
    fresh="$(mktemp)"
    trap 'rm -f "$fresh"' EXIT
    generate "$fresh"
    if ! diff -u include/rocmforge.h "$fresh"; then
        echo "include/rocmforge.h differs from a fresh cbindgen $CBINDGEN_VERSION generation:" \
             "run scripts/gen-header.sh and commit the result" >&2
        exit 1
    fi
else
    generate include/rocmforge.h
fi
