#!/usr/bin/env bash
# test_install.sh - the installed package serves another CMake project: installs poolprop
# into a temporary prefix, builds examples/ on its own with find_package(poolprop), and
# runs the examples there on the host backend; the installed Python package finds the
# installed library by itself (Debian's /usr/bin/python3, without POOLPROP_LIB).
# Usage: test_install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" > "$prefix/install.log"
test -f "$prefix/include/poolprop.h"
test -f "$prefix/lib/cmake/poolprop/poolprop-config.cmake"
cmake -S "$src/examples" -B "$prefix/examples-build" -DCMAKE_PREFIX_PATH="$prefix" > "$prefix/configure.log"
cmake --build "$prefix/examples-build" > "$prefix/build.log"
echo "built examples against the package installed in $prefix"
for example in "$prefix"/examples-build/*_example; do
  echo "running $(basename "$example")"
  "$example"
done
pydir=$(echo "$prefix"/lib*/poolprop/python)
test -f "$pydir/poolprop/torch/__init__.py"
found=$(cd / && env -u POOLPROP_LIB PYTHONPATH="$pydir" /usr/bin/python3 -c \
  'import poolprop; print(poolprop.load_library().path)')
echo "the installed Python package loads $found"
case "$found" in "$prefix"/*) ;; *) echo "test_install: expected a library under $prefix" >&2; exit 1 ;; esac
