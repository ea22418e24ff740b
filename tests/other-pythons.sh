#!/usr/bin/env bash
# Run tests/python-in-container.sh for each Debian suite given, side by side (each
# container run is mostly waiting on one core and the network), then print each run's
# output in order. Exits non-zero when any run failed.
#   tests/other-pythons.sh trixie testing
set -uo pipefail
cd "$(dirname "$0")/.."
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
pids=()
for suite in "$@"; do
  tests/python-in-container.sh "$suite" >"$logs/$suite.log" 2>&1 &
  pids+=("$!")
done
status=0
for index in "${!pids[@]}"; do
  wait "${pids[$index]}" || status=1
done
for suite in "$@"; do
  echo "=== Python of Debian $suite ==="
  cat "$logs/$suite.log"
done
exit "$status"
