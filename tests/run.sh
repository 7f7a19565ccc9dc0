#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one: installs what the tests need
# (a Python venv with DuckDB and moto's server, the tansu Kafka broker), then checks
# formatting, lints and runs every test. Usage: bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${AUDITLAKE_VENV:-.venv}"
if ! "$venv/bin/python" -c 'import duckdb, moto, yaml' 2>/dev/null; then
    echo "== installing test tools into $venv (duckdb, moto[server])"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check duckdb 'moto[server]' pyyaml
fi
export AUDITLAKE_PYTHON="$PWD/$venv/bin/python"
export AUDITLAKE_MOTO_SERVER="$PWD/$venv/bin/moto_server"

# librdkafka is built with TLS (SASL_SSL, SCRAM): it needs OpenSSL's headers.
if ! pkg-config --exists openssl 2>/dev/null; then
    echo "== installing libssl-dev and pkg-config (for librdkafka's TLS support)"
    if [ "$(id -u)" != 0 ]; then
        echo "OpenSSL headers missing: install libssl-dev and pkg-config (as root)" >&2
        exit 1
    fi
    apt-get update -qq && apt-get install -y -qq libssl-dev pkg-config
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
