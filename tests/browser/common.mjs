// What every browser test file shares: the settings scripts/browser-tests.sh passes in, the phone viewport,
// and waiting until the simulator has delivered every webhook it sent.

import assert from 'node:assert/strict';

export const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run scripts/browser-tests.sh`);
  return v;
};
export const BASE = env('BASE_URL');
export const SIM = env('SIM_URL');
export const ARTIFACTS = env('ARTIFACTS');
export const PHONE = { width: 390, height: 844 };

async function simGet(path) {
  const resp = await fetch(`${SIM}${path}`, { headers: { authorization: 'Bearer sk_test_x' } });
  assert.ok(resp.ok, `${path}: ${resp.status}`);
  return resp.json();
}

/** Waits until every event the simulator has made was delivered to the service and answered 2xx. */
export async function settle() {
  const deadline = Date.now() + 20000;
  for (;;) {
    const events = await simGet('/v1/events?limit=100');
    const deliveries = await simGet('/_sim/webhooks/deliveries');
    const ok = new Set(deliveries.data.filter((d) => d.status >= 200 && d.status < 300).map((d) => d.event_id));
    if (events.data.every((e) => ok.has(e.id))) return;
    assert.ok(Date.now() < deadline, 'webhooks not delivered in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}
