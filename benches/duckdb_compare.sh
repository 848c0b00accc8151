#!/usr/bin/env bash
# `exposure analyze` against DuckDB's NDJSON reader + GROUP BY, on the same
# generated files (goal: >= 1 M records/s for JSON on one core; DuckDB
# on one thread is the yardstick; see docs/benchmarks.md#goals-and-results).
#
#   benches/duckdb_compare.sh            # 1 M records per format, 5 runs each
#   RECORDS=200000 RUNS=3 benches/duckdb_compare.sh
#   INPUT=capture.json FORMAT=goflow2-json ASSETS=198.51.100.0/24 \
#       benches/duckdb_compare.sh        # your own file instead (FORMAT:
#                                        # goflow2-json, pmacct-json or
#                                        # goflow2-pb; DuckDB reads only JSON)
#
# exposure: `exposure analyze` on one core (taskset -c 0), then on every
# core (it decodes on one thread per core), timed by hyperfine
# (or from Python when hyperfine is missing; median of RUNS after one
# warm-up either way), whole process: read the
# file, split it into records, decode, classify, aggregate, print the full
# answer.
#
# DuckDB: the closest equivalent aggregate, in a Python process, timed
# around the query only (median of RUNS after one warm-up):
#   goflow2-json: SELECT dst_addr, dst_port, proto, sum(bytes), count(*)
#                 FROM read_json(FILE, format='newline_delimited') GROUP BY ALL
#   pmacct-json:  the same with ip_dst, port_dst, ip_proto
# It groups every flow by its destination and sums bytes; exposure does more
# per flow (direction, which side serves, evidence, hour buckets), so the
# comparison flatters DuckDB a little. Run with `SET threads=1` and with the
# default (one thread per core).
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS=${RECORDS:-1000000}
ENDPOINTS=${ENDPOINTS:-10000}
RUNS=${RUNS:-5}
DATA=target/bench-data
VENV=target/bench-venv
ASSETS=${ASSETS:-203.0.113.0/24,2001:db8:100::/48}
INPUT=${INPUT:-}
FORMAT=${FORMAT:-}

if [ -n "$INPUT" ]; then
    case "$FORMAT" in
    goflow2-json | pmacct-json | goflow2-pb) ;;
    *)
        echo "benches/duckdb_compare.sh: INPUT needs FORMAT=goflow2-json, pmacct-json or goflow2-pb (got '$FORMAT')" >&2
        exit 2
        ;;
    esac
    case "$INPUT" in
    *[[:space:]]*)
        echo "benches/duckdb_compare.sh: INPUT '$INPUT' holds a space; give a path without one (the timed command is split on spaces)" >&2
        exit 2
        ;;
    esac
    if [ ! -r "$INPUT" ]; then
        echo "benches/duckdb_compare.sh: INPUT $INPUT is not a readable file" >&2
        exit 2
    fi
    FORMATS=("$FORMAT")
else
    FORMATS=(goflow2-pb goflow2-json pmacct-json)
fi

cargo build --release --bin exposure --example gen_flows
mkdir -p "$DATA"

file_for() {
    if [ -n "$INPUT" ]; then
        echo "$INPUT"
        return
    fi
    case "$1" in
        goflow2-pb) echo "$DATA/flows-$1-$RECORDS.bin" ;;
        *) echo "$DATA/flows-$1-$RECORDS.json" ;;
    esac
}

if [ -n "$INPUT" ]; then
    # The rate's numerator: the records exposure reads in the file (JSON
    # lines or protobuf messages), from its own summary line.
    RECORDS=$(target/release/exposure analyze --assets "$ASSETS" --format "$FORMAT" "$INPUT" \
        2>&1 >/dev/null | sed -n 's/^records read \([0-9]*\),.*/\1/p')
    if [ -z "$RECORDS" ] || [ "$RECORDS" -eq 0 ]; then
        echo "benches/duckdb_compare.sh: exposure read no records in $INPUT as $FORMAT" >&2
        exit 2
    fi
    echo "input $INPUT: $(du -h "$INPUT" | cut -f1), $RECORDS records, format $FORMAT, assets $ASSETS"
else
    for format in "${FORMATS[@]}"; do
        file=$(file_for "$format")
        target/release/examples/gen_flows --format "$format" --records "$RECORDS" \
            --seed 1 --endpoints "$ENDPOINTS" >"$file" 2>/dev/null
        echo "generated $file: $(du -h "$file" | cut -f1)"
    done
fi

