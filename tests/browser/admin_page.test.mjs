// The super admin's pages in headless Chromium: run statuses and run reports, the confirmation of a live
// run and the refused second submit, failed payments behind the KPI and the payment flag, the demo
// toggle's confirmation, the run form's errors, and the layout at 1366 px and 390 px.
// Started by scripts/browser-tests.sh (organizations initrode and vandelay are this file's own). The tests
// run in order, each on the state the previous one left. At the end both organizations are demo
// accounts, so the tenant page tests that follow count only acme in MRR.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { env, BASE, SIM, ARTIFACTS, PHONE, settle } from './common.mjs';

const TOKENS = {
  superAdmin: env('SUPER_TOKEN'),
  service: env('SERVICE_TOKEN'),
  initrode: env('INITRODE_TOKEN'),
  vandelay: env('VANDELAY_TOKEN'),
};
const DESKTOP = { width: 1366, height: 900 };
const GOOD_CARD = '4242424242424242';
const FAILING_CARD = '4000000000000341';

// The last closed month (the billing time zone is UTC here) and the one before it.
const month = (offset) => {
  const now = new Date();
  const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + offset, 1));
  return {
    id: `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, '0')}`,
    name: d.toLocaleString('en-US', { month: 'long', year: 'numeric', timeZone: 'UTC' }),
  };
};
const PERIOD = month(-1);
const EARLIER = month(-2);

let browser;
const opened = [];
/** The background colour of each run status seen, by its class. */
const statusColours = new Map();

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({ executablePath: env('CHROMIUM'), args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  // Leave this file's organizations out of the figures the tenant page tests check.
  for (const t of ['initrode', 'vandelay']) {
    await api('POST', `/api/billing/set-demo-status/${t}?is_demo=true`, TOKENS.superAdmin, {});
  }
});

async function open(token, viewport = DESKTOP) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const record = { page, errors: [], urls: [] };
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
    for (const svg of document.querySelectorAll('svg[role=img]')) {
      if (!svg.querySelector('title')) out.push(`chart without title ${svg.id}`);
    }
    return out;
  });
  assert.deepEqual(problems, []);
}

