#!/bin/sh
# The wheel cache's key for a llama-cpp-python build: its version and a hash of the CMAKE_ARGS
# it was built with (this CPU's extensions, from llama-cmake-args.sh). A wheel built for other
# CPU flags or another version lands in another folder, so it is never picked up here.
#   scripts/llama-wheel-key.sh VERSION CMAKE_ARGS   ->   0.3.36-3f2a9c0d51e8b7a4
set -eu
[ $# -eq 2 ] || { echo "usage: $0 VERSION CMAKE_ARGS" >&2; exit 2; }
printf '%s-%s\n' "$1" "$(printf '%s' "$2" | sha256sum | cut -c 1-16)"
