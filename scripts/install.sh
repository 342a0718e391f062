#!/usr/bin/env bash
# Installs the C library under a prefix:
#   PREFIX/lib/librocmforge.so.X.Y.Z (+ .so.X soname link, + .so dev link), librocmforge.a
#   PREFIX/include/rocmforge.h
#   PREFIX/lib/pkgconfig/rocmforge.pc
#
# usage: scripts/install.sh PREFIX [--profile release|dev] [--from TARGET_PROFILE_DIR]
#   --from uses libraries already built there (the tests pass target/debug) instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="${1:?usage: scripts/install.sh PREFIX [--profile release|dev] [--from DIR]}"
shift
profile=release
from=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --from) from="$2"; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
if [[ -z "$from" ]]; then
    cargo build --lib --profile "$profile"
    dir="$profile"; [[ "$profile" == dev ]] && dir=debug
    from="target/$dir"
fi
# Cargo.toml's version is the one source of the version.
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
major="${version%%.*}"
mkdir -p "$prefix/lib/pkgconfig" "$prefix/include"
prefix="$(cd "$prefix" && pwd)"
install -m 0755 "$from/librocmforge.so" "$prefix/lib/librocmforge.so.$version"
ln -sf "librocmforge.so.$version" "$prefix/lib/librocmforge.so.$major"
ln -sf "librocmforge.so.$major" "$prefix/lib/librocmforge.so"
install -m 0644 "$from/librocmforge.a" "$prefix/lib/librocmforge.a"
install -m 0644 include/rocmforge.h "$prefix/include/rocmforge.h"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" rocmforge.pc.in \
    > "$prefix/lib/pkgconfig/rocmforge.pc"
echo "installed rocmforge $version under $prefix"