async function api(method, path, token, body) {
  const resp = await fetch(`${BASE}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  assert.ok(resp.ok, `${method} ${path}: ${resp.status} ${text}`);
  return JSON.parse(text);
}

async function simFetch(path, form, method) {
  const resp = await fetch(`${SIM}${path}`, {
    method: method ?? (form ? 'POST' : 'GET'),
    headers: { authorization: 'Bearer sk_test_x', 'content-type': 'application/x-www-form-urlencoded' },
    body: form ? new URLSearchParams(form) : undefined,
  });
  assert.ok(resp.ok, `${path}: ${resp.status}`);
  return resp.json();
}


/** Waits until the run has ended and returns it as the API reads it. */
async function runEnded(runId) {
  const deadline = Date.now() + 30000;
  for (;;) {
    const run = await api('GET', `/api/admin/billing/runs/${runId}`, TOKENS.superAdmin);
    if (run.status !== 'running') return run;
    assert.ok(Date.now() < deadline, `run ${runId} did not end`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function subscribe(token, card, trialDays) {
  const body = { success_url: `${BASE}/billing?done=subscribed`, cancel_url: `${BASE}/billing` };
  if (trialDays) body.trial_days = trialDays;
  const session = await api('POST', '/api/billing/create-checkout-session', token, body);
  await simFetch(`/_sim/checkout/sessions/${session.session_id}/complete`, { card });
}

/** The badge of a run status: its class and text, its background colour recorded. */
async function runStatus(locator) {
  const badge = locator.locator('.run-status').first();
  const info = await badge.evaluate((el) => ({
    className: el.className,
    text: el.textContent.trim(),
    background: getComputedStyle(el).backgroundColor,
  }));
  const kind = info.className.split(' ').find((c) => c.startsWith('run-') && c !== 'run-status');
  statusColours.set(kind, info.background);
  return { ...info, kind };
}

const runIdOf = (url) => new URL(url).pathname.split('/').pop();

let sa;

test('a live run shows what a dry run says it will bill, starts once, and reloads while it runs', async () => {
  // initrode pays by a good card; vandelay is in a trial with a card that declines every charge.
  await subscribe(TOKENS.initrode, GOOD_CARD);
  await subscribe(TOKENS.vandelay, FAILING_CARD, 1);
  await settle();
  const at = `${PERIOD.id}-15T12:00:00Z`;
  await api('POST', '/api/usage/events', TOKENS.service, {
    events: [
      // initrode: 10,000 words ($10.00) and 2 calls ($2.00); vandelay: 5,000 words and 1 call ($6.00).
      { event_id: 'admin-initrode-stt', tenant_id: 'initrode', type: 'stt_words', quantity: 8000, occurred_at: at },
      { event_id: 'admin-initrode-tts', tenant_id: 'initrode', type: 'tts_words', quantity: 2000, occurred_at: at },
      { event_id: 'admin-initrode-call-1', tenant_id: 'initrode', type: 'phone_calls', quantity: 1, occurred_at: at },
      { event_id: 'admin-initrode-call-2', tenant_id: 'initrode', type: 'phone_calls', quantity: 1, occurred_at: at },
      { event_id: 'admin-vandelay-stt', tenant_id: 'vandelay', type: 'stt_words', quantity: 5000, occurred_at: at },
      { event_id: 'admin-vandelay-call', tenant_id: 'vandelay', type: 'phone_calls', quantity: 1, occurred_at: at },
    ],
  });

  sa = await open(TOKENS.superAdmin);
  await sa.fill('#run-period', PERIOD.id);
  await sa.uncheck('#run-dry-run');
  const firstForm = await sa.evaluate(() => Object.fromEntries(new FormData(document.querySelector('#run-form'))));
  await Promise.all([sa.waitForURL(`${BASE}/admin/billing/runs`), sa.click('#run-start')]);
  // Nothing has started: the page says what the run will bill and waits for the Confirm button.
  assert.equal(await sa.textContent('h1'), 'Confirm the live run');
  assert.equal((await sa.textContent('#run-confirm-summary')).trim(), `Bill 2 organizations $18.00 for ${PERIOD.name}`);
  assert.match(await sa.textContent('#run-confirm'), /Confirm/);
  // Per organization, by name, what it will be billed.
  assert.match(await sa.textContent('#confirm-initrode'), /Initrode Cremation[\s\S]*Phone Calls: 2 calls[\s\S]*\$12\.00/);
  assert.match(await sa.textContent('#confirm-vandelay'), /Vandelay Chapel[\s\S]*\$6\.00/);
  assert.equal(await sa.getAttribute('#run-cancel', 'href'), '/admin/billing#runs');
  let runs = await api('GET', '/api/admin/billing/runs', TOKENS.superAdmin);
  assert.equal(runs.runs.filter((r) => !r.dry_run).length, 0, 'no live run before the confirmation');
  await assertAccessible(sa);
  await sa.screenshot({ path: `${ARTIFACTS}/admin-run-confirm.png`, fullPage: true });

  // The first invoice Stripe is asked to create answers late, then refuses: one organization fails.
  await simFetch('/_sim/faults', { path: '/v1/invoices', method: 'POST', status: '400', delay_ms: '3000', count: '1' });
  const confirmForm = await sa.evaluate(() => Object.fromEntries(new FormData(document.querySelector('#run-confirm-form'))));
  await Promise.all([sa.waitForURL(/\/admin\/billing\/runs\/run_[0-9a-f]{32}$/), sa.click('#run-confirm')]);
  const runId = runIdOf(sa.url());
  // While it runs, the run's page says so and reloads itself (a meta refresh: no script).
  const running = await runStatus(sa.locator('#run-summary'));
  assert.equal(running.kind, 'run-running');
  assert.equal(running.text, 'running');
  assert.equal(await sa.getAttribute('meta[http-equiv=refresh]', 'content'), '3');
  assert.match(await sa.textContent('#run-running'), /reloads every 3 seconds/);

  // The same confirmation sent again (a double click), and the first form sent again (back, resubmit):
  // both refused, nothing started.
  for (const form of [confirmForm, firstForm]) {
    const again = await sa.request.post(`${BASE}/admin/billing/runs`, { form, headers: { origin: BASE } });
    assert.equal(again.status(), 409);
    const text = await again.text();
    assert.match(text, /This run was already started/);
    assert.ok(text.includes(`/admin/billing/runs/${runId}`), 'links the run');
  }
  runs = await api('GET', '/api/admin/billing/runs', TOKENS.superAdmin);
  assert.equal(runs.runs.filter((r) => !r.dry_run && r.period === PERIOD.id).length, 1, 'one live run');

  const ended = await runEnded(runId);
  assert.equal(ended.status, 'completed');
  assert.equal(ended.report.failed.length, 1, JSON.stringify(ended.report));
  await sa.reload();
  assert.equal(await sa.locator('meta[http-equiv=refresh]').count(), 0, 'no reload once it ended');
  const partial = await runStatus(sa.locator('#run-summary'));
  assert.equal(partial.kind, 'run-completed-with-failures');
  assert.equal(partial.text, 'completed with failures');
  const failedTenant = ended.report.failed[0].tenant_id;
  const billedTenant = failedTenant === 'initrode' ? 'vandelay' : 'initrode';
  assert.match(await sa.textContent('#run-error'), new RegExp(`Some organizations were not billed: ${failedTenant}: .+`));
  // Per organization: the failure with its error, the lines billed, and why the others were skipped.
  assert.ok((await sa.textContent(`#tenant-${failedTenant} .tenant-error`)).trim().length > 0);
  assert.match(await sa.textContent(`#tenant-${billedTenant}`), /billed/);
  assert.match(await sa.textContent(`#tenant-${billedTenant}`), /Voice Usage: [\d,]+ words/);
  assert.match(await sa.textContent('#tenant-acme .skip-reason'), /No subscription: its usage waits until it subscribes/);
  assert.match(await sa.textContent('#run-billed'), /^1 · \$(12|6)\.00$/);
  await assertAccessible(sa);
  await sa.screenshot({ path: `${ARTIFACTS}/admin-run-detail.png`, fullPage: true });
  assertCleanPages();
});

