// The billing pages in headless Chromium, against the real service and the Stripe simulator.
// Started by scripts/browser-tests.sh, which provides the URLs and tokens below. The tests run in order:
// each picks up the state the previous one left (subscribed, then canceled, then active...).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { env, BASE, SIM, ARTIFACTS, PHONE, settle } from './common.mjs';

const TOKENS = {
  admin: env('ADMIN_TOKEN'),
  member: env('MEMBER_TOKEN'),
  superAdmin: env('SUPER_TOKEN'),
  service: env('SERVICE_TOKEN'),
};
const DESKTOP = { width: 1280, height: 900 };

let browser;
/** Every page opened, so that each test can check for console errors and tokens in URLs. */
const opened = [];

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({ executablePath: env('CHROMIUM'), args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
});

async function open(token, viewport = DESKTOP) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const record = { page, errors: [], urls: [] };
  // Our pages only: the simulator's hosted pages stand in for Stripe's and are not under test.
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

/** No console errors, and no token in any URL the browser requested, on every page opened so far. */
function assertCleanPages() {
  const tokens = Object.values(TOKENS);
  for (const { errors, urls } of opened) {
    assert.deepEqual(errors, [], 'console errors');
    for (const url of urls) {
      assert.ok(!tokens.some((t) => url.includes(t)), `a token in a URL: ${url}`);
      assert.ok(!url.includes('eyJ'), `a JWT in a URL: ${url}`);
    }
  }
}

/** Labels, one h1, named charts: the basic accessibility checks. */
async function assertAccessible(page) {
  const problems = await page.evaluate(() => {
    const out = [];
    for (const el of document.querySelectorAll('input:not([type=hidden]), textarea, select')) {
      const labelled = (el.id && document.querySelector(`label[for="${el.id}"]`)) || el.getAttribute('aria-label');
      if (!labelled) out.push(`unlabelled ${el.tagName} ${el.id || el.name}`);
    }
    for (const b of document.querySelectorAll('button, a')) {
      if (!(b.textContent.trim() || b.getAttribute('aria-label'))) out.push(`unnamed ${b.tagName}`);
    }
    if (document.querySelectorAll('h1').length !== 1) out.push('not exactly one h1');
    if (!document.documentElement.lang) out.push('no lang');
    for (const svg of document.querySelectorAll('svg[role=img]')) {
      if (!svg.querySelector('title')) out.push(`chart without title ${svg.id}`);
    }
    return out;
  });
  assert.deepEqual(problems, []);
}

async function noHorizontalScroll(page) {
  const { scroll, width } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    width: document.documentElement.clientWidth,
  }));
  assert.ok(scroll <= width, `page scrolls sideways: ${scroll} > ${width}`);
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

let admin;

test('a tenant admin signs in and subscribes with a trial through Checkout', async () => {
  admin = await open(TOKENS.admin);
  assert.equal(new URL(admin.url()).pathname, '/billing');
  assert.match(await admin.textContent('#plan-price'), /\$299\.00/);
  await assertAccessible(admin);
  await admin.fill('#trial-days', '14');
  await Promise.all([admin.waitForURL(`${SIM}/checkout/**`), admin.click('#subscribe')]);
  await admin.fill('#cardNumber', '4242 4242 4242 4242');
  await admin.fill('#cardExpiry', '12 / 34');
  await admin.fill('#cardCvc', '123');
  await admin.fill('#billingName', 'Ada Owner');
  await Promise.all([admin.waitForURL(`${BASE}/billing?done=subscribed`), admin.click('#submit')]);
  await settle();
  const status = await reloadUntil(admin, '#subscription-status', 'trial');
  assert.match(await status.textContent(), /trial/);
  assert.ok(await admin.isVisible('#trial-end'));
  assertCleanPages();
});

test('the admin cancels after confirming, sees the notice, and reactivates', async () => {
  await Promise.all([admin.waitForURL(`${BASE}/billing/cancel`), admin.click('#cancel-subscription')]);
  assert.ok(await admin.isVisible('#keep-subscription'));
  await Promise.all([admin.waitForURL(`${BASE}/billing?done=canceled`), admin.click('#confirm-cancel')]);
  assert.match(await admin.textContent('#cancel-notice'), /set to cancel on/);
  await Promise.all([admin.waitForURL(`${BASE}/billing?done=reactivated`), admin.click('#reactivate')]);
  assert.equal(await admin.locator('#cancel-notice').count(), 0);
  assert.ok(await admin.isVisible('#cancel-subscription'));
  assertCleanPages();
});

test('the admin opens the customer portal and comes back', async () => {
  await Promise.all([admin.waitForURL(`${SIM}/portal/**`), admin.click('#manage-payment')]);
  assert.ok(await admin.isVisible('#subscription'));
  await Promise.all([admin.waitForURL(`${BASE}/billing?done=portal`), admin.click('#return')]);
  assert.ok(await admin.isVisible('#subscription-status'));
  assertCleanPages();
});

