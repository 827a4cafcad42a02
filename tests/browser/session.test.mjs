// The pages' session in headless Chromium: the __Host- cookie (on 127.0.0.1 and on localhost over plain
// http), an expired token or session saying so and coming back to the page, sign-out ended on the server,
// and sign-in refused from another site. Started by scripts/browser-tests.sh.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { env, BASE, ARTIFACTS, PHONE } from './common.mjs';

const ADMIN_TOKEN = env('ADMIN_TOKEN');
const SUPER_TOKEN = env('SUPER_TOKEN');
const COOKIE = '__Host-billing_session';
const EXPIRED = 'Your session expired. Sign in again.';
const DESKTOP = { width: 1366, height: 900 };

/** A platform token signed with the service's JWT_SECRET, with any claims. */
function mint(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${input}.${createHmac('sha256', env('JWT_SECRET')).update(input).digest('base64url')}`;
}
const now = () => Math.floor(Date.now() / 1000);

let browser;
before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({ executablePath: env('CHROMIUM'), args: ['--no-sandbox'] });
});
after(async () => {
  await browser?.close();
});

async function fresh(viewport = DESKTOP) {
  const context = await browser.newContext({ viewport });
  return { context, page: await context.newPage() };
}

/** Pastes `token` on the sign-in page already open and submits it. */
async function submitToken(page, token) {
  await page.fill('#token', token);
  await Promise.all([page.waitForLoadState('load'), page.click('#sign-in')]);
}

async function sessionCookie(context, base = BASE) {
  return (await context.cookies(base)).find((c) => c.name === COOKIE);
}

test('the session cookie is __Host-: Secure, host-only, Path=/, on 127.0.0.1 and on localhost', async () => {
  for (const base of [BASE, BASE.replace('127.0.0.1', 'localhost')]) {
    const { context, page } = await fresh();
    await page.goto(`${base}/sign-in`);
    await submitToken(page, ADMIN_TOKEN);
    // Chromium kept the Secure cookie over plain http (loopback is a secure context) and sent it back.
    assert.equal(page.url(), `${base}/billing`, base);
    assert.equal(await page.locator('h1').count(), 1);
    const cookie = await sessionCookie(context, base);
    assert.ok(cookie, `no ${COOKIE} at ${base}: ${JSON.stringify(await context.cookies())}`);
    assert.equal(cookie.secure, true);
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.path, '/');
    assert.equal(cookie.sameSite, 'Lax');
    // Host-only: the domain is the host itself, not `.host` (no Domain attribute was sent).
    assert.equal(cookie.domain, new URL(base).hostname);
    assert.ok(!cookie.value.includes('.'), 'the cookie is an id, not the token');
    assert.equal((await context.cookies()).length, 1, 'one cookie, no other');
    await context.close();
  }
});

test('an expired token pasted at sign-in says the session expired', async () => {
  const { context, page } = await fresh();
  await page.goto(`${BASE}/sign-in`);
  await submitToken(page, mint({ sub: 'u', tenant_id: 'acme', role: 'org_admin', exp: now() - 3600 }));
  assert.match(await page.locator('#session-expired').innerText(), new RegExp(EXPIRED));
  assert.match(await page.locator('#session-expired').innerText(), /get a new one from the platform/);
  assert.equal(await sessionCookie(context), undefined);
  await page.screenshot({ path: `${ARTIFACTS}/session-expired-token.png`, fullPage: true });
  await context.close();
});

test('a session that expires on a page says so at sign-in, and signing in comes back to the page', async () => {
  for (const [name, viewport] of [['desktop', DESKTOP], ['phone', PHONE]]) {
    const { context, page } = await fresh(viewport);
    // The API accepts a token for 60 s after its `exp`, and the session lasts as long: 4 s from now.
    const short = mint({ sub: 'ops', tenant_id: 'platform', role: 'super_admin', exp: now() - 56 });
    await page.goto(`${BASE}/sign-in`);
    await submitToken(page, short);
    const where = `${BASE}/billing?tenant_id=acme`;
    await page.goto(where);
    assert.equal(page.url(), where);
    assert.match(await page.locator('body').innerText(), /Acme Funeral Home/);
    await page.waitForTimeout(5000);

    await page.reload();
    const url = new URL(page.url());
    assert.equal(url.pathname, '/sign-in', page.url());
    assert.equal(url.searchParams.get('next'), '/billing?tenant_id=acme');
    assert.equal(await page.locator('#session-expired').innerText(), EXPIRED);
    assert.equal(await sessionCookie(context), undefined, 'the expired cookie is dropped');
    await page.screenshot({ path: `${ARTIFACTS}/session-expired-${name}.png`, fullPage: true });
    const { scroll, width } = await page.evaluate(() => ({
      scroll: document.documentElement.scrollWidth,
      width: document.documentElement.clientWidth,
    }));
    assert.ok(scroll <= width, `the sign-in page scrolls sideways: ${scroll} > ${width}`);

    await submitToken(page, SUPER_TOKEN);
    assert.equal(page.url(), where, 'back where the person was');
    assert.match(await page.locator('body').innerText(), /Acme Funeral Home/);
    await context.close();
  }
});

test('after sign-out the old cookie, replayed in another browser, opens nothing', async () => {
  const { context, page } = await fresh();
  await page.goto(`${BASE}/sign-in`);
  await submitToken(page, ADMIN_TOKEN);
  assert.equal(page.url(), `${BASE}/billing`);
  const stolen = await sessionCookie(context);
  const replay = async () => {
    const other = await browser.newContext();
    await other.addCookies([{ ...stolen, expires: -1 }]);
    const p = await other.newPage();
    await p.goto(`${BASE}/billing`);
    const seen = { url: p.url(), expired: await p.locator('#session-expired').count() };
    await other.close();
    return seen;
  };
  // While signed in, the copied cookie works: the replay below is refused for the sign-out alone.
  assert.equal((await replay()).url, `${BASE}/billing`);

  await Promise.all([page.waitForURL(/\/sign-in$/), page.click('#sign-out')]);
  assert.equal(await sessionCookie(context), undefined);
  const after = await replay();
  assert.equal(new URL(after.url).pathname, '/sign-in', after.url);
  assert.equal(after.expired, 0, 'ended, not expired');
  await context.close();
});

test('next never leaves the site', async () => {
  for (const next of ['//evil.example/', 'https://evil.example/', '/\\evil.example']) {
    const { context, page } = await fresh();
    await page.goto(`${BASE}/sign-in?${new URLSearchParams({ next })}`);
    await submitToken(page, ADMIN_TOKEN);
    assert.equal(page.url(), `${BASE}/billing`, next);
    await context.close();
  }
});

test('a sign-in form on another site is refused (login CSRF)', async () => {
  const { context, page } = await fresh();
  await page.route('http://evil.example/', (route) =>
    route.fulfill({
      contentType: 'text/html',
      body: `<!doctype html><form method="post" action="${BASE}/auth/session">
        <input type="hidden" name="token" value="${ADMIN_TOKEN}">
        <button id="go">Win a prize</button></form>`,
    }),
  );
  await page.goto('http://evil.example/');
  const [response] = await Promise.all([page.waitForResponse(`${BASE}/auth/session`), page.click('#go')]);
  assert.equal(response.status(), 403);
  assert.match(await page.locator('#sign-in-error').innerText(), /another site/);
  assert.equal(await sessionCookie(context), undefined);
  await context.close();
});
