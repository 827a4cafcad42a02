// The tenant's /billing page in headless Chromium: the month a usage invoice bills (on our page and on
// the hosted invoice), a declined payment's banner and its way to the portal, the card on file and the
// next charge, why a trial's charges are $0, the trial field's errors, and the banner a super admin sees
// on another organization's page. Started by scripts/browser-tests.sh, like billing.test.mjs.
//
// It adds organizations of its own (Initech, Hooli, Umbrella) through the API, so it does not depend on
// what the other files did to theirs. The simulator's clock is shared and may have been moved by them:
// every date is read from the service, never assumed from today.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { env, BASE, SIM, ARTIFACTS, PHONE, settle } from './common.mjs';

const TOKENS = {
  superAdmin: env('SUPER_TOKEN'),
  service: env('SERVICE_TOKEN'),
  initech: env('INITECH_ADMIN_TOKEN'),
  hooli: env('HOOLI_ADMIN_TOKEN'),
  hooliMember: env('HOOLI_MEMBER_TOKEN'),
  umbrella: env('UMBRELLA_ADMIN_TOKEN'),
};
const DESKTOP = { width: 1366, height: 900 };
const ORGS = {
  initech: 'Initech Mortuary',
  hooli: 'Hooli Memorial Chapel',
  umbrella: 'Umbrella Cremation Services',
};
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September',
  'October', 'November', 'December'];

let browser;
const opened = [];

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({ executablePath: env('CHROMIUM'), args: ['--no-sandbox'] });
  for (const [id, name] of Object.entries(ORGS)) {
    const r = await api('POST', '/api/admin/tenants', TOKENS.superAdmin, { id, name, subdomain: id });
    assert.ok(r.status === 200 || r.status === 201, `adding ${id}: ${r.status} ${JSON.stringify(r.body)}`);
  }
});

after(async () => {
  await browser?.close();
});

