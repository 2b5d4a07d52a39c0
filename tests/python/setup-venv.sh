#!/usr/bin/env bash
# Create (or reuse) a Python virtualenv holding the reference implementation
# grpc-helper==2.3.1 plus grpcio-tools, grpcio-health-checking, grpcio-reflection and
# prometheus_client (its text parser checks the metrics endpoint), used by
# the Rust<->Python interop tests.
#
# Usage: bash tests/python/setup-venv.sh VENV_DIR
#
# Idempotent, and safe to run concurrently (serialised with flock on
# VENV_DIR.lock). Prints nothing on success.
set -euo pipefail

if [ "$#" -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 VENV_DIR" >&2
    exit 2
fi

VENV_DIR="${1%/}"
PYTHON="${PYTHON:-python3}"

venv_ok() {
    [ -x "$VENV_DIR/bin/python" ] &&
        "$VENV_DIR/bin/python" -c 'import grpc_helper, grpc_tools, grpc_health, grpc_reflection, prometheus_client' >/dev/null 2>&1
}

# Fast path, no lock needed.
if venv_ok; then
    exit 0
fi

mkdir -p "$(dirname "$VENV_DIR")"
LOCK_FILE="$VENV_DIR.lock"
exec 9>"$LOCK_FILE"
flock 9

# Another process may have finished the job while we waited for the lock.
if venv_ok; then
    exit 0
fi

if [ ! -x "$VENV_DIR/bin/python" ]; then
    rm -rf "$VENV_DIR"
    "$PYTHON" -m venv "$VENV_DIR" >/dev/null
fi

"$VENV_DIR/bin/python" -m pip install -q --disable-pip-version-check \
    "grpc-helper==2.3.1" "setuptools<70" grpcio-tools grpcio-health-checking grpcio-reflection prometheus_client

if ! venv_ok; then
    echo "$0: venv at $VENV_DIR was set up but 'import grpc_helper, grpc_tools, grpc_health, grpc_reflection, prometheus_client' still fails:" >&2
    "$VENV_DIR/bin/python" -c 'import grpc_helper, grpc_tools, grpc_health, grpc_reflection, prometheus_client' >&2 || true
    exit 1
fi