declare -A RATE RATE_ALL
# time_exposure LABEL PREFIX: the median of RUNS of `exposure analyze` on
# every file, started through PREFIX (`taskset -c 0` for one core); the
# rates go into RATE (one core) or RATE_ALL (every core).
time_exposure() {
    local label=$1 prefix=$2
    echo
    echo "== exposure analyze, $label =="
    for format in "${FORMATS[@]}"; do
        file=$(file_for "$format")
        cmd="${prefix}target/release/exposure analyze --assets $ASSETS --format $format $file"
        if command -v hyperfine >/dev/null; then
            hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$DATA/analyze-$format.json" "$cmd"
            secs=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['results'][0]['median'])" \
                "$DATA/analyze-$format.json")
        else
            # Without hyperfine: the same count of runs after one warm-up, timed
            # from Python, the median kept.
            secs=$(python3 - "$RUNS" $cmd <<'PY'
import statistics, subprocess, sys, time
runs, cmd = int(sys.argv[1]), sys.argv[2:]
subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
times = []
for _ in range(runs):
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    times.append(time.perf_counter() - start)
print(f"{statistics.median(times):.3f}")
PY
)
        fi
        rate=$(python3 -c "print(f'{$RECORDS / $secs / 1e6:.2f}')")
        if [ -n "$prefix" ]; then RATE[$format]=$rate; else RATE_ALL[$format]=$rate; fi
        echo "exposure $format ($label): median ${secs} s, ${rate} M records/s"
    done
}
time_exposure "one core" "taskset -c 0 "
time_exposure "every core ($(nproc))" ""

# DuckDB reads the JSON files only.
JSON_INPUTS=()
for format in "${FORMATS[@]}"; do
    case "$format" in
    goflow2-json | pmacct-json) JSON_INPUTS+=("$format=$(file_for "$format")") ;;
    esac
done

: >"$DATA/duckdb.txt"
if [ ${#JSON_INPUTS[@]} -gt 0 ]; then
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet duckdb
    fi
    echo "duckdb $("$VENV/bin/python" -c 'import duckdb; print(duckdb.__version__)')"
    echo
    echo "== DuckDB read_json + GROUP BY =="
    "$VENV/bin/python" - "$RECORDS" "$RUNS" "${JSON_INPUTS[@]}" >"$DATA/duckdb.txt" <<'EOF'
import statistics
import sys
import time

import duckdb

records, runs = int(sys.argv[1]), int(sys.argv[2])
keys = {
    "goflow2-json": "dst_addr, dst_port, proto",
    "pmacct-json": "ip_dst, port_dst, ip_proto",
}
queries = {}
for arg in sys.argv[3:]:
    fmt, path = arg.split("=", 1)
    queries[fmt] = (path, keys[fmt])
for threads in ("1", "default"):
    con = duckdb.connect()
    if threads == "1":
        con.execute("SET threads=1")
    n = con.execute("SELECT current_setting('threads')").fetchone()[0]
    for fmt, (path, group_keys) in queries.items():
        sql = (
            f"SELECT {group_keys}, sum(bytes) AS bytes, count(*) AS flows "
            f"FROM read_json('{path}', format='newline_delimited') GROUP BY ALL"
        )
        rows = con.execute(sql).fetchall()  # warm-up: page cache, schema sniffing
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            con.execute(sql).fetchall()
            times.append(time.perf_counter() - start)
        med = statistics.median(times)
        print(f"{fmt} {n} {med:.3f} {records / med / 1e6:.2f} {len(rows)}")
EOF
    while read -r fmt threads secs rate groups; do
        echo "duckdb $fmt threads=$threads: median ${secs} s, ${rate} M records/s ($groups groups)"
    done <"$DATA/duckdb.txt"
fi

echo
echo "== summary, M records/s ($RECORDS records, $(nproc) cores) =="
printf '%-14s %12s %12s %12s %12s\n' format exposure-1c "exposure-$(nproc)c" duckdb-1t "duckdb-$(nproc)t"
for format in "${FORMATS[@]}"; do
    one=$(awk -v f="$format" '$1 == f && $2 == 1 { print $4 }' "$DATA/duckdb.txt")
    all=$(awk -v f="$format" '$1 == f && $2 != 1 { print $4 }' "$DATA/duckdb.txt")
    printf '%-14s %12s %12s %12s %12s\n' "$format" "${RATE[$format]}" "${RATE_ALL[$format]}" "${one:--}" "${all:--}"
done
