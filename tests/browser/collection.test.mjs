// A payment that does not go through at once, in headless Chromium: the bank asks the customer to confirm
// (the banner leads to the hosted invoice, whose button confirms), and a bank debit that is processing for
// days (shown as such, then gone once the bank pays). Started by scripts/browser-tests.sh.
//
// Its organizations (Wayne, Stark) are added by the script with their tokens; the simulator's clock is
// shared with the other files, so dates are never assumed.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { env, BASE, SIM, ARTIFACTS, PHONE, settle } from './common.mjs';

const WAYNE = env('WAYNE_TOKEN');
const STARK = env('STARK_TOKEN');
const DESKTOP = { width: 1366, height: 900 };

let browser;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({ executablePath: env('CHROMIUM'), args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
});

async function simPost(path, form) {
  const resp = await fetch(`${SIM}${path}`, {
    method: 'POST',
    headers: { authorization: 'Bearer sk_test_x', 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form),
  });
  assert.ok(resp.ok, `${path}: ${resp.status}`);
  return resp.json();
}

async function open(token, viewport = DESKTOP) {
  const page = await (await browser.newContext({ viewport })).newPage();
  await page.goto(`${BASE}/sign-in`);
  await page.fill('#token', token);
  await Promise.all([page.waitForURL(/\/billing$/), page.click('#sign-in')]);
  return page;
}

/** Subscribes through the service's Checkout session, on the hosted page: `pay` fills and submits it. */
async function checkout(token, trialDays, pay) {
  const page = await open(token);
  if (trialDays) await page.fill('#trial-days', String(trialDays));
  await Promise.all([page.waitForURL(`${SIM}/checkout/**`), page.click('#subscribe')]);
  await pay(page);
  await page.waitForURL(`${BASE}/billing?done=subscribed`);
  await settle();
  return page;
}

/** Reloads until `selector` is on the page (or, with `gone`, until it is not). */
async function reloadUntil(page, selector, gone = false) {
  const deadline = Date.now() + 20000;
  for (;;) {
    const n = await page.locator(selector).count();
    if (gone ? n === 0 : n > 0) return page.locator(selector).first();
    assert.ok(Date.now() < deadline, `${selector} never ${gone ? 'went' : 'appeared'}`);
    await page.waitForTimeout(250);
    await page.reload();
  }
}

test('the bank asks to confirm a payment: the banner leads to the invoice, where it is confirmed', async () => {
  // Checkout authenticates the card on its page; the renewal at the trial's end is off-session.
  const page = await checkout(WAYNE, 1, async (p) => {
    await p.fill('#cardNumber', '4000 0027 6000 3184');
    await p.click('#submit');
  });
  await simPost('/_sim/clock/advance', { seconds: String(2 * 86400) });
  await settle();
  const banner = await reloadUntil(page, '#payment-action-required');
  const text = await banner.textContent();
  assert.match(text, /^Your bank asks you to confirm this payment\./);
  assert.match(text, /keeps access until/);
  assert.doesNotMatch(text, /update the card/i);
  assert.equal(await page.locator('#payment-failed').count(), 0, 'not shown as a declined card');
  await page.screenshot({ path: `${ARTIFACTS}/tenant-action-required.png`, fullPage: true });
  const phone = await open(WAYNE, PHONE);
  await phone.screenshot({ path: `${ARTIFACTS}/tenant-action-required-phone.png`, fullPage: true });

  await Promise.all([page.waitForURL(`${SIM}/invoice/**`), page.click('#confirm-payment')]);
  assert.match(await page.textContent('#action-required'), /Your bank asks you to confirm this payment/);
  await page.click('#confirm-payment');
  await page.waitForLoadState();
  assert.equal(await page.textContent('#invoice-status'), 'paid');
  await settle();
  await page.goto(`${BASE}/billing`);
  await reloadUntil(page, '#payment-action-required', true);
  assert.match(await page.textContent('#subscription-status'), /active/);
});

test('a bank debit shows as processing until the bank pays it', async () => {
  const page = await checkout(STARK, 0, async (p) => {
    await p.fill('#accountNumber', '000123456789');
    await p.click('#submit-bank');
  });
  const notice = await reloadUntil(page, '#payment-processing');
  assert.match(await notice.textContent(), /^Payment processing \(bank debit\)\./);
  assert.match(await notice.textContent(), /\$299\.00/);
  assert.equal(await page.locator('#payment-failed').count(), 0);
  assert.match(await page.textContent('#invoices'), /processing \(bank debit\)/);
  assert.match(await page.textContent('#payment-method'), /STRIPE TEST BANK •••• 6789|Bank account •••• 6789|Stripe test bank •••• 6789/i);
  await page.screenshot({ path: `${ARTIFACTS}/tenant-payment-processing.png`, fullPage: true });

  await simPost('/_sim/clock/advance', { seconds: String(4 * 86400 + 3600) });
  await settle();
  await reloadUntil(page, '#payment-processing', true);
  assert.doesNotMatch(await page.textContent('#invoices'), /processing/);
});
