#!/bin/sh
# Installs the llama.cpp backend (the project's `llama` extra) into the venv whose bin/ is $1.
# PyPI has no Linux wheel of llama-cpp-python, so it is built from source once per machine
# (and per version and CPU flags) into a wheel cache outside the clone:
#   ${XDG_CACHE_HOME:-~/.cache}/all-in-one-bot/wheels/<version>-<hash of CMAKE_ARGS>/
# and a later clone, or `make clean`, installs that wheel in seconds.
set -eu
bin=$1
here=$(dirname "$0")
# The version pinned in pyproject.toml's `llama` extra.
version=$(sed -n 's/^ *"llama-cpp-python\[server\]==\([^"]*\)".*/\1/p' pyproject.toml)
[ -n "$version" ] || { echo "no llama-cpp-python==<version> pin in pyproject.toml" >&2; exit 1; }
args=$(sh "$here/llama-cmake-args.sh")
cache=${XDG_CACHE_HOME:-$HOME/.cache}/all-in-one-bot/wheels
dir=$cache/$(sh "$here/llama-wheel-key.sh" "$version" "$args")
logs=$(dirname "$bin")/logs
hint="retry with \`make install-llama\` (BACKEND=auto falls back to transformers meanwhile)"

wheel=$(ls "$dir"/llama_cpp_python-"$version"-*.whl 2>/dev/null | head -n 1 || true)
if [ -n "$wheel" ]; then
  echo "==> llama-cpp-python $version: using the cached build $wheel"
else
  mkdir -p "$dir"
  # What a build killed outright (SIGKILL, power loss) left behind.
  find "$dir" -maxdepth 1 -name '.building.*' -mmin +1440 -exec rm -rf {} + 2>/dev/null || true
  # Built into a temporary folder next to the cache and moved in when complete (a rename on
  # the same file system), so a killed build never leaves a half wheel that gets reused.
  tmp=$(mktemp -d "$dir/.building.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  trap 'exit 130' INT TERM HUP
  # -v: the compile steps go to the log, where the progress lines read them.
  # --no-cache-dir: pip's own wheel cache is not keyed by CMAKE_ARGS; this one is.
  CMAKE_ARGS=$args bash "$here/step.sh" --hint "$hint" \
    "Building llama.cpp (llama-cpp-python $version) for this CPU; later clones reuse it" \
    "about 6-15 minutes on 2 cores, once per machine" "$logs/llama-build.log" -- \
    "$bin/pip" wheel -v --no-deps --no-cache-dir "llama-cpp-python==$version" -w "$tmp"
  built=$(ls "$tmp"/llama_cpp_python-"$version"-*.whl)
  printf '%s\n' "$args" >"$dir/cmake-args.txt"
  mv "$built" "$dir/"
  wheel=$dir/$(basename "$built")
  echo "    cached as $wheel"
fi

# The wheel and the rest of the extra (the [server] packages pinned in pyproject.toml); the
# project itself stays installed in editable mode.
bash "$here/step.sh" --hint "$hint" "Installing llama-cpp-python and its server packages" \
  "under a minute" "$logs/llama-install.log" -- \
  "$bin/pip" install "$wheel" -e '.[llama]'