test('a repeated run bills what is left and says the rest was already billed; a dry run lists nothing as billed', async () => {
  await simFetch('/_sim/faults', undefined, 'DELETE');
  await sa.goto(`${BASE}/admin/billing`);
  await sa.fill('#run-period', PERIOD.id);
  await sa.uncheck('#run-dry-run');
  await Promise.all([sa.waitForURL(`${BASE}/admin/billing/runs`), sa.click('#run-start')]);
  const summary = (await sa.textContent('#run-confirm-summary')).trim();
  assert.match(summary, new RegExp(`^Bill 1 organization \\$(12|6)\\.00 for ${PERIOD.name}$`));
  assert.match(await sa.textContent('#confirm-already-billed'), /1 already billed for the period: not billed again/);
  await Promise.all([sa.waitForURL(/\/admin\/billing\/runs\/run_/), sa.click('#run-confirm')]);
  const rerun = await runEnded(runIdOf(sa.url()));
  assert.deepEqual(rerun.report.failed, []);
  await sa.reload();
  assert.equal((await runStatus(sa.locator('#run-summary'))).kind, 'run-completed');
  assert.match(await sa.textContent('#run-billed'), /^1 · \$(12|6)\.00$/);
  assert.equal((await sa.textContent('#run-already-billed')).trim(), '1');

  // A dry run now: both organizations are already billed; it lists neither as billed.
  await sa.goto(`${BASE}/admin/billing`);
  await sa.fill('#run-period', PERIOD.id);
  await Promise.all([sa.waitForURL(`${BASE}/admin/billing?done=run`), sa.click('#run-start')]);
  const list = await api('GET', '/api/admin/billing/runs', TOKENS.superAdmin);
  const dry = await runEnded(list.runs[0].run_id);
  assert.equal(dry.dry_run, true);
  assert.deepEqual(dry.report.billed, []);
  await sa.goto(`${BASE}/admin/billing`);
  const rows = sa.locator('#runs-table tbody tr');
  const newest = rows.nth(0);
  assert.equal((await runStatus(newest)).kind, 'run-completed');
  assert.equal((await newest.locator('.run-already-billed').textContent()).trim(), '2');
  assert.equal((await newest.locator('.run-billed').textContent()).trim(), '0');
  // The repeated live run: "1 · $x" billed and 1 already billed, not the first run's figures again.
  const second = rows.nth(1);
  assert.match(await second.locator('.run-billed').textContent(), /^1 · \$(12|6)\.00$/);
  assert.equal((await second.locator('.run-already-billed').textContent()).trim(), '1');
  // The first live run, amber, with its error in the row.
  const first = rows.nth(2);
  assert.equal((await runStatus(first)).kind, 'run-completed-with-failures');
  assert.ok((await first.locator('.run-error').textContent()).trim().length > 0);
  // Each row opens its run.
  await Promise.all([sa.waitForURL(/\/admin\/billing\/runs\/run_/), newest.locator('.run-link').click()]);
  assert.equal(await sa.textContent('h1'), `Dry run for ${PERIOD.name}`);
  assert.equal(await sa.locator('#run-tenants .tenant-billed').count(), 0);
  assert.match(await sa.textContent('#tenant-initrode'), /already billed/);
  assert.match(await sa.textContent('#tenant-vandelay'), /already billed/);
  assertCleanPages();
});

