#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one: installs what the tests need
# (a Python venv with DuckDB and moto's server), then checks formatting, lints and runs
# every test. Usage: bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${AUDITLAKE_VENV:-.venv}"
if ! "$venv/bin/python" -c 'import duckdb, moto' 2>/dev/null; then
    echo "== installing test tools into $venv (duckdb, moto[server])"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check duckdb 'moto[server]'
fi
export AUDITLAKE_PYTHON="$PWD/$venv/bin/python"
export AUDITLAKE_MOTO_SERVER="$PWD/$venv/bin/moto_server"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --quiet 2>&1
