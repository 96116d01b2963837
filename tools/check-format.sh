#!/usr/bin/env bash
# check-format.sh - checks that every tracked C, C++ and CUDA source matches .clang-format
# and every Lua source matches stylua.toml; exit 1 naming the files that do not.
# --fix rewrites the C/C++/CUDA files in place (and the Lua files where StyLua exists).
# Runs from a git checkout: the files checked are `git ls-files`'s.
set -euo pipefail
cd "$(dirname "$0")/.."
fix=0
[ "${1:-}" = "--fix" ] && fix=1
command -v clang-format >/dev/null || { echo "check-format: clang-format not found (tools/install-deps.sh installs it)" >&2; exit 1; }

# templates/ is left out: its ${NAME} placeholders are not C++ (templates/.clang-format).
mapfile -t c_files < <(git ls-files '*.c' '*.h' '*.cu' '*.cuh' '*.cpp' | grep -v '^templates/')
mapfile -t lua_files < <(git ls-files '*.lua')
status=0
if [ $fix -eq 1 ]; then
  clang-format -i "${c_files[@]}"
else
  bad=()
  for f in "${c_files[@]}"; do
    clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
  done
  if [ ${#bad[@]} -gt 0 ]; then
    echo "check-format: these files differ from .clang-format (fix: tools/check-format.sh --fix):" >&2
    printf '  %s\n' "${bad[@]}" >&2
    status=1
  fi
fi

if command -v stylua >/dev/null; then
  if [ $fix -eq 1 ]; then stylua "${lua_files[@]}"; else stylua --check "${lua_files[@]}" || status=1; fi
else
  lua5.4 tools/lua_style.lua "${lua_files[@]}" || status=1
fi
[ $status -eq 0 ] && echo "check-format: ${#c_files[@]} C/C++/CUDA and ${#lua_files[@]} Lua files match the style"
exit $status
