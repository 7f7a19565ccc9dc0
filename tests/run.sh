#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one: installs what the tests need
# (a Python venv with DuckDB and moto's server, the tansu Kafka broker), then checks
# formatting, lints and runs every test. Usage: bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

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
tansu="${AUDITLAKE_TANSU:-$HOME/.cargo/bin/tansu}"
if [ ! -x "$tansu" ]; then
    echo "== installing the tansu Kafka broker (once per machine, ~10 min)"
    cargo install --locked tansu --version 0.6.0 --features dynostore
    tansu="$HOME/.cargo/bin/tansu"
fi
export AUDITLAKE_TANSU="$tansu"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --quiet 2>&1
