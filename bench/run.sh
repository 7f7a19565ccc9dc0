#!/usr/bin/env bash
# The replay benchmark: generates a realistic CloudTrail corpus once, replays it with 1 and with
# 2 threads (gzip → normalised → ZSTD Parquet), times DuckDB doing the equivalent job on the
# same files, and prints one report.
#
# Usage: bash bench/run.sh [EVENTS]          (default 500000)
# Environment: BENCH_DIR (default /tmp/auditlake-bench) holds the corpus and the outputs;
#              BENCH_THREADS (default "1 2") the thread counts to measure;
#              BENCH_DUCKDB=0 skips the DuckDB reference run;
#              BENCH_ICEBERG=0 skips the 1-thread replay into Iceberg tables;
#              BENCH_HORIZON (default 1000d) the dedup horizon of one more 1-thread run that
#              reaches the corpus's dates (`off` skips it).
set -euo pipefail
cd "$(dirname "$0")/.."

events="${1:-500000}"
dir="${BENCH_DIR:-/tmp/auditlake-bench}"
threads_list="${BENCH_THREADS:-1 2}"
corpus="$dir/corpus-$events"
mkdir -p "$dir"

venv="${AUDITLAKE_VENV:-.venv}"
if ! "$venv/bin/python" -c 'import duckdb' 2>/dev/null; then
    echo "== installing duckdb into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check duckdb
fi
python="$PWD/$venv/bin/python"

if [ ! -f "$corpus.manifest.json" ]; then
    rm -rf "$corpus"
    echo "== generating $events events into $corpus"
    python3 bench/gen_cloudtrail.py --out "$corpus" --events "$events"
fi
read -r n_events n_files raw_bytes gz_bytes < <("$python" -c '
import json, sys
m = json.load(open(sys.argv[1]))
print(m["events"], m["files"], m["uncompressed_bytes"], m["compressed_bytes"])' "$corpus.manifest.json")

echo "== cargo build --release"
cargo build --release --quiet
bin="$PWD/target/release/auditlake"

# Runs a command under GNU time; prints "wall_seconds peak_rss_kib cpu_seconds" (user + system).
# Events per CPU-second is the per-core figure; it holds even when other work shares the machine.
measure() {
    local log="$dir/time.log"
    /usr/bin/time -f '%e %M %U %S' -o "$log" "$@" >"$dir/last-output.log" 2>&1 || {
        echo "command failed: $*" >&2
        cat "$dir/last-output.log" >&2
        return 1
    }
    awk '{ printf "%s %s %.2f\n", $1, $2, $3 + $4 }' "$log"
}

# One replay of the corpus into a fresh lake; appends its line to the report.
replay_run() {
    local label="$1" out="$2"
    shift 2
    rm -rf "$out"
    sync
    read -r secs rss cpu < <(measure "$bin" replay "$corpus" --out "$out" "$@")
    written=$(grep -o '[0-9]* events written' "$dir/last-output.log" | cut -d' ' -f1)
    if [ "$written" != "$n_events" ]; then
        echo "auditlake wrote $written events, expected $n_events" >&2
        exit 1
    fi
    lake_mb=$(du -sm "$out" | cut -f1)
    report+=("$(awk -v n="$n_events" -v raw="$raw_bytes" -v s="$secs" -v r="$rss" -v t="$label" -v l="$lake_mb" -v c="$cpu" \
        'BEGIN { printf "auditlake replay  %s  %7.2f s  %8.0f events/s  %6.1f MB/s uncompressed  %8.0f events/CPU-s  peak RSS %4.0f MB  lake %d MB", t, s, n/s, raw/1e6/s, n/c, r/1024, l }')")
}

report=()
for t in $threads_list; do
    replay_run "threads=$t" "$dir/lake-t$t" --threads "$t"
done
# The corpus is from 2024, outside the default dedup horizon (48 h of now): a horizon that
# reaches it makes every event's key be looked up and committed (BENCH_HORIZON=off skips this).
horizon="${BENCH_HORIZON:-1000d}"
if [ "$horizon" != off ]; then
    replay_run "threads=1 dedup-horizon=$horizon" "$dir/lake-horizon" --threads 1 --dedup-horizon "$horizon"
fi

# The same replay into Iceberg tables (a SQLite catalog in the lake; BENCH_ICEBERG=0 skips it):
# the files of the Hive run, with microsecond timestamps, plus one append per table per batch.
if [ "${BENCH_ICEBERG:-1}" != 0 ]; then
    replay_run "threads=1 format=iceberg" "$dir/lake-iceberg" --threads 1 --format iceberg
fi

if [ "${BENCH_DUCKDB:-1}" != 0 ]; then
    for t in $threads_list; do
        out="$dir/duckdb-t$t.parquet"
        rm -f "$out"
        sync
        read -r secs rss cpu < <(measure "$python" bench/duckdb_equivalent.py --threads "$t" "$corpus" "$out")
        report+=("$(awk -v n="$n_events" -v raw="$raw_bytes" -v s="$secs" -v r="$rss" -v t="$t" -v c="$cpu" \
            'BEGIN { printf "duckdb equivalent threads=%s  %7.2f s  %8.0f events/s  %6.1f MB/s uncompressed  %8.0f events/CPU-s  peak RSS %4.0f MB", t, s, n/s, raw/1e6/s, n/c, r/1024 }')")
    done
fi

echo
echo "== report: $n_events events in $n_files files, $((gz_bytes / 1000000)) MB gzip, $((raw_bytes / 1000000)) MB JSON"
echo "   machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB"
printf '   %s\n' "${report[@]}"
echo "   load average when done: $(cut -d' ' -f1-3 /proc/loadavg) (wall-clock figures need a quiet machine; events/CPU-s do not)"
