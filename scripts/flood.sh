#!/usr/bin/env bash
# Load test: does an anonymous flood of /smoketest hurt the service or its database?
#
# Runs the example service (examples/axum-sqlite) on Postgres, on loopback only, then:
#   1. baseline: a client uses the service's own API (GET /orders) alone for API_SECONDS;
#   2. flood:    FLOOD_CONNECTIONS connections hammer /smoketest for FLOOD_SECONDS while
#                the same API client runs again;
#   3. control:  the same flood on a route that does nothing (a 404), to separate what any
#                flood costs on this machine from what the smoke endpoint costs.
# It reports the API's latency in both phases, how many smoke-check runs the flood caused
# (counted in the service's log, one line per executed check), and how many transactions
# the database started (pg_stat_database.xact_commit + xact_rollback of a database created
# for this run alone, so nothing else on the server is counted).
#
# Bounded: fixed durations, every step under `timeout`, loopback addresses only.
#
# Usage: scripts/flood.sh
# Environment (defaults in brackets):
#   PG_URL             server to use [postgres://postgres@127.0.0.1:5432]
#   FLOOD_SECONDS      [30]   FLOOD_CONNECTIONS [500]   API_SECONDS [30]
#   API_CONNECTIONS    [4]    PORT [3917]               PROFILE [release, or dev]
#   CARGO_TARGET_DIR   as usual
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
FLOOD_SECONDS=${FLOOD_SECONDS:-30}
FLOOD_CONNECTIONS=${FLOOD_CONNECTIONS:-500}
API_SECONDS=${API_SECONDS:-30}
API_CONNECTIONS=${API_CONNECTIONS:-4}
PORT=${PORT:-3917}
PROFILE=${PROFILE:-release}
DB=smoketest_flood_$$
ADDR=127.0.0.1:$PORT
WORK=$(mktemp -d)

case "$PG_URL" in
  postgres://*@127.0.0.1:*|postgres://*@localhost:*|postgres://127.0.0.1*|postgres://localhost*) ;;
  *) echo "PG_URL must point at loopback (127.0.0.1 or localhost): $PG_URL" >&2; exit 2 ;;
esac
if (( FLOOD_SECONDS > 120 || API_SECONDS > 120 || FLOOD_CONNECTIONS > 2000 )); then
  echo "refusing: durations are capped at 120 s and connections at 2000" >&2
  exit 2
fi

log() { printf '\n=== %s\n' "$*" >&2; }

# --- what the script needs ---------------------------------------------------------------
if ! command -v wrk >/dev/null; then
  log "installing wrk"
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
for tool in psql pg_isready curl; do
  command -v "$tool" >/dev/null || { echo "$tool is required (apt-get install postgresql-client curl)" >&2; exit 2; }
done
timeout 10 pg_isready -d "$PG_URL/postgres" >/dev/null || { echo "no Postgres at $PG_URL" >&2; exit 2; }

