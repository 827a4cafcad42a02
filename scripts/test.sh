#!/usr/bin/env bash
# Runs every test the project has, setting up what they need first:
#   - PostgreSQL on 127.0.0.1:5432 (started if it is not running; the PostgreSQL tests never skip),
#   - the Rust test suites on SQLite and PostgreSQL,
#   - the official Stripe Python SDK against the simulator (a venv in .venv),
#   - the Python package clients/python against the binary (same venv),
#   - `stripe setup` and `stripe check` through the binary against the simulator,
#   - schemathesis against /api/openapi.json on SQLite and PostgreSQL (same venv),
#   - the browser tests in headless Chromium (when tests/browser exists),
#   - a short fuzzing pass over the hostile-input parsers (scripts/fuzz.sh; FUZZ_SECONDS per target).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

export TEST_POSTGRES_URL="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}"

ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return; fi
  log "starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    for version in $(ls /etc/postgresql); do
      pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
  fi
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && return
    sleep 1
  done
  echo "PostgreSQL is not reachable on 127.0.0.1:5432 and could not be started; the tests need it." >&2
  exit 1
}

# What the suites need from the machine: Debian's Chromium for the browser tests, python3-venv for the SDK
# check and schemathesis, cargo-fuzz for the fuzzing pass. Installed when missing (needs root and apt).
ensure_tools() {
  local missing=()
  for p in python3-venv chromium chromium-driver; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      log "installing ${missing[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq || true
      apt-get install -y -qq "${missing[@]}"
    else
      echo "missing Debian packages: ${missing[*]}; install them (apt-get install ${missing[*]})" >&2
      exit 1
    fi
  fi
  if [ -x scripts/fuzz.sh ] && ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
  fi
}

ensure_tools
ensure_postgres

log "cargo test (SQLite and PostgreSQL)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  # nextest does not run doctests.
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast
fi

if [ -x scripts/sdk-check/run.sh ]; then
  log "official Stripe SDK against the simulator"
  scripts/sdk-check/run.sh
fi

if [ -x scripts/python-client/run.sh ]; then
  log "the Python package (clients/python) against the binary"
  scripts/python-client/run.sh
fi

if [ -x scripts/stripe-check.sh ]; then
  log "stripe setup and stripe check against the simulator"
  scripts/stripe-check.sh
fi

if [ -x scripts/schemathesis.sh ]; then
  log "schemathesis: the API fuzzed from its OpenAPI document"
  scripts/schemathesis.sh
fi

if [ -x scripts/browser-tests.sh ]; then
  log "browser tests (headless Chromium)"
  scripts/browser-tests.sh
fi

if [ -x scripts/fuzz.sh ]; then
  log "fuzzing, a short pass (the long one: scripts/fuzz.sh 600)"
  scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
fi

log "all tests passed"