test('a run that fails as a whole shows red with its error', async () => {
  // Two live runs of the same period at once (the API, no confirmation): the second finds the period
  // taken while the first waits on Stripe, and fails.
  await simFetch('/_sim/faults', { path: '/v1/subscriptions', method: 'GET', delay_ms: '2000', count: '2' });
  const a = await api('POST', '/api/admin/billing/runs', TOKENS.superAdmin, { period: EARLIER.id, wait: false });
  const b = await api('POST', '/api/admin/billing/runs', TOKENS.superAdmin, { period: EARLIER.id, wait: false });
  const results = [await runEnded(a.run_id), await runEnded(b.run_id)];
  await simFetch('/_sim/faults', undefined, 'DELETE');
  const failed = results.find((r) => r.status === 'failed');
  assert.ok(failed, JSON.stringify(results));
  await sa.goto(`${BASE}/admin/billing`);
  const row = sa.locator(`#run-${failed.run_id}`);
  const status = await runStatus(row);
  assert.equal(status.kind, 'run-failed');
  assert.match(status.className, /\bbad\b/);
  assert.match(await row.locator('.run-error').textContent(), /already in progress/);
  await Promise.all([sa.waitForURL(`${BASE}/admin/billing/runs/${failed.run_id}`), row.locator('.run-link').click()]);
  assert.match(await sa.textContent('#run-error'), /^The run failed: a run for .+ is already in progress/);

  // Running, completed, completed with failures, failed: four colours.
  assert.deepEqual([...statusColours.keys()].sort(), [
    'run-completed', 'run-completed-with-failures', 'run-failed', 'run-running',
  ]);
  assert.equal(new Set(statusColours.values()).size, 4, JSON.stringify([...statusColours]));
  assertCleanPages();
});

test('a declined payment flags the organization, and the KPI opens the failed payments behind it', async () => {
  // The run charged vandelay's usage invoice to a card that declines.
  await settle();
  await sa.goto(`${BASE}/admin/billing`);
  assert.equal(await sa.textContent('#kpi-failed'), '1');
  assert.match(await sa.textContent('#org-vandelay .payment-flag'), /payment failed\s+\$6\.00 unpaid/);
  assert.equal(await sa.locator('#org-initrode .payment-flag').count(), 0);
  await Promise.all([sa.waitForURL(`${BASE}/admin/billing/failed-payments`), sa.click('#kpi-failed-link')]);
  assert.equal(await sa.textContent('h1'), 'Failed payments, last 30 days');
  const rows = sa.locator('#failed-payments tbody tr');
  assert.equal(await rows.count(), 1);
  assert.equal((await rows.first().locator('.fp-org').textContent()).trim(), 'Vandelay Chapel');
  assert.equal((await rows.first().locator('.fp-amount').textContent()).trim(), '$6.00');
  assert.ok((await rows.first().locator('.fp-invoice').textContent()).trim().length > 1);
  assert.match(await rows.first().textContent(), /open/);

  // The trial ends and its first charge fails too: the subscription is past due.
  await simFetch('/_sim/clock/advance', { seconds: String(2 * 86400) });
  await settle();
  await sa.goto(`${BASE}/admin/billing`);
  const kpi = Number(await sa.textContent('#kpi-failed'));
  assert.ok(kpi >= 2, `failed payments: ${kpi}`);
  assert.match(await sa.textContent('#org-vandelay'), /past due/);
  assert.match(await sa.textContent('#org-vandelay .payment-flag'), /payment failed\s+renewal unpaid/);
  await sa.click('#kpi-failed-link');
  await sa.waitForURL(`${BASE}/admin/billing/failed-payments`);
  // The list is exactly what the KPI counts.
  assert.equal(await sa.locator('#failed-payments tbody tr').count(), kpi);
  await assertAccessible(sa);
  await sa.screenshot({ path: `${ARTIFACTS}/admin-failed-payments.png`, fullPage: true });
  assertCleanPages();
});

