// End-to-end: the real gateway binary, its mock upstream, and the built dashboard in Chromium.
//
//   npm run test:e2e            (builds dist/, then runs this file with node's test runner)
//
// Environment: APIHUB_BIN (default ../target/debug/apihub, built by `cargo build -p apihub-server`),
// CHROMIUM (default /usr/bin/chromium: Debian's package; nothing downloads a browser).
// Screenshots of the main pages land in e2e/screenshots/ (gitignored).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Processes, freePort, launchChromium, logIn, screenshotOnFailure, waitFor } from './harness.mjs';
import { chineseAntdTexts, failedPasswordChange, phoneBudgets, phoneLayout } from './ui-checks.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const uiRoot = resolve(here, '..');
const bin = resolve(uiRoot, process.env.APIHUB_BIN ?? '../target/debug/apihub');
const uiDir = join(uiRoot, 'dist');
const shots = join(here, 'screenshots');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';

const ADMIN = { username: 'admin', password: 'e2e-admin-password' };
const USER = { username: `e2e_user.${Date.now() % 100000}`, password: 'e2e-user-password' };
const MODEL = 'e2e-model-mini';
// Whole micro-credits per token, so the expected cost is an exact integer of micros.
const PRICE = { input: '3', output: '6' };
const RECHARGE = '100.5';
const CODE_AMOUNT = '2.25';
// A stand-in EPay provider: the browser's POST to it is intercepted, and the test signs the
// provider's notification with the merchant key, as EPay would.
const EPAY = { url: 'http://epay.e2e.test', pid: '1001', key: 'e2e-merchant-key', price: '7.3', amount: '2.5', money: '18.25' };

let tmp;
let base;
let context;
let page;

const processes = new Processes(bin);
const start = (name, args, env) => processes.start(name, args, env);

/** Credits (decimal text) → integer micros, exactly. */
function micros(text) {
  const [whole, frac = ''] = text.replace('-', '').split('.');
  const value = BigInt(whole) * 1_000_000n + BigInt(frac.padEnd(6, '0'));
  return text.startsWith('-') ? -value : value;
}

/** EPay's MD5 signature: the non-empty fields but `sign`/`sign_type`, sorted, as `k=v&…`, then the key. */
function epaySign(fields, key) {
  const text = Object.entries(fields)
    .filter(([k, v]) => k !== 'sign' && k !== 'sign_type' && v !== '')
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  return createHash('md5').update(text + key).digest('hex');
}

