#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with schemathesis: starts the one-command demo
# (`serve --stripe-sim`, seeded tenants) on a free port over a fresh database, then sends generated
# requests to every operation with a super-admin token, and to the routes of the platform's pages
# with the tokens of an organization admin (of a tenant without a subscription, and of one the service
# has not registered). Fails on any 5xx, on a response whose status,
# content type or body the document does not describe, and on a panic in the service's log.
#
# Runs on SQLite, then on PostgreSQL when TEST_POSTGRES_URL names a server (scripts/test.sh sets it):
# PostgreSQL refuses some text SQLite stores (NUL), so both are worth fuzzing.
#
# Usage: scripts/schemathesis.sh   (from anywhere; creates .venv at the repository root)
#   SCHEMATHESIS_MAX_EXAMPLES  cases per operation and phase (default 50)
#   SCHEMATHESIS_SEED          the random seed (default fixed, so that CI runs repeat)
#   SCHEMATHESIS_ARGS          further arguments for `schemathesis run`, e.g. "--checks all"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv; then
        echo "schemathesis: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
fi
if [ ! -x .venv/bin/schemathesis ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi

cargo build --quiet -p thanotopolis-billing --bin thanotopolis-billing
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/debug/thanotopolis-billing"

WORK="$(mktemp -d)"
SERVICE_PID=""
PG_DB=""
cleanup() {
    if [ -n "$SERVICE_PID" ]; then
        kill "$SERVICE_PID" 2>/dev/null || true
        wait "$SERVICE_PID" 2>/dev/null || true
    fi
    if [ -n "$PG_DB" ]; then
        psql -q "$TEST_POSTGRES_URL/postgres" -c "DROP DATABASE IF EXISTS $PG_DB" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# fuzz LABEL DATABASE_URL: one service over that (empty) database, one schemathesis run against it.
fuzz() {
    local label="$1" database_url="$2" dir="$WORK/$1"
    mkdir -p "$dir"
    local port
    port="$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    local base="http://127.0.0.1:$port"
    local secret
    secret="schemathesis-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    echo "== schemathesis on $label"
    # Run from the scratch folder so that a developer's .env cannot change what is tested.
    (
        cd "$dir"
        unset STRIPE_SECRET_KEY STRIPE_WEBHOOK_SECRET STRIPE_MONTHLY_PRICE_ID STRIPE_API_BASE PUBLIC_BASE_URL
        DATABASE_URL="$database_url" BIND="127.0.0.1:$port" JWT_SECRET="$secret" \
            RUST_LOG="${RUST_LOG:-warn}" exec "$BIN" serve --stripe-sim
    ) >"$dir/service.log" 2>&1 &
    SERVICE_PID=$!

    # The demo prints its banner once the tenants, subscriptions and usage are seeded.
    for _ in $(seq 1 300); do
        grep -q "API tokens" "$dir/service.log" 2>/dev/null && break
        kill -0 "$SERVICE_PID" 2>/dev/null || break
        sleep 0.2
    done
    if ! grep -q "API tokens" "$dir/service.log"; then
        echo "schemathesis: the demo did not start and seed within 60 s:" >&2
        cat "$dir/service.log" >&2
        return 1
    fi

    # A super admin acting on a seeded tenant: the tenant routes find data, the admin routes are allowed.
    local token
    token="$(cd "$dir" && JWT_SECRET="$secret" "$BIN" token --tenant acme --role super_admin --sub schemathesis --ttl 1h)"
    # `fuzz` runs under `||`, where `set -e` does not apply: a token that does not work would turn every
    # case into a documented 401 and pass, so check it.
    if ! .venv/bin/python - "$base" "$token" <<'PY'
import sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/api/admin/tenants", headers={"Authorization": "Bearer " + sys.argv[2]})
with urllib.request.urlopen(req, timeout=10) as r:
    sys.exit(0 if r.status == 200 and b'"acme"' in r.read() else 1)
PY
    then
        echo "schemathesis: the super-admin token was not accepted or the demo tenant is missing" >&2
        return 1
    fi

    # st TOKEN [ARGS...]: one schemathesis run against this service with that bearer token.
    # One worker: with two, hypothesis' lambda-source parsing races in Python 3.11 and errors at random.
    # No example database: a run depends on the seed alone.
    # From the scratch folder: schemathesis keeps state in .schemathesis/ where it runs.
    st() {
        local bearer="$1"
        shift
        # shellcheck disable=SC2086 # SCHEMATHESIS_ARGS is a list of arguments.
        (cd "$dir" && exec "$ROOT/.venv/bin/schemathesis" --no-color run "$base/api/openapi.json" \
            --header "Authorization: Bearer $bearer" \
            --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
            --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-50}" \
            --seed "${SCHEMATHESIS_SEED:-20261126}" \
            --workers 1 \
            --generation-database none \
            --request-timeout 30 \
            "$@" \
            ${SCHEMATHESIS_ARGS:-})
    }

    local status=0
    st "$token" || status=$?

    # The platform's pages as an organization admin uses them: the super admin above acts on a
    # subscribed tenant, so start-subscription would only ever answer 409. An organization registered
    # without a subscription gets its checkout; a valid token of an organization not registered here
    # gets the empty dashboard.
    if ! .venv/bin/python - "$base" "$token" <<'PY'
import json, sys, urllib.request
body = json.dumps({"id": "newcomer", "name": "Newcomer Chapel", "subdomain": "newcomer"}).encode()
req = urllib.request.Request(sys.argv[1] + "/api/admin/tenants", data=body, method="POST", headers={
    "Authorization": "Bearer " + sys.argv[2], "Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=10) as r:
    sys.exit(0 if r.status == 201 else 1)
PY
    then
        echo "schemathesis: could not register the tenant without a subscription" >&2
        status=1
    fi
    local pages='^/api/billing/(dashboard|start-subscription|subscription-plans)$'
    local newcomer unregistered
    newcomer="$(cd "$dir" && JWT_SECRET="$secret" "$BIN" token --tenant newcomer --role org_admin --sub schemathesis --ttl 1h)"
    unregistered="$(cd "$dir" && JWT_SECRET="$secret" "$BIN" token --tenant not-registered --role org_admin --sub schemathesis --ttl 1h)"
    st "$newcomer" --include-path-regex "$pages" || status=$?
    st "$unregistered" --include-path-regex '^/api/billing/dashboard$' || status=$?

    kill "$SERVICE_PID" 2>/dev/null || true
    wait "$SERVICE_PID" 2>/dev/null || true
    SERVICE_PID=""
    if grep -q "panicked" "$dir/service.log"; then
        echo "schemathesis: the service panicked ($label):" >&2
        grep -A5 "panicked" "$dir/service.log" >&2
        status=1
    fi
    if [ "$status" -ne 0 ]; then
        echo "schemathesis: failures on $label; the service's log ends:" >&2
        tail -n 40 "$dir/service.log" >&2
    fi
    return "$status"
}

failed=0
fuzz sqlite "sqlite://$WORK/sqlite/billing.db" || failed=1
if [ -n "${TEST_POSTGRES_URL:-}" ]; then
    PG_DB="schemathesis_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
    psql -q "$TEST_POSTGRES_URL/postgres" -c "CREATE DATABASE $PG_DB" >/dev/null
    fuzz postgres "$TEST_POSTGRES_URL/$PG_DB" || failed=1
else
    echo "== schemathesis on PostgreSQL skipped: TEST_POSTGRES_URL is not set"
fi
exit "$failed"
