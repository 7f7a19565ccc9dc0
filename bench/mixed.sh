#!/usr/bin/env bash
# The mixed-load benchmark: one `auditlake run --config <dir>` with three pipelines busy at once
# (SQS + S3 on moto, Kafka on tansu, an inbox directory), at a memory limit, reporting events per
# pipeline, wall time, events/s and peak RSS against the limit.
#
# Usage: bash bench/mixed.sh [S3_EVENTS] [KAFKA_MESSAGES] [INBOX_EVENTS]
#        (defaults 200000 200000 200000)
# Environment: BENCH_DIR (default /tmp/auditlake-bench) holds the corpora and the outputs;
#              BENCH_LIMITS (default "512") the --memory-limit-mib values to run, e.g. "512 192";
#              AUDITLAKE_PYTHON (python with boto3 and duckdb, default .venv/bin/python),
#              AUDITLAKE_MOTO_SERVER, AUDITLAKE_TANSU: the emulators (as for the tests).
#
# Everything is loaded before the daemon starts, so all three sources have work from the first
# second; the daemon is stopped (SIGTERM) once the metrics show every event written, then the
# lakes are counted with DuckDB (count = distinct ids = expected, or the run fails).
set -euo pipefail
cd "$(dirname "$0")/.."

s3_events="${1:-200000}"
kafka_messages="${2:-200000}"
inbox_events="${3:-200000}"
dir="${BENCH_DIR:-/tmp/auditlake-bench}"
limits="${BENCH_LIMITS:-512}"
python="${AUDITLAKE_PYTHON:-$PWD/.venv/bin/python}"
moto_server="${AUDITLAKE_MOTO_SERVER:-$PWD/.venv/bin/moto_server}"
tansu="${AUDITLAKE_TANSU:-$HOME/.cargo/bin/tansu}"
mkdir -p "$dir"

s3_corpus="$dir/mixed-s3-$s3_events"
inbox_corpus="$dir/mixed-inbox-$inbox_events"
[ -f "$s3_corpus.manifest.json" ] ||
    { rm -rf "$s3_corpus"; python3 bench/gen_cloudtrail.py --out "$s3_corpus" --events "$s3_events" --seed 21; }
[ -f "$inbox_corpus.manifest.json" ] ||
    { rm -rf "$inbox_corpus"; python3 bench/gen_cloudtrail.py --out "$inbox_corpus" --events "$inbox_events" --seed 22; }

echo "== cargo build --release (auditlake, examples/kafka_load)"
cargo build --release --quiet --bin auditlake --example kafka_load
bin="$PWD/target/release/auditlake"
loader="$PWD/target/release/examples/kafka_load"