/** Integer micros → the shortest exact decimal text with grouping, as the dashboard shows it. */
function credits(value) {
  const negative = value < 0n;
  const abs = negative ? -value : value;
  const whole = (abs / 1_000_000n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  const frac = (abs % 1_000_000n).toString().padStart(6, '0').replace(/0+$/, '');
  return `${negative ? '-' : ''}${whole}${frac ? `.${frac}` : ''}`;
}

async function shot(name) {
  await page.waitForTimeout(300); // let antd finish its enter animations
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

async function login(user) {
  await logIn(page, base, user);
}

async function logout() {
  await page.getByTestId('user-menu').click();
  await page.getByText('Log out', { exact: true }).click();
  await page.locator('#login_username').waitFor();
}

/** The visible modal's primary button. */
async function confirmModal(title) {
  const modal = page.locator('.ant-modal').filter({ hasText: title }).last();
  await modal.locator('.ant-modal-footer .ant-btn-primary').click();
}

before(async () => {
  assert.ok(existsSync(bin), `no gateway binary at ${bin}: run \`cargo build -p apihub-server\` or set APIHUB_BIN`);
  assert.ok(existsSync(join(uiDir, 'index.html')), `no build in ${uiDir}: run \`npm run build\``);
  assert.ok(existsSync(chromiumPath), `no Chromium at ${chromiumPath}: apt-get install -y chromium`);
  mkdirSync(shots, { recursive: true });
  tmp = mkdtempSync(join(tmpdir(), 'apihub-e2e-'));

  const mockPort = await freePort();
  const mock = start('mock-upstream', ['mock-upstream', '--host', '127.0.0.1', '--port', String(mockPort)]);
  await waitFor(
    'the mock upstream',
    async () => (await fetch(`http://127.0.0.1:${mockPort}/v1/models`)).status < 500,
    mock,
  );

  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const gateway = start('gateway', ['serve'], {
    HOST: '127.0.0.1',
    PORT: String(port),
    DATABASE_URL: `sqlite://${join(tmp, 'apihub.db')}`,
    DATA_DIR: tmp,
    ADMIN_USERNAME: ADMIN.username,
    ADMIN_PASSWORD: ADMIN.password,
    UPSTREAM_URL: `http://127.0.0.1:${mockPort}`,
    UI_DIR: uiDir,
    SHUTDOWN_READINESS_DELAY_SECS: '0',
    PUBLIC_URL: base,
    EPAY_URL: EPAY.url,
    EPAY_PID: EPAY.pid,
    EPAY_KEY: EPAY.key,
    EPAY_PRICE: EPAY.price,
    EPAY_PAYMENT_TYPES: 'alipay,wxpay',
    RUST_LOG: process.env.RUST_LOG ?? 'warn',
  });
  await waitFor('the gateway', async () => (await fetch(`${base}/healthz`)).ok, gateway);

  const index = await fetch(`${base}/keys`);
  const html = await index.text();
  assert.ok(
    index.ok && html.includes('<div id="root">'),
    `the gateway does not serve the dashboard from UI_DIR (GET /keys → ${index.status}); ` +
      'the SPA fallback is the server side of this work',
  );

  ({ context, page } = await launchChromium(chromiumPath, tmp));
});

after(async () => {
  await context?.close().catch(() => {});
  await processes.stopAll();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test('admin prices a model and makes a code, a new user is recharged, calls it with a key, sees the call billed, redeems the code and buys credit through EPay', async () => {
  await screenshotOnFailure(page, shots, 'failure', journey);
});

// After the journey, on its gateway and users (each opens its own page).
test('zh-CN: no English antd text on the keys, transactions and recharge pages', async () => {
  await chineseAntdTexts({ context, base, user: USER, shots });
});

test('390 px wide: no page wider than the screen, tables scroll in their box, the menu is a drawer', async () => {
  await phoneLayout({ context, base, admin: ADMIN, shots });
});

test('390 px wide: budgets set from /admin/users and /keys, shown on the dashboard', async () => {
  await phoneBudgets({ context, base, admin: ADMIN, user: USER, keyName: 'e2e laptop', shots });
});

test('a refused password change leaves its button usable within 300 ms', async () => {
  await failedPasswordChange({ context, base, user: USER });
});

async function journey() {
  // An unknown deep link without a session lands on the login page.
  await page.goto(`${base}/transactions`);
  await page.locator('#login_username').waitFor();
  await shot('login');

  // The administrator sets a price.
  await login(ADMIN);
  await page.goto(`${base}/admin/prices`);
  await page.getByRole('button', { name: 'Set a price' }).click();
  await page.locator('#price_model').fill(MODEL);
  await page.locator('#price_input_price').fill(PRICE.input);
  await page.locator('#price_output_price').fill(PRICE.output);
  await confirmModal('Set a price');
  await page.locator('tr', { hasText: MODEL }).waitFor();
  await shot('admin-prices');
  await logout();

  // A new user registers.
  await page.goto(`${base}/register`);
  await page.locator('#register_username').fill(USER.username);
  await page.locator('#register_password').fill(USER.password);
  await page.locator('#register_confirm').fill(USER.password);
  await page.locator('form#register button[type=submit]').click();
  await page.getByText('Account created. Log in now.').waitFor();

  // The administrator recharges them.
  await login(ADMIN);
  await page.goto(`${base}/admin/users`);
  const row = page.locator('tr', { hasText: USER.username });
  await row.getByRole('button', { name: 'Credit' }).click();
  await page.locator('#credit_amount').fill(RECHARGE);
  await page.locator('#credit_order_no').fill(`E2E-${Date.now()}`);
  await page.locator('#credit_description').fill('e2e recharge');
  await confirmModal(`Credit of ${USER.username}`);
  await page.getByText(`Done. Balance now ${RECHARGE}`).waitFor();
  await row.getByText(RECHARGE, { exact: true }).first().waitFor();
  await shot('admin-users');
  await page.goto(`${base}/admin/keys`);
  await page.locator('.ant-table').waitFor();
  await shot('admin-keys');

  // The administrator generates a redemption code, shown once, and the list shows its batch.
  await page.goto(`${base}/admin/redemption-codes`);
  await page.getByRole('button', { name: 'Generate codes' }).click();
  await page.locator('#codes_count').fill('1');
  await page.locator('#codes_amount').fill(CODE_AMOUNT);
  await page.locator('#codes_name').fill('e2e batch');
  await confirmModal('Generate redemption codes');
  const code = (await page.getByTestId('created-code').textContent())?.trim();
  assert.match(code ?? '', /^[0-9a-f]{32}$/, 'the new code is shown');
  await page.getByTestId('created-code').waitFor();
  await shot('admin-codes-created');
  await page.getByRole('button', { name: 'I have saved them' }).click();
  await page.locator('tr', { hasText: code }).getByText('active', { exact: true }).waitFor();
  await shot('admin-codes');
  await logout();

  // The user creates a key and sees it once.
  await login(USER);
  await page.goto(`${base}/keys`);
  await page.getByRole('button', { name: 'Create key' }).click();
  await page.locator('#key-create_name').fill('e2e laptop');
  await confirmModal('Create an API key');
  const key = (await page.getByTestId('created-key').textContent())?.trim();
  assert.match(key ?? '', /^ahg_/, 'the new key is shown');
  await shot('keys-created');
  await page.getByRole('button', { name: 'I have saved them' }).click();
  await page.locator('tr', { hasText: 'e2e laptop' }).waitFor();

  // A call through the gateway with that key.
  const response = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Hello from the e2e test' }] }),
  });
  const body = await response.text();
  assert.equal(response.status, 200, body);
  const { usage } = JSON.parse(body);
  assert.ok(usage && usage.total_tokens > 0, `usage reported: ${body}`);
  // What the upstream reported, priced: the gateway must bill exactly this.
  const expected = {
    tokens: usage.total_tokens,
    cost: BigInt(usage.prompt_tokens) * BigInt(PRICE.input) + BigInt(usage.completion_tokens) * BigInt(PRICE.output),
  };

  // What the gateway recorded, read through its API with the user's session (settlement may
  // finish just after the response).
  const token = await page.evaluate(() => localStorage.getItem('apihub.token'));
  const api = async (path) => (await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } })).text();
  let recorded;
  for (let i = 0; i < 50; i++) {
    const stats = JSON.parse(await api('/api/stats/me'));
    if (stats.summary.requests >= 1) {
      // Money fields read as their exact text, not through a double.
      const charged = /"summary":\{[^}]*"charged":(-?[\d.]+)/.exec(await api('/api/stats/me'))[1];
      recorded = { tokens: stats.summary.total_tokens, cost: micros(charged) };
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(recorded, 'the call was recorded in the statistics');
  const balanceMicros = micros(RECHARGE) - recorded.cost;

  // The dashboard shows the call, its tokens and its cost.
  await page.goto(`${base}/`);
  await page.getByTestId('today-calls').getByText('1', { exact: true }).waitFor();
  await page.getByTestId('today-tokens').getByText(recorded.tokens.toLocaleString('en'), { exact: true }).waitFor();
  await page.getByTestId('today-spend').getByText(credits(recorded.cost), { exact: true }).first().waitFor();
  // The balance itself (the card's second line repeats it as what is available).
  await page.getByTestId('balance-amount').getByText(credits(balanceMicros), { exact: true }).waitFor();
  await page.locator('tr', { hasText: MODEL }).waitFor();
  await shot('dashboard');

  // The transactions show the recharge and the consumption, with the balance before and after.
  await page.goto(`${base}/transactions`);
  const consume = page.locator('tr', { hasText: 'Consume' });
  await consume.getByText(credits(-recorded.cost), { exact: true }).waitFor();
  await consume.getByText(credits(balanceMicros), { exact: true }).waitFor();
  await consume.getByText(RECHARGE, { exact: true }).waitFor();
  await page.locator('tr', { hasText: 'Recharge' }).getByText(`+${RECHARGE}`, { exact: true }).waitFor();
  await shot('transactions');

  // The user redeems the code on /recharge and sees the balance grow by its amount; a second
  // try is refused with the server's reason.
  await page.goto(`${base}/recharge`);
  const redeemCard = page.getByTestId('redeem-card');
  await redeemCard.getByTestId('recharge-balance').getByText(credits(balanceMicros), { exact: true }).waitFor();
  const redeemedBalance = credits(balanceMicros + micros(CODE_AMOUNT));
  await redeemCard.getByLabel('Redemption code').fill(code);
  await redeemCard.getByRole('button', { name: 'Redeem' }).click();
  await redeemCard.getByText(`Redeemed ${CODE_AMOUNT} credits. Your balance is now ${redeemedBalance}.`).waitFor();
  await redeemCard.getByTestId('recharge-balance').getByText(redeemedBalance, { exact: true }).waitFor();
  await shot('recharge-redeemed');
  await redeemCard.getByLabel('Redemption code').fill(code);
  await redeemCard.getByRole('button', { name: 'Redeem' }).click();
  await redeemCard.getByText('this redemption code has already been redeemed').waitFor();
  await page.goto(`${base}/transactions`);
  await page.locator('tr', { hasText: `redeem-${code}` }).getByText(`+${CODE_AMOUNT}`, { exact: true }).waitFor();

  // Online recharge: the form shows the money to pay and sends the browser to the provider with
  // the signed order...
  const posted = [];
  await page.route(`${EPAY.url}/**`, async (route) => {
    posted.push(new URLSearchParams(route.request().postData() ?? ''));
    await route.fulfill({ contentType: 'text/html', body: '<h1>Stand-in EPay</h1>' });
  });
  await page.goto(`${base}/recharge`);
  const rechargeForm = page.getByTestId('recharge-form');
  await rechargeForm.getByLabel('Credits to buy').fill(EPAY.amount);
  await rechargeForm.getByText('WeChat Pay', { exact: true }).click();
  await rechargeForm.getByTestId('to-pay').getByText(EPAY.money, { exact: true }).waitFor();
  await shot('recharge-form');
  await rechargeForm.getByRole('button', { name: 'Pay' }).click();
  await page.getByText('Stand-in EPay').waitFor();
  await page.unroute(`${EPAY.url}/**`);
  const fields = Object.fromEntries(posted[0]);
  assert.equal(fields.money, EPAY.money);
  assert.equal(fields.type, 'wxpay');
  assert.equal(fields.pid, EPAY.pid);
  assert.equal(fields.sign, epaySign(fields, EPAY.key), 'the order reaches the provider as signed');
  const outTradeNo = fields.out_trade_no;

  // ...the provider sends the user back before its notification: the order is still pending...
  const notice = {
    pid: EPAY.pid,
    trade_no: 'E2E-TRADE-1',
    out_trade_no: outTradeNo,
    type: 'wxpay',
    name: fields.name,
    money: EPAY.money,
    trade_status: 'TRADE_SUCCESS',
  };
  const signed = new URLSearchParams({ ...notice, sign: epaySign(notice, EPAY.key), sign_type: 'MD5' });
  await page.goto(`${fields.return_url}?${signed}`);
  const result = page.getByTestId('recharge-result');
  await result.getByText('Waiting for the payment to be confirmed…').waitFor();
  await result.getByText(outTradeNo, { exact: true }).waitFor();
  await shot('recharge-pending');

  // ...then its signed notification credits the order (once, however often it comes), and the
  // page, asking again by itself, shows it paid.
  for (let i = 0; i < 2; i++) {
    const answer = await fetch(`${base}/api/tokens/recharge/callback?${signed}`);
    assert.equal(await answer.text(), 'success');
  }
  await result.getByText('Payment received').waitFor();
  await result.getByText(`${EPAY.amount} credits were added to your balance.`).waitFor();
  await shot('recharge-paid');
  await result.getByRole('button', { name: 'Back to Recharge' }).click();
  const paidBalance = credits(balanceMicros + micros(CODE_AMOUNT) + micros(EPAY.amount));
  await page.getByTestId('recharge-balance').getByText(paidBalance, { exact: true }).waitFor();
  await page.locator('tr', { hasText: outTradeNo }).getByText('paid', { exact: true }).waitFor();

  // An order whose notification never comes, for the administrator to complete by hand below.
  const userToken = await page.evaluate(() => localStorage.getItem('apihub.token'));
  const stuck = await fetch(`${base}/api/tokens/recharge`, {
    method: 'POST',
    headers: { authorization: `Bearer ${userToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ amount: '1', payment_type: 'alipay' }),
  });
  assert.equal(stuck.status, 201);
  const stuckNo = JSON.parse(await stuck.text()).order.out_trade_no;

  // The rest of the pages, for the record.
  for (const [path, name] of [
    ['/keys', 'keys'],
    ['/models', 'models'],
    ['/quickstart', 'quickstart'],
    ['/recharge', 'recharge'],
  ]) {
    await page.goto(`${base}${path}`);
    await page.locator('.page').waitFor();
    await shot(name);
  }
  await page.goto(`${base}/models`);
  await page.locator('tr', { hasText: MODEL }).waitFor();

  // The administrator's statistics include the call and the revenue.
  await logout();
  await login(ADMIN);

  // The administrator completes the stuck order by hand, with a note, and the user is credited.
  await page.goto(`${base}/admin/recharge-orders?status=pending`);
  const stuckRow = page.locator('tr', { hasText: stuckNo });
  await stuckRow.getByText('pending', { exact: true }).waitFor();
  await shot('admin-orders');
  await stuckRow.getByRole('button', { name: 'Complete by hand' }).click();
  await page.locator('#complete_note').fill('e2e: bank statement checked');
  await confirmModal(`Complete order ${stuckNo} by hand`);
  await page.getByText('Order completed: 1 credit added').waitFor();
  await stuckRow.waitFor({ state: 'detached' });
  const completed = JSON.parse(
    await (await fetch(`${base}/api/tokens/recharge/orders/${stuckNo}`, { headers: { authorization: `Bearer ${userToken}` } })).text(),
  );
  assert.equal(completed.status, 'paid');
  assert.equal(completed.note, 'e2e: bank statement checked');
  await page.goto(`${base}/admin/stats`);
  await page.locator('tr', { hasText: USER.username }).waitFor();
  await shot('admin-stats');

  // The language switch, remembered.
  await page.getByText('中文', { exact: true }).click();
  await page.getByText('统计', { exact: true }).first().waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem('apihub.locale')), 'zh-CN');
  await shot('admin-stats-zh');

  // A session the server no longer accepts returns to the login page.
  await page.evaluate(() => localStorage.setItem('apihub.token', 'not-a-valid-token'));
  await page.goto(`${base}/keys`);
  await page.locator('#login_username').waitFor();

  // Last, so every page above was checked and photographed first: the bill matches the upstream's usage.
  assert.deepEqual(
    { tokens: recorded.tokens, cost: credits(recorded.cost) },
    { tokens: expected.tokens, cost: credits(expected.cost) },
    `the gateway billed ${recorded.tokens} tokens / ${credits(recorded.cost)} credits, but the upstream reported ` +
      `${usage.prompt_tokens} + ${usage.completion_tokens} tokens (${credits(expected.cost)} credits at the set prices)`,
  );
}
