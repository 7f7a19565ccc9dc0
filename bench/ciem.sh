#!/usr/bin/env bash
# The CIEM findings benchmark: the findings of one account over the replay benchmark's lake
# (bench/run.sh's corpus, replayed once), against entitlements made from that lake's own
# principals: every IAM user and role seen is granted `s3:*`, `ec2:Describe*`, `iam:Get*` and
# `kms:*` (wildcards expanded against the bundled catalog), every tenth role `*` on `*`, and
# each user one access key; computed as of the corpus's newest event over 365 days. Prints
# events read, findings, wall and CPU seconds, peak memory.
#
# Usage: bash bench/ciem.sh [EVENTS]          (default 500000)
# Environment: BENCH_DIR (default /tmp/auditlake-bench), as bench/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

events="${1:-500000}"
dir="${BENCH_DIR:-/tmp/auditlake-bench}"
corpus="$dir/corpus-$events"
lake="$dir/ciem-lake"
venv="${AUDITLAKE_VENV:-.venv}"
if ! "$venv/bin/python" -c 'import duckdb' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check duckdb
fi
python="$PWD/$venv/bin/python"
mkdir -p "$dir"
if [ ! -f "$corpus.manifest.json" ]; then
    rm -rf "$corpus"
    echo "== generating $events events into $corpus"
    python3 bench/gen_cloudtrail.py --out "$corpus" --events "$events"
fi
echo "== cargo build --release"
cargo build --release --quiet
bin="$PWD/target/release/auditlake"

if [ ! -f "$lake/.replayed-$events" ]; then
    rm -rf "$lake"
    echo "== replaying the corpus into $lake"
    "$bin" replay "$corpus" --out "$lake" >/dev/null
    touch "$lake/.replayed-$events"
fi

# The busiest account, and entitlements for its principals, as an entitlements sync saves them.
account=$("$python" - "$lake" <<'PY'
import duckdb, json, sys, time
lake = sys.argv[1]
con = duckdb.connect()
src = f"read_parquet('{lake}/ciem_events/**/*.parquet', hive_partitioning = true, hive_types_autocast = false)"
acct, newest = con.execute(f"select account, max(time) from {src} where provider = 'aws' group by all order by count(*) desc limit 1").fetchone()
users = [r[0] for r in con.execute(f"select distinct actor_user_uid from {src} where account = ? and actor_user_type = 'IAMUser'", [acct]).fetchall()]
roles = [r[0] for r in con.execute(f"select distinct actor_session_issuer from {src} where account = ? and actor_session_issuer like '%:role/%'", [acct]).fetchall()]
old = 1_420_070_400_000  # 2015-01-01: older than any tracking period before the corpus
doc = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:*", "ec2:Describe*", "iam:Get*", "kms:*"], "Resource": "*"},
    {"Effect": "Deny", "Action": "s3:Delete*", "Resource": "*"}]}
admin = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
def principal(kind, uid, i):
    return {"kind": kind, "uid": uid, "name": uid.rsplit("/", 1)[-1], "alt_uid": None, "created_ms": old,
            "last_used_ms": None, "groups": [], "inline": [],
            "attached": ["arn:aws:iam::%s:policy/%s" % (acct, "Admin" if kind == "role" and i % 10 == 0 else "Work")],
            "trust": None}
principals = [principal("user", u, i) for i, u in enumerate(users)] + [principal("role", r, i) for i, r in enumerate(roles)]
policies = [{"uid": f"arn:aws:iam::{acct}:policy/Work", "name": "Work", "kind": "managed", "version": "v1", "document": doc},
            {"uid": f"arn:aws:iam::{acct}:policy/Admin", "name": "Admin", "kind": "managed", "version": "v1", "document": admin}]
keys = [{"kind": "access_key", "uid": f"AKIABENCH{i:011d}", "principal_uid": u, "status": "Active", "created_ms": old,
         "last_used_ms": None, "last_used_service": None} for i, u in enumerate(users)]
saved = {"run_id": "bench", "run_time_ms": old, "account_uid": acct,
         "entitlements": {"principals": principals, "policies": policies, "credentials": keys, "documents": True}}
import os
os.makedirs(f"{lake}/_auditlake/sync", exist_ok=True)
json.dump(saved, open(f"{lake}/_auditlake/sync/bench.entitlements.json", "w"))
print(acct, len(users), len(roles), newest.strftime("%Y-%m-%dT%H:%M:%SZ"))
PY
)
read -r acct n_users n_roles newest <<<"$account"
cat >"$dir/ciem-accounts.toml" <<TOML
lake = "$lake"
[ciem]
tracking_period_days = 365
[[account]]
name = "bench"
provider = "aws"
features = ["entitlements"]
[account.credentials]
access_key_id_env = "UNUSED_BY_CIEM_FINDINGS"
secret_access_key_env = "UNUSED_BY_CIEM_FINDINGS"
TOML

echo "== auditlake ciem findings: account $acct, $n_users users, $n_roles roles, as of $newest"
/usr/bin/time -f '%e %M %U %S' -o "$dir/ciem-time.log" "$bin" ciem findings --config "$dir/ciem-accounts.toml" \
    --tracking-period-days 365 --as-of "$newest" >"$dir/ciem-output.log" 2>&1 || { cat "$dir/ciem-output.log"; exit 1; }
cat "$dir/ciem-output.log"
read -r wall rss user sys <"$dir/ciem-time.log"
echo "wall ${wall}s, CPU $(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')s, peak RSS $((rss / 1024)) MiB"
