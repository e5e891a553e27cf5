#!/usr/bin/env bash
# The benchmarks, in one command: criterion micro-benchmarks of the core (the `runner`
# group, the `scale` group of 1 to 1,000 checks, the formats), then the load scenarios of
# the smoketest-bench package side by side, the round trips of a Postgres check counted on
# the wire, and instruction counts and profiles under callgrind; then BENCHMARKS.md written
# from what was measured.
#
#   scripts/bench.sh            # everything (about 5 minutes on 2 cores, build included)
#   scripts/bench.sh --quick    # seconds per scenario: checks the harness, not the code
#
# Postgres: SMOKETEST_BENCH_POSTGRES_URL, else SMOKETEST_TEST_POSTGRES_URL, else
# postgres://postgres@127.0.0.1:5432/test. pgbench comes from Debian's postgresql-client.
# Extra arguments go to `smoketest-bench run` (e.g. --no-postgres, --out FILE).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
target=${CARGO_TARGET_DIR:-$root/target}
export CARGO_TARGET_DIR=$target

quick=0
for arg in "$@"; do
    [[ $arg == --quick ]] && quick=1
done

# pgbench (the database's own limit) and valgrind (instruction counts), from Debian.
missing=()
if ! command -v pgbench >/dev/null 2>&1 || ! pgbench --version >/dev/null 2>&1; then
    missing+=(postgresql-client)
fi
if ! command -v valgrind >/dev/null 2>&1 || ! command -v callgrind_control >/dev/null 2>&1; then
    missing+=(valgrind)
fi
if ((${#missing[@]})); then
    if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
        echo "== installing ${missing[*]}"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "warning: ${missing[*]} missing and cannot be installed; those figures will be skipped" >&2
    fi
fi

# 500 connections on each side of loopback need file descriptors.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "== criterion: cargo bench -p smoketest-core"
rm -rf "$target/criterion"
if [[ $quick == 1 ]]; then
    criterion_args=(--warm-up-time 0.2 --measurement-time 0.5 --sample-size 10)
else
    criterion_args=(--warm-up-time 0.5 --measurement-time 2)
fi
cargo bench -q -p smoketest-core --bench runner --bench formats -- "${criterion_args[@]}"

echo "== load scenarios: smoketest-bench (release build)"
cargo build -q --release -p smoketest-bench
"$target/release/smoketest-bench" run --out "$root/BENCHMARKS.md" --criterion "$target/criterion" "$@"