async function api(method, path, token, body) {
  const resp = await fetch(`${BASE}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await resp.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: resp.status, body: json ?? text };
}

async function simFetch(path, form) {
  const resp = await fetch(`${SIM}${path}`, {
    method: form ? 'POST' : 'GET',
    headers: { authorization: 'Bearer sk_test_x', 'content-type': 'application/x-www-form-urlencoded' },
    body: form ? new URLSearchParams(form) : undefined,
  });
  assert.ok(resp.ok, `${path}: ${resp.status}`);
  return resp.json();
}

/** Waits until the simulator delivered every event to the service with a 2xx. */

async function open(token, viewport = DESKTOP) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const record = { page, errors: [], urls: [], expected: [] };
  page.on('console', (m) => {
    if (m.type() === 'error' && (m.location().url ?? '').startsWith(BASE)) {
      record.errors.push(`${m.text()} (${m.location().url})`);
    }
  });
  page.on('pageerror', (e) => record.errors.push(String(e)));
  page.on('request', (r) => record.urls.push(r.url()));
  opened.push(record);
  await page.goto(`${BASE}/sign-in`);
  await page.fill('#token', token);
  await Promise.all([page.waitForURL(/\/(admin\/)?billing$/), page.click('#sign-in')]);
  return page;
}

/** Chromium logs a page answered with an error status (a form sent back to fix) as a console error. */
function expectErrorStatus(page, status, path) {
  opened.find((r) => r.page === page).expected.push(`status of ${status} (Unprocessable Entity) (${BASE}${path})`);
}

function assertCleanPages() {
  const tokens = Object.values(TOKENS);
  for (const { errors, urls, expected } of opened) {
    const unexpected = errors.filter((e) => !expected.some((x) => e.endsWith(x)));
    assert.deepEqual(unexpected, [], 'console errors');
    for (const url of urls) {
      assert.ok(!tokens.some((t) => url.includes(t)) && !url.includes('eyJ'), `a token in a URL: ${url}`);
    }
  }
}

async function noHorizontalScroll(page) {
  const { scroll, width } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    width: document.documentElement.clientWidth,
  }));
  assert.ok(scroll <= width, `page scrolls sideways: ${scroll} > ${width}`);
}

/** Reloads until `selector` is on the page (what webhooks bring arrives a moment later). */
async function reloadUntil(page, selector, text) {
  const deadline = Date.now() + 20000;
  for (;;) {
    const el = page.locator(selector);
    if ((await el.count()) > 0 && (!text || (await el.first().textContent()).includes(text))) return el.first();
    assert.ok(Date.now() < deadline, `${selector} ${text ?? ''} never appeared`);
    await page.waitForTimeout(250);
    await page.reload();
  }
}

/** A day as the page prints it: `Dec 16, 2026`, in the billing time zone (UTC here). */
function day(iso) {
  return new Intl.DateTimeFormat('en-US', { month: 'short', day: 'numeric', year: 'numeric', timeZone: 'UTC' })
    .format(new Date(iso));
}

/** `YYYY-MM` -> `November 2026`. */
function monthName(period) {
  const [y, m] = period.split('-').map(Number);
  return `${MONTHS[m - 1]} ${y}`;
}

/** The month before the service's current one, `YYYY-MM` (the run bills closed months only). */
function lastMonth() {
  const now = new Date();
  const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1));
  return `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
}

/** Subscribes an organization through the API and the simulator's Checkout, with `card`. */
async function subscribe(token, card, trialDays) {
  const body = { success_url: `${BASE}/billing?done=subscribed`, cancel_url: `${BASE}/billing` };
  if (trialDays) body.trial_days = trialDays;
  const session = await api('POST', '/api/billing/create-checkout-session', token, body);
  assert.equal(session.status, 200, JSON.stringify(session.body));
  await simFetch(`/_sim/checkout/sessions/${session.body.session_id}/complete`, { card });
  await settle();
}

async function dashboard(token) {
  const d = await api('GET', '/api/billing/dashboard', token);
  assert.equal(d.status, 200, JSON.stringify(d.body));
  return d.body;
}

async function shots(token, name, url = `${BASE}/billing`) {
  for (const [viewport, suffix] of [[DESKTOP, ''], [PHONE, '-phone']]) {
    const page = await open(token, viewport);
    await page.goto(url);
    await noHorizontalScroll(page);
    await page.screenshot({ path: `${ARTIFACTS}/${name}${suffix}.png`, fullPage: true });
  }
}

test('a usage invoice names its month, on our page and on the invoice the customer opens', async () => {
  await subscribe(TOKENS.initech, '4242424242424242');
  const period = lastMonth();
  const usage = await api('POST', '/api/usage/events', TOKENS.service, {
    events: [
      { event_id: 'tenant-page-initech-stt', tenant_id: 'initech', type: 'stt_words', quantity: 12000, occurred_at: `${period}-10T12:00:00Z` },
      { event_id: 'tenant-page-initech-call-1', tenant_id: 'initech', type: 'phone_calls', quantity: 1, occurred_at: `${period}-11T12:00:00Z` },
      { event_id: 'tenant-page-initech-call-2', tenant_id: 'initech', type: 'phone_calls', quantity: 1, occurred_at: `${period}-12T12:00:00Z` },
    ],
  });
  assert.equal(usage.status, 200, JSON.stringify(usage.body));
  // The run for last month (the scheduler or another file's run may hold the period: wait for it).
  const deadline = Date.now() + 30000;
  let invoice;
  while (!invoice) {
    const run = await api('POST', '/api/admin/billing/runs', TOKENS.superAdmin, { period });
    assert.ok(run.status === 200 || run.status === 409, `run: ${run.status} ${JSON.stringify(run.body)}`);
    await settle();
    const list = await api('GET', '/api/billing/invoices', TOKENS.initech);
    invoice = list.body.invoices.find((i) => i.billing_period === period);
    assert.ok(invoice || Date.now() < deadline, `no usage invoice for ${period}: ${JSON.stringify(list.body)}`);
    if (!invoice) await new Promise((r) => setTimeout(r, 500));
  }

  const page = await open(TOKENS.initech);
  const row = page.locator(`#invoice-${invoice.stripe_invoice_id}`);
  assert.equal((await row.locator('.invoice-for').textContent()).trim(), `${monthName(period)} usage`);
  // The card on file and the next charge: the subscription's amount at its period end.
  const d = await dashboard(TOKENS.initech);
  assert.match(await page.textContent('#payment-method'), /^Visa •••• 4242, expires \d{2}\/\d{4}$/);
  assert.equal(await page.textContent('#next-charge'),
    `$299.00 on ${day(d.current_subscription.current_period_end)}`);

  // The hosted invoice says the month in words.
  await Promise.all([page.waitForURL(`${SIM}/invoice/**`), row.locator('a').click()]);
  assert.equal(await page.textContent('#invoice-description'),
    `Thanotopolis voice usage and phone calls for ${monthName(period)}`);
  await page.screenshot({ path: `${ARTIFACTS}/tenant-hosted-invoice.png`, fullPage: true });
  await shots(TOKENS.initech, 'tenant-invoice-month');
  assertCleanPages();
});

test('a declined payment shows what failed, and the button leads to the portal to update the card', async () => {
  // A one-day trial with a card that attaches but never pays: the charge at the trial's end fails.
  await subscribe(TOKENS.hooli, '4000000000000341', 1);
  const page = await open(TOKENS.hooli);
  assert.equal(await page.locator('#payment-failed').count(), 0);
  await simFetch('/_sim/clock/advance', { seconds: String(2 * 86400) });
  await settle();
  const banner = await reloadUntil(page, '#payment-failed');
  const invoices = (await api('GET', '/api/billing/invoices', TOKENS.hooli)).body.invoices;
  const open_ = invoices.find((i) => i.status === 'open');
  assert.ok(open_, JSON.stringify(invoices));
  const text = await banner.textContent();
  assert.match(text, /^Payment failed\./);
  assert.ok(text.includes(`Stripe could not charge $299.00 for invoice ${open_.number} (subscription) on `), text);
  assert.match(text, /keeps access until/);
  assert.match(await page.textContent('#subscription-status'), /past due/);
  assert.match(await page.textContent(`#invoice-${open_.stripe_invoice_id}`), /payment failed/);
  await shots(TOKENS.hooli, 'tenant-payment-failed');

  // A member sees it too, and who can fix it.
  const member = await open(TOKENS.hooliMember);
  assert.match(await member.textContent('#payment-failed'), /Ask an organization admin to update the card/);
  assert.equal(await member.locator('#update-card').count(), 0);

  // The admin's button opens the customer portal, where the card is updated.
  await Promise.all([page.waitForURL(`${SIM}/portal/**`), page.click('#update-card')]);
  await page.fill('#cardNumber', '4242 4242 4242 4242');
  await page.click('#update-card');
  assert.match(await page.textContent('#notice'), /card was updated/);
  await Promise.all([page.waitForURL(`${BASE}/billing?done=portal`), page.click('#return')]);
  assertCleanPages();
});

test('the trial field keeps what was typed and says what to fix; trial usage is free until the trial ends', async () => {
  const page = await open(TOKENS.umbrella);
  await page.fill('#trial-days', '45');
  const [sent] = await Promise.all([page.waitForResponse(`${BASE}/billing/checkout`), page.click('#subscribe')]);
  assert.equal(sent.status(), 422);
  expectErrorStatus(page, 422, '/billing/checkout');
  await page.waitForLoadState();
  assert.equal(await page.inputValue('#trial-days'), '45');
  assert.equal(await page.textContent('#trial-days-error'),
    'Enter a whole number of days from 0 to 30, or leave it empty for no trial.');
  assert.equal(await page.getAttribute('#trial-days', 'aria-invalid'), 'true');
  assert.equal(await page.locator('#action-error').count(), 0, 'the error is by the field, not at the top');
  await page.screenshot({ path: `${ARTIFACTS}/tenant-trial-error.png`, fullPage: true });

  await page.fill('#trial-days', '14');
  await Promise.all([page.waitForURL(`${SIM}/checkout/**`), page.click('#subscribe')]);
  await page.fill('#cardNumber', '4242 4242 4242 4242');
  await Promise.all([page.waitForURL(`${BASE}/billing?done=subscribed`), page.click('#submit')]);
  await settle();
  await reloadUntil(page, '#subscription-status', 'trial');
  const d = await dashboard(TOKENS.umbrella);
  const trialEnd = day(d.current_subscription.current_period_end);
  assert.equal(await page.textContent('#upcoming-total'), '$0.00');
  assert.match(await page.textContent('#upcoming-when'), new RegExp(`^Free during your trial until ${trialEnd}\\.`));
  assert.equal(await page.textContent('#next-charge'), `$299.00 on ${trialEnd}, when the trial ends`);
  await shots(TOKENS.umbrella, 'tenant-trial');
  assertCleanPages();
});

test("a super admin on an organization's page is told whose it is, and its buttons name it", async () => {
  const sa = await open(TOKENS.superAdmin);
  await sa.goto(`${BASE}/billing?tenant_id=initech`);
  assert.match(await sa.textContent('#acting-as'), /^You are viewing Initech Mortuary's billing as super admin\./);
  assert.equal((await sa.textContent('#cancel-subscription')).trim(), "Cancel Initech Mortuary's subscription");
  assert.equal((await sa.textContent('#subscription-h')).trim(), "Initech Mortuary's subscription");
  await Promise.all([sa.waitForURL(`${BASE}/billing/cancel?tenant_id=initech`), sa.click('#cancel-subscription')]);
  assert.equal(await sa.textContent('h1'), "Cancel Initech Mortuary's subscription?");
  assert.match(await sa.textContent('#confirm-cancel'), /Initech Mortuary's/);
  await Promise.all([sa.waitForURL(`${BASE}/billing?tenant_id=initech`), sa.click('#keep-subscription')]);
  await shots(TOKENS.superAdmin, 'tenant-super-admin', `${BASE}/billing?tenant_id=initech`);
  assertCleanPages();
});
