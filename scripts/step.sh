#!/usr/bin/env bash
# One long install step, run so it never looks hung:
#   scripts/step.sh [--hint "<what to do if it fails>"] "<what>" "<about how long>" <log> -- <command...>
# It announces the step, runs the command with all its output going to <log>, prints a line
# every STEP_INTERVAL seconds (default 30) with the elapsed time and the log's last line, and
# on failure shows the log's last 20 lines and the hint. Its exit status is the command's.
set -eu

hint=""
if [ "${1:-}" = "--hint" ]; then hint=$2; shift 2; fi
if [ $# -lt 5 ] || [ "$4" != "--" ]; then
  echo "usage: $0 [--hint TEXT] WHAT ABOUT-HOW-LONG LOG -- COMMAND..." >&2
  exit 2
fi
what=$1 howlong=$2 log=$3
shift 4
interval=${STEP_INTERVAL:-30}

mkdir -p "$(dirname "$log")"
echo "==> $what ($howlong)"
echo "    full log: $log"

pid=""
stop() {
  if [ -n "$pid" ]; then kill -TERM -- "-$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  echo "    interrupted; full log: $log" >&2
  exit 130
}
trap stop INT TERM HUP
# Its own process group (job control on), so that an interrupt can stop the whole build
# (pip, cmake, the compilers) instead of leaving it running in the background.
set -m
"$@" >"$log" 2>&1 </dev/null &
pid=$!
set +m

elapsed() { printf '%d min %02d s' $((SECONDS / 60)) $((SECONDS % 60)); }
# The log's last meaningful line, condensed: the build's last "[n/total]" step if there is one
# (the compiler's warnings come after it), else the last line that is not blank (pip redraws
# lines with \r: the last redraw counts) and not one of pip's warnings.
last_line() {
  local lines
  lines=$(tail -c 65536 "$log" | tr '\r' '\n' | sed -e 's/[[:space:]]*$//' -e '/^$/d')
  { grep -E '^[[:space:]]*\[[0-9]+/[0-9]+\] ' <<<"$lines" ||
    grep -v -E '^[[:space:]]*(WARNING|DEPRECATION):' <<<"$lines" || echo "$lines"; } | tail -n 1 |
    # A compiler call of the llama.cpp build ("[18/193] /usr/bin/g++ -D... -c .../ops.cpp")
    # is condensed to "[18/193] compiling ops.cpp".
    sed -E -e 's#^[[:space:]]+##' \
      -e 's#^(\[[0-9]+/[0-9]+\]) .* -c ([^ ]*/)?([^ /]+).*#\1 compiling \3#' \
      -e 's#^(\[[0-9]+/[0-9]+\]) .* -o ([^ ]*/)?([^ /]+).*#\1 linking \3#' | cut -c 1-110
}

SECONDS=0
next=$interval
while kill -0 "$pid" 2>/dev/null; do
  sleep 1
  if [ "$SECONDS" -ge "$next" ] && kill -0 "$pid" 2>/dev/null; then
    echo "    ... $(elapsed) so far: $(last_line)"
    next=$((next + interval))
  fi
done
status=0
wait "$pid" || status=$?
trap - INT TERM HUP

if [ "$status" -eq 0 ]; then
  echo "    done in $(elapsed)"
  exit 0
fi
{
  echo "    FAILED after $(elapsed) (exit status $status): $what"
  echo "    --- last 20 lines of $log ---"
  tail -n 20 "$log" | sed 's/^/    | /'
  echo "    --- full log: $log"
  if [ -n "$hint" ]; then echo "    next: $hint"; fi
} >&2
exit "$status"
