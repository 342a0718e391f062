#!/usr/bin/env bash
# The main job on a fresh machine: fetch the default model (SmolLM2-135M-Instruct Q4_1), build,
# and generate a greedy continuation of a prompt.
# Usage: scripts/generate.sh ["prompt"] [n_tokens]
set -euo pipefail
cd "$(dirname "$0")/.."
model=$(scripts/fetch-models.sh | grep SmolLM2)
cargo build --release --quiet --bin rocmforge_cli
exec target/release/rocmforge_cli -m "$model" -p "${1:-The three primary colors are}" -n "${2:-64}"
