#!/usr/bin/env bash
# Runs the Python package's tests (clients/python) against the real binary, in the repository's venv (.venv,
# as scripts/sdk-check/run.sh makes it), with its dependencies (httpx; FastAPI for `require_access`).
# Usage: scripts/python-client/run.sh   (from anywhere)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv; then
        echo "python-client: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
fi
if ! .venv/bin/python -c "import httpx, fastapi" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check httpx fastapi
fi

cargo build --quiet --bin thanotopolis-billing
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"

cd clients/python
BILLING_BIN="$TARGET_DIR/debug/thanotopolis-billing" PYTHONPATH=. ../../.venv/bin/python - <<'PY'
import sys, unittest
suite = unittest.defaultTestLoader.discover("tests")
result = unittest.TextTestRunner(verbosity=2).run(suite)
failed = len(result.failures) + len(result.errors)
print(f"python client: {result.testsRun - failed - len(result.skipped)} passed, {failed} failed")
sys.exit(0 if result.wasSuccessful() and not result.skipped else 1)
PY
