#!/usr/bin/env bash
# Installs the C library under a prefix:
#   LIBDIR/librocmforge.so.X.Y.Z  stripped; its debug info in LIBDIR/.debug/, found by gdb,
#                                 valgrind and perf through the .gnu_debuglink section
#   LIBDIR/librocmforge.so.SOVERSION -> .so.X.Y.Z (the soname), librocmforge.so -> it (dev link)
#   LIBDIR/librocmforge.a         debug sections stripped (symbols kept)
#   LIBDIR/pkgconfig/rocmforge.pc
#   LIBDIR/cmake/rocmforge/rocmforge-config.cmake, rocmforge-config-version.cmake
#   PREFIX/include/rocmforge.h, rocmforge.hpp
#   PREFIX/share/doc/rocmforge/LICENSE-MIT, LICENSE-APACHE, CHANGELOG.md
# LIBDIR is PREFIX/lib unless --libdir says otherwise (lib64, lib/x86_64-linux-gnu, or an
# absolute path). SOVERSION follows the soname policy (docs/C_API.md): MAJOR.MINOR while the
# major version is 0 (a 0.x minor release may change the ABI), MAJOR from 1.0 on.
#
# usage: scripts/install.sh PREFIX [--libdir DIR] [--debug-info split|strip|keep]
#                                  [--profile release|dev] [--from TARGET_PROFILE_DIR]
#   DESTDIR (environment): stage the files under $DESTDIR$PREFIX (for packaging); the .pc file
#     still names PREFIX, and the CMake files locate everything relative to themselves.
#   --debug-info: split (default) as above; strip: no debug info kept; keep: install unstripped.
#   --from: use libraries already built there (the tests pass target/debug) instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: scripts/install.sh PREFIX [--libdir DIR] [--debug-info split|strip|keep] [--profile release|dev] [--from DIR]"
prefix="${1:?$usage}"
shift
profile=release
from=""
libdir=lib
debug_info=split
while [[ $# -gt 0 ]]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --from) from="$2"; shift 2 ;;
        --libdir) libdir="$2"; shift 2 ;;
        --debug-info) debug_info="$2"; shift 2 ;;
        *) echo "unknown argument $1; $usage" >&2; exit 2 ;;
    esac
