#!/usr/bin/env bash
# `thanotopolis-billing stripe setup` then `stripe check` against the Stripe simulator, through the real
# binary: the self-test an operator runs with a test key before going live, run the same way here.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

cargo build -q -p thanotopolis-billing --bin thanotopolis-billing
cargo build -q -p stripe-sim --example stripe_sim
bin="$root/target/debug/thanotopolis-billing"
sim_bin="$root/target/debug/examples/stripe_sim"

work=$(mktemp -d)
sim_pid=""
cleanup() {
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

"$sim_bin" --port 0 >"$work/sim.log" 2>&1 &
sim_pid=$!
sim=""
for _ in $(seq 1 100); do
  sim=$(head -n1 "$work/sim.log" 2>/dev/null || true)
  case "$sim" in http://*) break ;; esac
  sleep 0.1
done
case "$sim" in http://*) ;; *) echo "stripe-check: the simulator did not start" >&2; cat "$work/sim.log" >&2; exit 1 ;; esac

# Run from the temporary folder so that a developer's .env does not leak in.
cd "$work"
export STRIPE_API_BASE="$sim" STRIPE_SECRET_KEY="sk_test_stripe_check" PUBLIC_BASE_URL="https://billing.example.com"
export DATABASE_URL="sqlite://$work/billing.db"
"$bin" stripe setup | tee "$work/setup.out"
eval "$(grep -E '^STRIPE_(MONTHLY_PRICE_ID|PORTAL_CONFIGURATION_ID)=' "$work/setup.out" | sed 's/^/export /')"
"$bin" stripe check

# A live key is refused before anything is sent.
if STRIPE_SECRET_KEY="sk_live_refused" "$bin" stripe check >"$work/live.out" 2>&1; then
  echo "stripe-check: a live key was not refused" >&2
  exit 1
fi
grep -q "test-mode key" "$work/live.out"
echo "stripe check: passed against the simulator; a live key is refused"