test('the demo toggle asks first, and its notice names the organization', async () => {
  await sa.goto(`${BASE}/admin/billing`);
  await Promise.all([
    sa.waitForURL(`${BASE}/admin/billing/tenants/initrode/demo?is_demo=true`),
    sa.click('#org-initrode .demo-toggle'),
  ]);
  assert.equal(await sa.textContent('h1'), 'Make Initrode Cremation a demo account?');
  assert.match(await sa.textContent('#demo-consequences'), /Stripe stops collecting its subscription sub_\w+/);
  await assertAccessible(sa);
  await sa.screenshot({ path: `${ARTIFACTS}/admin-demo-confirm.png`, fullPage: true });
  // Cancel changes nothing.
  await Promise.all([sa.waitForURL(`${BASE}/admin/billing#org-initrode`), sa.click('#demo-cancel')]);
  assert.equal(await sa.locator('#org-initrode .badge.info').count(), 0);
  await sa.click('#org-initrode .demo-toggle');
  await Promise.all([sa.waitForURL(`${BASE}/admin/billing?done=demo_on&tenant=initrode`), sa.click('#demo-confirm')]);
  assert.match(await sa.textContent('#done'), /^Initrode Cremation is now a demo account: exempt from billing charges\./);
  assertCleanPages();
});

test('the run form\'s errors say what to fix and lead back to the admin page', async () => {
  for (const [period, why] of [['2026-13', /write it as YYYY-MM/], [month(0).id, /has not ended yet/]]) {
    await sa.goto(`${BASE}/admin/billing`);
    await sa.fill('#run-period', period);
    await Promise.all([sa.waitForURL(`${BASE}/admin/billing/runs`), sa.click('#run-start')]);
    assert.ok(!(await sa.title()).includes('Unprocessable'), await sa.title());
    assert.equal(await sa.textContent('h1'), 'The run was not started');
    assert.match(await sa.textContent('#admin-error-message'), why);
    assert.equal(await sa.getAttribute('#back-to-admin', 'href'), '/admin/billing');
  }
  await sa.screenshot({ path: `${ARTIFACTS}/admin-run-error.png`, fullPage: true });
  // Chromium logs every 4xx page it loads; these two were asked for.
  for (const record of opened) {
    record.errors = record.errors.filter((e) => !e.includes(`status of 422 (Unprocessable Entity) (${BASE}/admin/billing/runs)`));
  }
  assertCleanPages();
});

