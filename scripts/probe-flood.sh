#!/usr/bin/env bash
# Do Kubernetes probes survive a flood of the deploy gate?
#
# Starts the example service (examples/axum-sqlite) fresh — on Postgres when PG_URL is set,
# else on its embedded SQLite — floods /smoketest with FLOOD_CONNECTIONS anonymous
# connections for FLOOD_SECONDS (wrk), and meanwhile polls /livez and /readyz the way
# kubelet does: a new connection every PERIOD seconds, a 2 s timeout. Prints every probe
# answer's status and a summary; exits 1 if any probe answer was not 200.
#
# Bounded: fixed durations, loopback only.
#
# Usage: scripts/probe-flood.sh
# Environment: PG_URL (e.g. postgres://postgres@127.0.0.1:5432/test), FLOOD_SECONDS [10],
#   FLOOD_CONNECTIONS [500], PERIOD [0.6], PORT [3918], PROFILE [dev]
set -euo pipefail
cd "$(dirname "$0")/.."

FLOOD_SECONDS=${FLOOD_SECONDS:-10}
FLOOD_CONNECTIONS=${FLOOD_CONNECTIONS:-500}
PERIOD=${PERIOD:-0.6}
PORT=${PORT:-3918}
PROFILE=${PROFILE:-dev}
ADDR=127.0.0.1:$PORT
if (( FLOOD_SECONDS > 120 || FLOOD_CONNECTIONS > 2000 )); then
  echo "refusing: at most 120 s and 2000 connections" >&2
  exit 2
fi
if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi

cargo build -q --profile "$PROFILE" -p smoketest-example-axum
dir=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
bin=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/$dir/smoketest-example-axum
work=$(mktemp -d)
(
  cd "$work"
  if [[ -n ${PG_URL:-} ]]; then export DATABASE_URL=$PG_URL; fi
  SMOKETEST_EXAMPLE_ADDR=$ADDR exec "$bin"
) >"$work/service.log" 2>&1 &
service=$!
trap 'kill $service 2>/dev/null || true; wait $service 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fs -o /dev/null "http://$ADDR/livez" && break; sleep 0.1; done

wrk -t2 -c"$FLOOD_CONNECTIONS" -d"${FLOOD_SECONDS}s" --timeout 5s "http://$ADDR/smoketest" \
  >"$work/wrk.txt" 2>&1 &
flood=$!
sleep 0.3
declare -A ok=() total=()
while kill -0 "$flood" 2>/dev/null; do
  for path in /livez /readyz; do
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$ADDR$path" || true)
    echo "$(date +%T.%3N) $path $code"
    total[$path]=$(( ${total[$path]:-0} + 1 ))
    [[ $code == 200 ]] && ok[$path]=$(( ${ok[$path]:-0} + 1 ))
  done
  sleep "$PERIOD"
done
wait "$flood" || true
echo
grep -E "Requests/sec|requests in|Non-2xx" "$work/wrk.txt" || cat "$work/wrk.txt"
bad=0
for path in /livez /readyz; do
  echo "$path: ${ok[$path]:-0}/${total[$path]:-0} answered 200"
  (( ${ok[$path]:-0} == ${total[$path]:-0} )) || bad=1
done
exit $bad