SERVICE_PID=
cleanup() {
  if [[ -n $SERVICE_PID ]]; then kill "$SERVICE_PID" 2>/dev/null || true; wait "$SERVICE_PID" 2>/dev/null || true; fi
  psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log "building the example ($PROFILE)"
if [[ $PROFILE == release ]]; then
  timeout 1800 cargo build -q --release -p smoketest-example-axum
else
  timeout 1800 cargo build -q -p smoketest-example-axum
fi
BIN=${CARGO_TARGET_DIR:-target}/$([[ $PROFILE == release ]] && echo release || echo debug)/smoketest-example-axum

log "database $DB"
psql -q "$PG_URL/postgres" -c "CREATE DATABASE $DB" >/dev/null

log "starting the example on $ADDR"
# Debug logs of smoketest_core: one line per executed check, which is how runs are counted.
DATABASE_URL="$PG_URL/$DB" SMOKETEST_EXAMPLE_ADDR=$ADDR \
  RUST_LOG=warn,smoketest_core=debug RUST_LOG_STYLE=never NO_COLOR=1 \
  "$BIN" >"$WORK/service.log" 2>&1 &
SERVICE_PID=$!
for _ in $(seq 1 100); do
  curl -fsS "http://$ADDR/orders" >/dev/null 2>&1 && break
  kill -0 "$SERVICE_PID" 2>/dev/null || { cat "$WORK/service.log" >&2; exit 1; }
  sleep 0.1
done
for i in 1 2 3 4 5; do
  curl -fsS -X POST -H 'content-type: application/json' \
    -d "{\"item\":\"widget-$i\",\"quantity\":$i}" "http://$ADDR/orders" >/dev/null
done

stats() { # commits rollbacks
  psql -qAt "$PG_URL/postgres" -c \
    "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = '$DB'"
}
check_lines() { grep -c 'smoke check finished\|smoke check failed' "$WORK/service.log" || true; }
# Postgres (15+) publishes a busy backend's counters at most once a second and an idle
# one's within 10 s; the pool's connections stay open, so wait that out.
settle() { sleep 11; }

api() { # seconds → wrk output
  timeout $(( $1 + 30 )) wrk -t1 -c"$API_CONNECTIONS" -d"${1}s" --latency --timeout 10s \
    "http://$ADDR/orders"
}

# --- 1. baseline -------------------------------------------------------------------------
log "baseline: the API alone for ${API_SECONDS}s"
settle
read -r C0 R0 <<<"$(stats | tr '|' ' ')"
api "$API_SECONDS" >"$WORK/api-baseline.txt"
settle
read -r C1 R1 <<<"$(stats | tr '|' ' ')"
L1=$(check_lines)

# --- 2. flood ----------------------------------------------------------------------------
log "flood: $FLOOD_CONNECTIONS connections on /smoketest for ${FLOOD_SECONDS}s, API client alongside"
timeout $(( FLOOD_SECONDS + 30 )) wrk -t2 -c"$FLOOD_CONNECTIONS" -d"${FLOOD_SECONDS}s" --latency \
  --timeout 30s "http://$ADDR/smoketest" >"$WORK/flood.txt" &
FLOOD_PID=$!
api "$FLOOD_SECONDS" >"$WORK/api-flood.txt"
wait "$FLOOD_PID"
settle
read -r C2 R2 <<<"$(stats | tr '|' ' ')"
L2=$(check_lines)

# --- 3. control: the same flood on a route that does nothing -----------------------------
# On a small machine the load generator and the service share the CPU, so any flood slows
# the API. Flooding a trivial route (axum's 404) shows how much of the slowdown is HTTP
# itself and how much is the smoke endpoint.
log "control: the same flood on a route that does nothing (404), API client alongside"
timeout $(( FLOOD_SECONDS + 30 )) wrk -t2 -c"$FLOOD_CONNECTIONS" -d"${FLOOD_SECONDS}s" --latency \
  --timeout 30s "http://$ADDR/no-such-route" >"$WORK/control.txt" &
CONTROL_PID=$!
api "$FLOOD_SECONDS" >"$WORK/api-control.txt"
wait "$CONTROL_PID"

# --- report ------------------------------------------------------------------------------
latency() { # file → "p50 p90 p99 req/s"
  awk '/^ +50%/{p50=$2} /^ +90%/{p90=$2} /^ +99%/{p99=$2} /^Requests\/sec/{rps=$2}
       END{printf "p50 %s  p90 %s  p99 %s  (%s req/s)", p50, p90, p99, rps}' "$1"
}
requests() { awk '/requests in/{print $1}' "$1"; }
non2xx() { awk '/Non-2xx/{n=$NF} END{print n+0}' "$1"; }

NCHECKS=$(grep -o '[0-9]\+ smoke checks' "$WORK/service.log" | head -1 | cut -d' ' -f1)
FLOOD_CHECK_EXECUTIONS=$(( L2 - L1 ))
API_BASE=$(requests "$WORK/api-baseline.txt")
API_FLOOD=$(requests "$WORK/api-flood.txt")

cat <<EOF

smoketest flood test ($(date -u +%FT%TZ), $(nproc) cores, profile $PROFILE)
service: examples/axum-sqlite on Postgres database $DB, $NCHECKS smoke checks, default limits

API (GET /orders, $API_CONNECTIONS connections)
  alone, ${API_SECONDS}s:         $(latency "$WORK/api-baseline.txt")
  during the flood, ${FLOOD_SECONDS}s:  $(latency "$WORK/api-flood.txt")
  during the control, ${FLOOD_SECONDS}s: $(latency "$WORK/api-control.txt")

flood (GET /smoketest, $FLOOD_CONNECTIONS connections, ${FLOOD_SECONDS}s, anonymous)
  requests answered:        $(requests "$WORK/flood.txt")  ($(awk '/^Requests\/sec/{print $2}' "$WORK/flood.txt") req/s, non-2xx: $(non2xx "$WORK/flood.txt"))
  latency:                  $(latency "$WORK/flood.txt")
  control flood (404):      $(requests "$WORK/control.txt") requests, $(latency "$WORK/control.txt")
  smoke-check executions:   $FLOOD_CHECK_EXECUTIONS  (= $(( FLOOD_CHECK_EXECUTIONS / (NCHECKS > 0 ? NCHECKS : 1) )) runs of $NCHECKS checks)

database transactions (pg_stat_database, xact_commit + xact_rollback)
  baseline phase:           $(( C1 - C0 + R1 - R0 ))  (commits $(( C1 - C0 )), rollbacks $(( R1 - R0 )); API requests $API_BASE)
  flood phase:              $(( C2 - C1 + R2 - R1 ))  (commits $(( C2 - C1 )), rollbacks $(( R2 - R1 )); API requests $API_FLOOD)
  beyond the API's own:     baseline $(( C1 - C0 + R1 - R0 - API_BASE )), flood $(( C2 - C1 + R2 - R1 - API_FLOOD ))
                            (the baseline's share is background work: autovacuum, pool set-up)
EOF