done
case "$debug_info" in split|strip|keep) ;; *) echo "$usage" >&2; exit 2 ;; esac
destdir="${DESTDIR:-}"
if [[ -n "$destdir" && "$prefix" != /* ]]; then
    echo "with DESTDIR, PREFIX must be absolute" >&2
    exit 2
fi
if [[ -z "$from" ]]; then
    cargo build --lib --profile "$profile"
    dir="$profile"; [[ "$profile" == dev ]] && dir=debug
    from="target/$dir"
fi
# Cargo.toml's version is the one source of the version.
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
major="${version%%.*}"
minor="${version#*.}"; minor="${minor%%.*}"
if [[ "$major" == 0 ]]; then soversion="0.$minor"; else soversion="$major"; fi
soname="librocmforge.so.$soversion"
built_soname="$(readelf -d "$from/librocmforge.so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')"
if [[ "$built_soname" != "$soname" ]]; then
    echo "$from/librocmforge.so has soname '$built_soname', the policy says $soname (build.rs)" >&2
    exit 1
fi

# Final (run-time) paths, without DESTDIR.
if [[ -z "$destdir" ]]; then
    mkdir -p "$prefix"
    prefix="$(cd "$prefix" && pwd)"
fi
[[ "$libdir" == /* ]] || libdir="$prefix/$libdir"
includedir="$prefix/include"
cmakedir="$libdir/cmake/rocmforge"
docdir="$prefix/share/doc/rocmforge"
# What the CMake files need: paths relative to where they are installed (relocatable).
cmake_to_prefix="$(realpath -ms --relative-to="$cmakedir" "$prefix")"
prefix_to_libdir="$(realpath -ms --relative-to="$prefix" "$libdir")"

# Native libraries the static archive needs beside libc (rustc --print native-static-libs
# lists -lgcc_s too, which a fully static link cannot find: the compiler driver already adds
# the unwinder itself, libgcc_s for a dynamic program, libgcc_eh for a -static one).
static_libs=(pthread dl m rt util)
# A GPU build's archive holds the C++ host glue of the kernels (static-local guards, operator
# new, the C++ runtime's personality): it needs the C++ standard library first.
undefined="$(nm -u "$from/librocmforge.a" 2>/dev/null || true)"
if grep -qE ' U (__cxa_|__gxx_personality|_Znwm|_Znam|_ZdlPv|_ZdaPv|_ZSt)' <<<"$undefined"; then
    static_libs=(stdc++ "${static_libs[@]}")
fi

d() { echo "$destdir$1"; }
mkdir -p "$(d "$libdir/pkgconfig")" "$(d "$cmakedir")" "$(d "$includedir")" "$(d "$docdir")"
so="$(d "$libdir")/librocmforge.so.$version"
rm -f "$so"
case "$debug_info" in
    keep) install -m 0755 "$from/librocmforge.so" "$so" ;;
    strip) install -m 0755 "$from/librocmforge.so" "$so"
           strip --strip-unneeded --remove-section=.comment --remove-section=.note "$so" ;;
    split)
        # As Debian's dh_strip: the debug sections into a separate file, the library stripped
        # of them and of unneeded symbols, and a debug link (name + CRC) from one to the other.
        mkdir -p "$(d "$libdir")/.debug"
        debug="$(d "$libdir")/.debug/librocmforge.so.$version.debug"
        objcopy --only-keep-debug --compress-debug-sections "$from/librocmforge.so" "$debug"
        chmod 0644 "$debug"
        objcopy --strip-unneeded --remove-section=.comment --remove-section=.note \
            --add-gnu-debuglink="$debug" "$from/librocmforge.so" "$so"
        chmod 0755 "$so" ;;
esac
ln -sfn "librocmforge.so.$version" "$(d "$libdir")/$soname"
ln -sfn "$soname" "$(d "$libdir")/librocmforge.so"
install -m 0644 "$from/librocmforge.a" "$(d "$libdir")/librocmforge.a"
if [[ "$debug_info" != keep ]]; then
    strip --strip-debug --remove-section=.comment --remove-section=.note \
        --enable-deterministic-archives "$(d "$libdir")/librocmforge.a"
fi
install -m 0644 include/rocmforge.h include/rocmforge.hpp "$(d "$includedir")/"
install -m 0644 LICENSE-MIT LICENSE-APACHE CHANGELOG.md "$(d "$docdir")/"
sed -e "s|@PREFIX@|$prefix|" -e "s|@LIBDIR@|$libdir|" -e "s|@INCLUDEDIR@|$includedir|" \
    -e "s|@VERSION@|$version|" -e "s|@LIBS_PRIVATE@|${static_libs[*]/#/-l}|" \
    rocmforge.pc.in > "$(d "$libdir/pkgconfig")/rocmforge.pc"
for f in rocmforge-config.cmake rocmforge-config-version.cmake; do
    sed -e "s|@VERSION@|$version|g" -e "s|@VERSION_MAJOR@|$major|g" \
        -e "s|@VERSION_MINOR@|$minor|g" -e "s|@SONAME@|$soname|g" \
        -e "s|@CMAKE_TO_PREFIX@|$cmake_to_prefix|g" -e "s|@PREFIX_TO_LIBDIR@|$prefix_to_libdir|g" \
        -e "s|@STATIC_LIBS@|$(IFS=';'; echo "${static_libs[*]}")|g" \
        "cmake/$f.in" > "$(d "$cmakedir")/$f"
done
echo "installed rocmforge $version under $destdir$prefix (libraries in $destdir$libdir)"
