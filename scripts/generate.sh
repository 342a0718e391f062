#!/usr/bin/env bash
# The main job on a fresh machine: fetch the default model (SmolLM2-135M-Instruct Q4_1), build
# and install librocmforge under dist/, build the C example examples-c/simple.c against it
# through pkg-config, and stream a greedy continuation of a prompt through the C API.
# Usage: scripts/generate.sh ["prompt"] [n_tokens]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v pkg-config >/dev/null || { apt-get update -qq && apt-get install -y -qq pkg-config >/dev/null; }
model=$(scripts/fetch-models.sh | grep SmolLM2)
prefix=$PWD/dist/prefix
scripts/install.sh "$prefix" >/dev/null
PKG_CONFIG_PATH=$prefix/lib/pkgconfig make -s -C examples-c OUT="$PWD/dist/examples" >/dev/null
exec dist/examples/simple "$model" "${1:-The three primary colors are}" "${2:-64}"
