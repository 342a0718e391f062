#!/usr/bin/env bash
# Runs every test: fetches the real test models, then the Rust unit and integration tests
# (which include the real-model comparisons against llama.cpp's fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-models.sh >/dev/null
cargo nextest run --workspace --no-fail-fast "$@"