test('recorded usage shows on the page', async () => {
  const resp = await fetch(`${BASE}/api/usage/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKENS.service}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      events: [
        { event_id: 'browser-stt-1', tenant_id: 'acme', type: 'stt_words', quantity: 12000 },
        { event_id: 'browser-tts-1', tenant_id: 'acme', type: 'tts_words', quantity: 2345 },
        { event_id: 'browser-call-1', tenant_id: 'acme', type: 'phone_calls', quantity: 1 },
        { event_id: 'browser-call-2', tenant_id: 'acme', type: 'phone_calls', quantity: 1 },
      ],
    }),
  });
  assert.equal(resp.status, 200, await resp.text());
  await admin.goto(`${BASE}/billing`);
  assert.equal(await admin.textContent('#usage-stt'), '12,000');
  assert.equal(await admin.textContent('#usage-tts'), '2,345');
  assert.equal(await admin.textContent('#usage-calls'), '2');
  await admin.screenshot({ path: `${ARTIFACTS}/billing.png`, fullPage: true });
  assertCleanPages();
});

test('a member sees the subscription but no cancel button', async () => {
  const member = await open(TOKENS.member);
  assert.ok(await member.isVisible('#subscription-status'));
  assert.ok(await member.isVisible('#member-note'));
  assert.equal(await member.locator('#cancel-subscription').count(), 0);
  assert.equal(await member.locator('#manage-payment').count(), 0);
  await assertAccessible(member);
  assertCleanPages();
});

test('the super admin sees MRR once the trial ends, toggles demo, and has the run form', async () => {
  const sa = await open(TOKENS.superAdmin);
  assert.equal(new URL(sa.url()).pathname, '/admin/billing');
  assert.equal(await sa.textContent('#org-acme .org-mrr'), '$0.00', 'trialing is not MRR');
  // The trial ends: the first charge succeeds and the subscription turns active.
  await simFetch('/_sim/clock/advance', { seconds: String(15 * 86400) });
  await settle();
  await reloadUntil(sa, '#org-acme .org-mrr', '$299.00');
  assert.equal(await sa.textContent('#kpi-mrr'), '$299.00');
  assert.equal(await sa.textContent('#kpi-active'), '1');
  assert.ok(await sa.isVisible('#chart-revenue'));
  assert.ok(await sa.isVisible('#run-period'));
  assert.ok(await sa.isVisible('#run-dry-run'));
  assert.ok(await sa.isVisible('#run-start'));
  // A dry run of the last closed month, started from the page, appears in the history.
  await Promise.all([sa.waitForURL(`${BASE}/admin/billing?done=run`), sa.click('#run-start')]);
  assert.match(await sa.textContent('body'), /The run has started/);
  await sa.reload();
  assert.match(await sa.textContent('body'), /dry run/i);
  await assertAccessible(sa);
  await sa.screenshot({ path: `${ARTIFACTS}/admin-billing.png`, fullPage: true });

  // Demo on: the tenant's page shows the banner; the organization leaves MRR.
  await Promise.all([sa.waitForURL(`${BASE}/admin/billing/tenants/acme/demo?is_demo=true`), sa.click('#org-acme .demo-toggle')]);
  await Promise.all([sa.waitForURL(`${BASE}/admin/billing?done=demo_on&tenant=acme`), sa.click('#demo-confirm')]);
  assert.equal(await sa.textContent('#kpi-mrr'), '$0.00');
  // The notice names the organization and says Stripe stopped collecting its subscription.
  assert.match(await sa.textContent('#done'), /is now a demo account: exempt from billing charges\. Stripe no longer collects its subscription/);
  await admin.goto(`${BASE}/billing`);
  assert.match(await admin.textContent('#demo-banner'), /This is a demo account and is exempt from billing charges\./);
  await Promise.all([sa.waitForURL(`${BASE}/admin/billing/tenants/acme/demo?is_demo=false`), sa.click('#org-acme .demo-toggle')]);
  await Promise.all([sa.waitForURL(`${BASE}/admin/billing?done=demo_off&tenant=acme`), sa.click('#demo-confirm')]);
  assert.match(await sa.textContent('#done'), /collects its subscription .* again from the next renewal/);
  assert.match(await sa.textContent('#audit'), /tenant\.demo_on/);
  assertCleanPages();
});

test('both pages fit a phone screen', async () => {
  const phone = await open(TOKENS.admin, PHONE);
  await noHorizontalScroll(phone);
  await phone.screenshot({ path: `${ARTIFACTS}/billing-phone.png`, fullPage: true });
  const saPhone = await open(TOKENS.superAdmin, PHONE);
  await noHorizontalScroll(saPhone);
  await saPhone.screenshot({ path: `${ARTIFACTS}/admin-billing-phone.png`, fullPage: true });
  assertCleanPages();
});