free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 600); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
metric() { awk -v s="$1" '$1 == s { v = $2 } END { print (v == "" ? 0 : v) }' "$run/metrics.txt"; }
written() { awk -v p="pipeline=\"$1\"" 'index($1, "auditlake_events_written_total{") == 1 && index($1, p) { n += $2 } END { printf "%d", n }' "$run/metrics.txt"; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

report=()
for limit in $limits; do
    run="$dir/mixed-run-$limit"
    rm -rf "$run"
    mkdir -p "$run/pipelines"
    echo "== limit $limit MiB: starting moto and tansu, loading the sources"
    moto_port=$(free_port)
    "$moto_server" -H 127.0.0.1 -p "$moto_port" >"$run/moto.log" 2>&1 &
    moto_pid=$!
    pids+=("$moto_pid")
    tansu_port=$(free_port)
    "$tansu" broker --listener-url "tcp://127.0.0.1:$tansu_port" --advertised-listener-url "tcp://127.0.0.1:$tansu_port" \
        --storage-engine memory://tansu/ >"$run/tansu.log" 2>&1 &
    tansu_pid=$!
    pids+=("$tansu_pid")
    wait_port "$moto_port"
    wait_port "$tansu_port"
    endpoint="http://127.0.0.1:$moto_port"

    queue_url=$(AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "$python" - "$endpoint" "$s3_corpus" <<'PY'
import json, os, sys
from concurrent.futures import ThreadPoolExecutor
import boto3
endpoint, corpus = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=endpoint, region_name="us-east-1")
s3, sqs = boto3.client("s3", **kw), boto3.client("sqs", **kw)
s3.create_bucket(Bucket="trail")
url = sqs.create_queue(QueueName="trail-events", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
s3.put_bucket_notification_configuration(Bucket="trail", NotificationConfiguration={
    "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
files = [os.path.join(d, f) for d, _, fs in os.walk(corpus) for f in fs if f.endswith(".json.gz")]
def put(path):
    with open(path, "rb") as f:
        s3.put_object(Bucket="trail", Key=os.path.relpath(path, corpus), Body=f.read())
with ThreadPoolExecutor(8) as pool:
    list(pool.map(put, files))
print(url)
PY
)
    kafka_bytes=$("$loader" "127.0.0.1:$tansu_port" audit 6 "$kafka_messages")

    lake() { echo "$run/lake-$1"; }
    common_tail() { printf '[sink]\npath = "%s"\n[flush]\nmax_age_secs = 5\n' "$(lake "$1")"; }
    { printf 'name = "trail"\n[source]\ntype = "sqs_s3"\nqueue_url = "%s"\nregion = "us-east-1"\nendpoint_url = "%s"\nwait_time_secs = 1\n' "$queue_url" "$endpoint"
      common_tail trail; } >"$run/pipelines/trail.toml"
    { printf 'name = "cls"\n[source]\ntype = "kafka"\nbootstrap_servers = "127.0.0.1:%s"\ntopic = "audit"\ngroup_id = "bench"\nstart_position = "earliest"\n' "$tansu_port"
      common_tail cls; } >"$run/pipelines/cls.toml"
    { printf 'name = "inbox"\n[source]\ntype = "files"\npath = "%s"\npoll_interval_secs = 1\n' "$inbox_corpus"
      common_tail inbox; } >"$run/pipelines/inbox.toml"

    read -r s3_expected < <("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["events"])' "$s3_corpus.manifest.json")
    read -r inbox_expected < <("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["events"])' "$inbox_corpus.manifest.json")
    total=$((s3_expected + kafka_messages + inbox_expected))

    metrics_port=$(free_port)
    echo "== limit $limit MiB: auditlake run, $s3_expected S3 + $kafka_messages Kafka + $inbox_expected inbox events"
    start=$(date +%s.%N)
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true \
        AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent RUST_LOG=warn \
        "$bin" run --config "$run/pipelines" --metrics-listen "127.0.0.1:$metrics_port" \
        --memory-limit-mib "$limit" >"$run/daemon.log" 2>&1 &
    daemon=$!
    pids+=("$daemon")
    declare -A done_at=()
    max_rss=0
    max_in_use=0
    while :; do
        sleep 0.5
        kill -0 "$daemon" 2>/dev/null || { echo "the daemon exited:" >&2; tail -20 "$run/daemon.log" >&2; exit 1; }
        curl -sf "http://127.0.0.1:$metrics_port/metrics" >"$run/metrics.txt" || continue
        now=$(date +%s.%N)
        rss=$(metric process_resident_memory_bytes)
        in_use=$(metric auditlake_memory_batch_in_use_bytes)
        max_rss=$(awk -v a="$max_rss" -v b="$rss" 'BEGIN { print (b > a ? b : a) }')
        max_in_use=$(awk -v a="$max_in_use" -v b="$in_use" 'BEGIN { print (b > a ? b : a) }')
        all=1
        for p in trail:$s3_expected cls:$kafka_messages inbox:$inbox_expected; do
            name=${p%%:*}
            if [ "$(written "$name")" -ge "${p##*:}" ]; then
                [ -n "${done_at[$name]:-}" ] || done_at[$name]=$(awk -v a="$now" -v b="$start" 'BEGIN { printf "%.2f", a - b }')
            else
                all=0
            fi
        done
        [ "$all" = 1 ] && break
    done
    wall=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { printf "%.2f", a - b }')
    hwm_kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$daemon/status")
    pressure=$(awk 'index($1, "auditlake_memory_pressure_flushes_total{") == 1 { n += $2 } END { print n + 0 }' "$run/metrics.txt")
    batch_budget=$(metric auditlake_memory_batch_budget_bytes)
    cp "$run/metrics.txt" "$run/metrics-final.txt"
    kill -TERM "$daemon"
    wait "$daemon" || { echo "the daemon did not stop cleanly" >&2; exit 1; }

    for p in trail:$s3_expected cls:$kafka_messages inbox:$inbox_expected; do
        name=${p%%:*}
        read -r count distinct < <("$python" - "$(lake "$name")/ciem_events/**/*.parquet" <<'PY'
import duckdb, sys
glob = sys.argv[1].replace("'", "''")
print(*duckdb.connect().execute(f"select count(*), count(distinct metadata_uid) from read_parquet('{glob}', hive_partitioning = true, hive_types_autocast = false)").fetchone())
PY
)
        if [ "$count" != "${p##*:}" ] || [ "$distinct" != "${p##*:}" ]; then
            echo "$name: $count rows, $distinct distinct, expected ${p##*:}" >&2
            exit 1
        fi
        report+=("$(printf 'limit %4s MiB  %-6s %8d events  done at %7.2f s  %8.0f events/s' "$limit" "$name" "${p##*:}" "${done_at[$name]}" \
            "$(awk -v n="${p##*:}" -v s="${done_at[$name]}" 'BEGIN { print n / s }')")")
    done
    report+=("$(awk -v l="$limit" -v t="$total" -v w="$wall" -v h="$hwm_kib" -v r="$max_rss" -v u="$max_in_use" -v b="$batch_budget" -v p="$pressure" -v k="$kafka_bytes" \
        'BEGIN { printf "limit %4s MiB  all    %8d events  wall %7.2f s  %8.0f events/s  peak RSS %.0f MiB (VmHWM; %.0f%% of the limit, max sampled %.0f MiB)  batch budget %.0f MiB, max in use %.0f MiB, %d pressure flushes  (Kafka payload %.0f MB)",
          l, t, w, t / w, h / 1024, 100 * h / 1024 / l, r / 1048576, b / 1048576, u / 1048576, p, k / 1e6 }')")
    kill "$moto_pid" "$tansu_pid" 2>/dev/null || true
    wait "$moto_pid" "$tansu_pid" 2>/dev/null || true
    unset done_at
done

echo
echo "mixed load: $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ); every pipeline's lake checked with DuckDB (count = distinct = expected)"
printf '%s\n' "${report[@]}"