/** Relative luminance contrast of two `rgb(...)` colours. */
function contrast(a, b) {
  const lum = (c) => {
    const [r, g, bl] = c.match(/\d+(\.\d+)?/g).slice(0, 3).map(Number).map((v) => {
      const s = v / 255;
      return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

test('the admin pages fit 1366 px and a phone', async () => {
  const list = await api('GET', '/api/admin/billing/runs', TOKENS.superAdmin);
  const pages = [
    ['overview', '/admin/billing'],
    ['run', `/admin/billing/runs/${list.runs.find((r) => !r.dry_run && r.status === 'completed').run_id}`],
    ['failed-payments', '/admin/billing/failed-payments'],
    ['demo-confirm', '/admin/billing/tenants/vandelay/demo?is_demo=true'],
  ];
  for (const [viewport, suffix] of [[DESKTOP, '1366'], [PHONE, 'phone']]) {
    const page = await open(TOKENS.superAdmin, viewport);
    for (const [name, path] of pages) {
      await page.goto(`${BASE}${path}`);
      const fit = await page.evaluate(() => {
        const header = document.querySelector('header.top').getBoundingClientRect();
        const first = document.querySelector('main').firstElementChild.getBoundingClientRect();
        return {
          scroll: document.documentElement.scrollWidth,
          width: document.documentElement.clientWidth,
          gap: first.top - header.bottom,
        };
      });
      assert.ok(fit.scroll <= fit.width, `${name} at ${suffix} scrolls sideways: ${fit.scroll} > ${fit.width}`);
      assert.ok(fit.gap >= 16, `${name} at ${suffix}: content ${fit.gap}px below the header`);
      await assertAccessible(page);
      await page.screenshot({ path: `${ARTIFACTS}/admin-page-${name}-${suffix}.png`, fullPage: true });
    }

    // The live run's confirmation (cancelled: nothing starts) and the run form's error page.
    for (const [name, period, dry] of [['run-confirm', PERIOD.id, false], ['run-error', '2026-13', true]]) {
      await page.goto(`${BASE}/admin/billing`);
      await page.fill('#run-period', period);
      if (!dry) await page.uncheck('#run-dry-run');
      await Promise.all([page.waitForURL(`${BASE}/admin/billing/runs`), page.click('#run-start')]);
      const scroll = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.ok(scroll <= 0, `${name} at ${suffix} scrolls sideways`);
      await assertAccessible(page);
      await page.screenshot({ path: `${ARTIFACTS}/admin-page-${name}-${suffix}.png`, fullPage: true });
    }
    for (const record of opened) {
      record.errors = record.errors.filter((e) => !e.includes(`status of 422 (Unprocessable Entity) (${BASE}/admin/billing/runs)`));
    }

    await page.goto(`${BASE}/admin/billing`);
    // A large MRR stays inside its card.
    const mrr = await page.evaluate(() => {
      const value = document.querySelector('#kpi-mrr');
      value.textContent = '$123,456.78';
      const card = value.closest('.kpi').getBoundingClientRect();
      const box = value.getBoundingClientRect();
      return { right: box.right, cardRight: card.right, lines: Math.round(box.height / parseFloat(getComputedStyle(value).lineHeight)) };
    });
    assert.ok(mrr.right <= mrr.cardRight, `MRR overflows its card: ${JSON.stringify(mrr)}`);
    assert.equal(mrr.lines, 1, 'the MRR figure is on one line');
    // Close-ups, readable at their own size (the full pages are long).
    for (const [part, selector] of [['kpis', '.kpis'], ['charts', '.grid'], ['runs', '#runs'], ['organizations', '#organizations']]) {
      await page.locator(selector).first().screenshot({ path: `${ARTIFACTS}/admin-page-${part}-${suffix}.png` });
    }

    // Charts: the drawing for the width is shown, with a value on every bar that has one, and text of a
    // readable size.
    const wide = viewport === DESKTOP;
    const shown = wide ? '#chart-revenue' : '#chart-revenue-narrow';
    const hidden = wide ? '#chart-revenue-narrow' : '#chart-revenue';
    assert.ok(await page.isVisible(shown));
    assert.ok(!(await page.isVisible(hidden)));
    const chart = await page.evaluate((sel) => {
      const svg = document.querySelector(sel);
      const sizes = [...svg.querySelectorAll('text')].map((t) => t.getBoundingClientRect().height);
      return { values: svg.querySelectorAll('text.bar-value').length, smallest: Math.min(...sizes) };
    }, shown);
    assert.ok(chart.values > 0, 'values on the bars');
    assert.ok(chart.smallest >= 10, `chart text ${chart.smallest}px high`);

    if (wide) {
      // At 1366 px the admin page's tables fit their cards.
      for (const table of ['#organizations-table', '#runs-table']) {
        const fits = await page.evaluate((sel) => {
          const box = document.querySelector(sel).closest('.table-scroll');
          return box.scrollWidth <= box.clientWidth;
        }, table);
        assert.ok(fits, `${table} scrolls at 1366 px`);
      }
    } else {
      // Wide tables scroll in their card, with the cue: a hint above and a shadow at the edge.
      const table = await page.evaluate(() => {
        const box = document.querySelector('#runs-table').closest('.table-scroll');
        return {
          overflows: box.scrollWidth > box.clientWidth,
          shadow: getComputedStyle(box).backgroundImage.includes('radial-gradient'),
        };
      });
      assert.ok(table.overflows && table.shadow, JSON.stringify(table));
      assert.ok(await page.locator('#runs .scroll-hint').isVisible());
    }

    // The focus ring: at least 3:1 against white.
    await page.focus('#run-period');
    const ring = await page.evaluate(() => {
      const s = getComputedStyle(document.querySelector('#run-period'));
      return { colour: s.outlineColor, width: parseFloat(s.outlineWidth), style: s.outlineStyle };
    });
    assert.equal(ring.style, 'solid');
    assert.ok(ring.width >= 2, JSON.stringify(ring));
    assert.ok(contrast(ring.colour, 'rgb(255, 255, 255)') >= 3, JSON.stringify(ring));
  }
  assertCleanPages();
});
