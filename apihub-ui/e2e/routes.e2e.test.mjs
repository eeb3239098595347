// End-to-end: an administrator creates a metered route on the dashboard's route page, and the
// route then works: a client of a mock image-generation service (the second seed's) calls
// `POST /api/generate` with its key in the JSON body and is billed; the service sees the route's
// key, never the client's.
//
//   npm run build && node --test e2e/routes.e2e.test.mjs
//
// Environment: APIHUB_BIN (default ../target/debug/apihub), CHROMIUM (default /usr/bin/chromium).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Processes, freePort, launchChromium, logIn, screenshotOnFailure, waitFor } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const uiRoot = resolve(here, '..');
const bin = resolve(uiRoot, process.env.APIHUB_BIN ?? '../target/debug/apihub');
const uiDir = join(uiRoot, 'dist');
const shots = join(here, 'screenshots');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';

const ADMIN = { username: 'admin', password: 'e2e-admin-password' };
const UPSTREAM_KEY = 'sk-image-service-e2e';
const ROUTE = 'e2e-images';

const processes = new Processes(bin);
/** What the image service received. */
const seen = [];
let images;
let imagesUrl;
let tmp;
let base;
let context;
let page;

/** The mock image service: `POST /generate` answers one image per `batch_size`, for its own key only. */
function imageService() {
  return createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => {
      body += chunk;
    });
    req.on('end', () => {
      seen.push({ url: req.url, headers: req.headers, body });
      const reply = (status, value) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      if (req.headers.authorization !== `Bearer ${UPSTREAM_KEY}`) return reply(401, { error: 'bad key' });
      const count = JSON.parse(body || '{}').batch_size ?? 1;
      return reply(200, { images: Array.from({ length: count }, (_, i) => `aW1n${i}`) });
    });
  });
}

async function api(method, path, token, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

before(async () => {
  assert.ok(existsSync(bin), `no gateway binary at ${bin}: run \`cargo build -p apihub-server\` or set APIHUB_BIN`);
  assert.ok(existsSync(join(uiDir, 'index.html')), `no build in ${uiDir}: run \`npm run build\``);
  assert.ok(existsSync(chromiumPath), `no Chromium at ${chromiumPath}: apt-get install -y chromium`);
  mkdirSync(shots, { recursive: true });
  tmp = mkdtempSync(join(tmpdir(), 'apihub-e2e-routes-'));

  images = imageService();
  const imagesPort = await freePort();
  await new Promise((ok) => images.listen(imagesPort, '127.0.0.1', ok));
  imagesUrl = `http://127.0.0.1:${imagesPort}/generate`;

  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const gateway = processes.start('gateway', ['serve'], {
    HOST: '127.0.0.1',
    PORT: String(port),
    DATABASE_URL: `sqlite://${join(tmp, 'apihub.db')}`,
    DATA_DIR: tmp,
    ADMIN_USERNAME: ADMIN.username,
    ADMIN_PASSWORD: ADMIN.password,
    UPSTREAM_URL: 'http://127.0.0.1:9',
    UI_DIR: uiDir,
    SHUTDOWN_READINESS_DELAY_SECS: '0',
    RUST_LOG: process.env.RUST_LOG ?? 'warn',
  });
  await waitFor('the gateway', async () => (await fetch(`${base}/healthz`)).ok, gateway);
  ({ context, page } = await launchChromium(chromiumPath, tmp));
});

after(async () => {
  await context?.close().catch(() => {});
  await processes.stopAll();
  await new Promise((ok) => (images ? images.close(ok) : ok()));
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test('the route page creates a route for an image API, which then bills a call with the key in the body', async () => {
  await screenshotOnFailure(page, shots, 'routes-failure', journey);
});

async function journey() {
  await logIn(page, base, ADMIN);

  // The menu leads to the page; the form starts from the second seed's shape.
  await page.getByRole('menuitem', { name: 'Metered routes' }).click();
  await page.getByText('No metered routes yet').waitFor();
  await page.getByRole('button', { name: 'New route' }).click();
  assert.equal(await page.locator('#route_path').inputValue(), '/api/generate');
  assert.equal(await page.locator('#route_key_field').inputValue(), 'apiKey');
  await page.locator('#route_name').fill(ROUTE);
  await page.locator('#route_upstream_url').fill(imagesUrl);
  await page.locator('#route_upstream_key').fill(UPSTREAM_KEY);
  await page.locator('#route_price_per_call').fill('0.01');
  await page.locator('#route_price_per_unit').fill('0.05');
  await page.locator('#route_units_pointer').fill('/batch_size');
  await page.locator('.ant-modal').filter({ hasText: 'New route' }).locator('.ant-modal-footer .ant-btn-primary').click();
  await page.getByText(`Route ${ROUTE} saved`).waitFor();
  const row = page.locator('tr', { hasText: ROUTE });
  await row.getByText('/api/generate', { exact: true }).waitFor();
  await row.getByText(`…${UPSTREAM_KEY.slice(-4)}`).waitFor();
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(shots, 'admin-routes.png'), fullPage: true });

  // A client of the image service, with a key of 2 calls and 1 credit.
  const admin = (await api('POST', '/api/auth/login', null, ADMIN)).body.access_token;
  const user = await api('POST', '/api/auth/register', null, { username: 'e2e_painter', password: 'e2e-user-password' });
  assert.equal(user.status, 201);
  assert.equal((await api('POST', `/api/tokens/admin/user/${user.body.id}/recharge`, admin, { amount: '1' })).status, 200);
  const created = await api('POST', `/api/keys/admin/user/${user.body.id}`, admin, { remaining_calls: 2 });
  assert.equal(created.status, 201);
  const key = created.body.key;

  const unknown = await api('POST', '/api/generate', null, { apiKey: 'felix-unknown-key-000000', prompt: 'a cat' });
  assert.equal(unknown.status, 401);
  assert.equal(unknown.body.error.code, 'invalid_api_key');
  assert.equal(seen.length, 0, 'an unknown key never reaches the service');

  const call = await api('POST', '/api/generate', null, { apiKey: key, prompt: 'a cat', batch_size: 4 });
  assert.equal(call.status, 200, JSON.stringify(call.body));
  assert.equal(call.body.images.length, 4);
  assert.equal(seen.length, 1);
  assert.equal(seen[0].headers.authorization, `Bearer ${UPSTREAM_KEY}`);
  assert.ok(!seen[0].body.includes(key) && !JSON.stringify(seen[0].headers).includes(key), 'the client key reached the service');
  assert.deepEqual(JSON.parse(seen[0].body), { prompt: 'a cat', batch_size: 4 });

  // 0.01 + 4 × 0.05 charged, one call used (settled as the response ends: allow it a moment).
  let settled;
  for (let i = 0; i < 50; i++) {
    const [keyView, balance] = await Promise.all([
      api('GET', `/api/keys/${created.body.id}`, admin),
      api('GET', `/api/tokens/admin/user/${user.body.id}/balance`, admin),
    ]);
    settled = { remaining: keyView.body.remaining_calls, balance: String(balance.body.token_balance) };
    if (settled.remaining === 1 && settled.balance === '0.79') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(settled, { remaining: 1, balance: '0.79' });

  // The statistics page lists the route's call.
  await page.getByRole('menuitem', { name: 'Statistics' }).click();
  await page.getByTestId('by-route').locator('tr', { hasText: ROUTE }).waitFor();
}
