#!/usr/bin/env bash
# Runs every benchmark of docs/benchmarks.md in order, one after another, and
# writes what each prints to one log: target/bench-logs/<UTC time>.log.
#
#   benches/harness.sh              # every goal of docs/benchmarks.md (about 25 minutes on 2 cores)
#   benches/harness.sh kafka query  # only the named parts, in the order given
#
# Parts: ingest ingest-1m query metrics scaling api kafka memory scan duckdb.
# `kafka` needs tansu (.ci/install-tools); `duckdb` installs DuckDB into
# target/bench-venv. Run it on a quiet machine: the load average is logged
# before every part, and each part prints its own method and settings.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL=(ingest ingest-1m query metrics scaling api kafka memory scan duckdb)
PARTS=("$@")
if [ ${#PARTS[@]} -eq 0 ]; then
    PARTS=("${ALL[@]}")
fi
for part in "${PARTS[@]}"; do
    case " ${ALL[*]} " in
    *" $part "*) ;;
    *)
        echo "benches/harness.sh: unknown part '$part' (parts: ${ALL[*]})" >&2
        exit 2
        ;;
    esac
done

echo "building the benches and examples (release)"
cargo bench --no-run --quiet
cargo build --release --examples --quiet

mkdir -p target/bench-logs
LOG="target/bench-logs/$(date -u +%Y%m%dT%H%M%SZ).log"
EX=target/release/examples

{
    echo "# benches/harness.sh ${PARTS[*]}"
    echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)')"
    echo "started $(date -u +%FT%TZ); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
    echo "rustc $(rustc --version | cut -d' ' -f2)"
} | tee "$LOG"

run() {
    echo | tee -a "$LOG"
    echo "## $* ($(date -u +%T), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$LOG"
    "$@" 2>&1 | tee -a "$LOG"
}

for part in "${PARTS[@]}"; do
    case "$part" in
    ingest) run cargo bench --quiet --bench ingest ;;
    ingest-1m) run env BENCH_RECORDS=1000000 cargo bench --quiet --bench ingest -- ingest/ ;;
    query) run cargo bench --quiet --bench query ;;
    metrics) run cargo bench --quiet --bench metrics ;;
    scaling)
        run "$EX/scaling"
        run "$EX/scaling" --sizes 10000 --calls 10 --fresh
        run "$EX/scaling" --sizes 10000 --calls 10 --where-decoded
        ;;
    api) run "$EX/bench_api" ;;
    kafka)
        run "$EX/bench_kafka"
        run "$EX/bench_kafka" --pipeline-only --samples 0
        run "$EX/bench_kafka" --warm --samples 0
        ;;
    memory)
        for days in 1 7 30; do
            run "$EX/memory" --endpoints 100000 --days "$days"
        done
        run "$EX/memory" --endpoints 10000
        run "$EX/memory" --endpoints 300000
        ;;
    scan) run "$EX/scan_flood" --addresses 256 --max-pending 1000000 --sources 5000000 ;;
    duckdb) run benches/duckdb_compare.sh ;;
    esac
done

echo | tee -a "$LOG"
echo "finished $(date -u +%FT%TZ); log: $LOG" | tee -a "$LOG"
