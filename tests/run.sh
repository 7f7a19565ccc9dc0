#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one: installs what the tests need
# (a Python venv with DuckDB and moto's server, the tansu Kafka broker), then checks
# formatting, lints and runs every test. Usage: bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# librdkafka is built with TLS (SASL_SSL, SCRAM): it needs OpenSSL's headers.
if ! pkg-config --exists openssl 2>/dev/null; then
    echo "== installing libssl-dev and pkg-config (for librdkafka's TLS support)"
    if [ "$(id -u)" != 0 ]; then
        echo "OpenSSL headers missing: install libssl-dev and pkg-config (as root)" >&2
        exit 1
    fi
    apt-get update -qq && apt-get install -y -qq libssl-dev pkg-config
fi

# The Iceberg tests start a private PostgreSQL cluster (the catalog several hosts share):
# Debian's postgresql package, installed when missing (as root).
if [ -z "${AUDITLAKE_PG_BIN:-}" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "== installing postgresql (for the Iceberg catalog tests)"
    if [ "$(id -u)" != 0 ]; then
        echo "PostgreSQL missing: install Debian's postgresql (as root) or set AUDITLAKE_PG_BIN" >&2
        exit 1
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

# The Kafka tests need a real Kafka-protocol broker: tansu, built from crates.io once per
# machine (about ten minutes; reused when present). `dynostore` brings its in-memory storage.
# It builds in the background while the Python tools download; the tests wait for it.
installed="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin/tansu"
tansu="${AUDITLAKE_TANSU:-$installed}"
tansu_build=
if [ ! -x "$tansu" ]; then
    mkdir -p target
    echo "== building the tansu Kafka broker in the background (once per machine, ~10 min; log: target/tansu-install.log)"
    cargo install --locked tansu --version 0.6.0 --features dynostore >target/tansu-install.log 2>&1 &
    tansu_build=$!
    tansu="$installed"
fi

venv="${AUDITLAKE_VENV:-.venv}"
if ! "$venv/bin/python" -c 'import duckdb, moto, yaml, pyiceberg, psycopg2' 2>/dev/null; then
    echo "== installing test tools into $venv (duckdb, moto[server], pyiceberg, psycopg2)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check duckdb 'moto[server]' pyyaml \
        'pyiceberg[sql-sqlite,pyarrow]==0.12.*' psycopg2-binary
fi
export AUDITLAKE_PYTHON="$PWD/$venv/bin/python"
export AUDITLAKE_MOTO_SERVER="$PWD/$venv/bin/moto_server"

# DuckDB's iceberg extension ships on PyPI only for DuckDB 1.5.5: a venv of its own.
venv15="${AUDITLAKE_VENV_DUCKDB15:-.venv-duckdb15}"
if ! "$venv15/bin/python" -c 'import duckdb, duckdb_extension_iceberg, duckdb_extension_avro, pytz' 2>/dev/null; then
    echo "== installing DuckDB 1.5.5 with its iceberg extension into $venv15"
    python3 -m venv "$venv15"
    "$venv15/bin/pip" install --quiet --disable-pip-version-check duckdb==1.5.5 \
        duckdb-extension-iceberg==1.5.5 duckdb-extension-avro==1.5.5 pytz
fi
export AUDITLAKE_PYTHON_DUCKDB15="$PWD/$venv15/bin/python"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
if [ -n "$tansu_build" ]; then
    echo "== waiting for the tansu build"
    if ! wait "$tansu_build"; then
        tail -n 40 target/tansu-install.log >&2
        echo "building tansu failed (log: target/tansu-install.log)" >&2
        exit 1
    fi
fi
export AUDITLAKE_TANSU="$tansu"
echo "== cargo test"
cargo test --quiet 2>&1
