#!/usr/bin/env bash
# End-to-end tests of the billing pages in headless Chromium (Debian's chromium, driven by Playwright):
# builds the service and the Stripe simulator, starts both on free ports with a temporary SQLite database,
# adds tenants, mints tokens, runs tests/browser, and stops everything on exit. Screenshots: artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

log() { printf '== %s\n' "$*"; }

chromium=${CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || { echo "Chromium is not installed: apt-get install -y chromium chromium-driver" >&2; exit 1; }
command -v node >/dev/null || { echo "Node.js is required for the browser tests" >&2; exit 1; }

log "building"
cargo build -q -p thanotopolis-billing --bin thanotopolis-billing
cargo build -q -p stripe-sim --example stripe_sim
bin="$root/target/debug/thanotopolis-billing"
sim_bin="$root/target/debug/examples/stripe_sim"

if [ ! -d tests/browser/node_modules/playwright-core ]; then
  log "installing playwright-core"
  npm ci --prefix tests/browser --no-audit --no-fund --silent
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
app_port=$(free_port)
sim_port=$(free_port)
app="http://127.0.0.1:$app_port"
sim="http://127.0.0.1:$sim_port"
webhook_secret="whsec_browser_tests"

log "starting the Stripe simulator on $sim"
"$sim_bin" --port "$sim_port" --webhook-url "$app/api/billing/webhook" \
  --webhook-secret "$webhook_secret" --retry-base-ms 200 >"$work/sim.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -fsS "$sim/_sim/clock" >/dev/null 2>&1 && break; sleep 0.1; done

product=$(curl -fsS -u sk_test_x: "$sim/v1/products" -d name="Thanotopolis Platform Subscription" | node -pe 'JSON.parse(require("fs").readFileSync(0)).id')
price=$(curl -fsS -u sk_test_x: "$sim/v1/prices" -d product="$product" -d unit_amount=29900 -d currency=usd \
  -d "recurring[interval]=month" | node -pe 'JSON.parse(require("fs").readFileSync(0)).id')

# The service reads .env from its working directory: run it from the temporary folder so a developer's
# .env does not leak in.
export DATABASE_URL="sqlite://$work/billing.db"
export BIND="127.0.0.1:$app_port"
export JWT_SECRET="browser-tests-jwt-secret"
export STRIPE_API_BASE="$sim"
export STRIPE_SECRET_KEY="sk_test_x"
export STRIPE_WEBHOOK_SECRET="$webhook_secret"
export STRIPE_MONTHLY_PRICE_ID="$price"
export STRIPE_MAX_REQUESTS_PER_SECOND=0
export PUBLIC_BASE_URL="$app"
# info, not less: the log is searched for secrets after the tests, so it should say something.
export RUST_LOG="${RUST_LOG:-info}"
cd "$work"

"$bin" tenants add --id acme --name "Acme Funeral Home" --subdomain acme >/dev/null
"$bin" tenants add --id globex --name "Globex Memorial" --subdomain globex >/dev/null

log "starting the service on $app"
"$bin" serve >"$work/app.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -fsS "$app/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$app/healthz" >/dev/null || { cat "$work/app.log" >&2; exit 1; }

export BASE_URL="$app" SIM_URL="$sim" CHROMIUM="$chromium" ARTIFACTS="$root/artifacts"
export ADMIN_TOKEN=$("$bin" token --tenant acme --role org_admin --email owner@acme.example)
export MEMBER_TOKEN=$("$bin" token --tenant acme --role member)
export SUPER_TOKEN=$("$bin" token --tenant platform --role super_admin)
export SERVICE_TOKEN=$("$bin" token --tenant platform --role service)

# tests/browser/tenant_page.test.mjs adds these organizations itself (through the API), so that it does not
# depend on what the other files did to acme; their tokens are minted here with the others.
export INITECH_ADMIN_TOKEN=$("$bin" token --tenant initech --role org_admin --email owner@initech.example)
export HOOLI_ADMIN_TOKEN=$("$bin" token --tenant hooli --role org_admin --email owner@hooli.example)
export HOOLI_MEMBER_TOKEN=$("$bin" token --tenant hooli --role member)
export UMBRELLA_ADMIN_TOKEN=$("$bin" token --tenant umbrella --role org_admin --email owner@umbrella.example)

# --- For tests/browser/admin_page.test.mjs: organizations of its own to bill, decline and switch to demo,
# so that the tenant page tests keep acme and globex as they expect them.
"$bin" tenants add --id initrode --name "Initrode Cremation" --subdomain initrode >/dev/null
"$bin" tenants add --id vandelay --name "Vandelay Chapel" --subdomain vandelay >/dev/null
export INITRODE_TOKEN=$("$bin" token --tenant initrode --role org_admin)
export VANDELAY_TOKEN=$("$bin" token --tenant vandelay --role org_admin)
# --- end of the admin page tests' set-up

# --- For tests/browser/collection.test.mjs: one organization paying with a card its bank asks to confirm,
# one by bank debit.
"$bin" tenants add --id wayne --name "Wayne Funeral Services" --subdomain wayne >/dev/null
"$bin" tenants add --id stark --name "Stark Memorial" --subdomain stark >/dev/null
export WAYNE_TOKEN=$("$bin" token --tenant wayne --role org_admin)
export STARK_TOKEN=$("$bin" token --tenant stark --role org_admin)
# --- end of the collection tests' set-up
mkdir -p "$root/artifacts"

log "running the browser tests"
start=$(date +%s)
if ! (cd "$root/tests/browser" && node --test --test-concurrency=1 *.test.mjs); then
  echo "--- service log" >&2; tail -50 "$work/app.log" >&2
  echo "--- simulator log" >&2; tail -20 "$work/sim.log" >&2
  exit 1
fi
log "browser tests passed in $(( $(date +%s) - start ))s; screenshots in artifacts/"

# No secret and no token may reach the service's log (a match is named by what it is, never printed).
log "searching the service log for secrets and tokens"
leaked=0
check_log() { # check_log WHAT VALUE
  if [ -n "$2" ] && grep -qF -- "$2" "$work/app.log"; then
    echo "the service log contains $1" >&2
    leaked=1
  fi
}
check_log JWT_SECRET "$JWT_SECRET"
check_log STRIPE_SECRET_KEY "$STRIPE_SECRET_KEY"
check_log STRIPE_WEBHOOK_SECRET "$STRIPE_WEBHOOK_SECRET"
check_log "a webhook secret (whsec_)" whsec_
check_log "a Stripe key (sk_test_)" sk_test_
check_log "a Stripe key (sk_live_)" sk_live_
check_log "a JWT (eyJ)" eyJ
for name in ADMIN_TOKEN MEMBER_TOKEN SUPER_TOKEN SERVICE_TOKEN; do
  check_log "$name" "${!name}"
done
[ "$leaked" = 0 ] || exit 1
