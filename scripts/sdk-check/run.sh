#!/usr/bin/env bash
# Runs the official Stripe Python SDK against the simulator.
# Usage: scripts/sdk-check/run.sh   (from anywhere; creates .venv at the repository root)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv; then
        echo "sdk-check: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
fi
if ! .venv/bin/python -c "import stripe" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check stripe
fi

cargo build --quiet -p stripe-sim --example stripe_sim
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"

LOG="$(mktemp)"
"$TARGET_DIR/debug/examples/stripe_sim" --port 0 >"$LOG" 2>&1 &
SIM_PID=$!
cleanup() {
    kill "$SIM_PID" 2>/dev/null || true
    wait "$SIM_PID" 2>/dev/null || true
    rm -f "$LOG"
}
trap cleanup EXIT

BASE=""
for _ in $(seq 1 100); do
    BASE="$(head -n1 "$LOG" 2>/dev/null || true)"
    case "$BASE" in http://*) break ;; esac
    if ! kill -0 "$SIM_PID" 2>/dev/null; then
        echo "sdk-check: simulator exited:" >&2
        cat "$LOG" >&2
        exit 1
    fi
    sleep 0.1
done
case "$BASE" in http://*) ;; *) echo "sdk-check: simulator did not start" >&2; exit 1 ;; esac

.venv/bin/python scripts/sdk-check/check.py "$BASE"
