// Browser checks run by dashboard.e2e.test.mjs after its journey, on the same gateway and users:
// Chinese everywhere (antd's own texts included), phone-sized pages, and a failed password change
// that frees its button at once. (Not named *.test.mjs: it is imported, not run on its own.)
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { logIn as loginOn } from './harness.mjs';

/** English antd texts that must not show in zh-CN (word-bounded where they are words). */
const ENGLISH_ANTD = [/\bCancel\b/, /\bOK\b/, /\(optional\)/, /\/ page\b/, /\bSelect date\b/, /\bNow\b/];

/** A fresh page in `context` that speaks `locale`, at `viewport`. */
async function openPage(context, locale, viewport) {
  const p = await context.newPage();
  if (viewport) await p.setViewportSize(viewport);
  await p.addInitScript((l) => localStorage.setItem('apihub.locale', l), locale);
  p.on('pageerror', (e) => console.error('page error:', e.message));
  return p;
}

async function englishIn(p) {
  const text = await p.evaluate(() => document.body.innerText);
  return ENGLISH_ANTD.filter((re) => re.test(text)).map(String);
}

/** zh-CN: the keys, transactions and recharge pages (with a modal and a date picker open) show no English antd text. */
export async function chineseAntdTexts({ context, base, user, shots }) {
  const p = await openPage(context, 'zh-CN');
  try {
    await loginOn(p, base, user);

    await p.goto(`${base}/keys`);
    await p.locator('.page .ant-table-row').first().waitFor();
    assert.ok((await p.evaluate(() => document.body.innerText)).includes('条/页'), 'the page size changer is Chinese');
    await p.getByRole('button', { name: '创建密钥' }).click();
    const modal = p.locator('.ant-modal').filter({ hasText: '创建 API 密钥' });
    await modal.waitFor();
    assert.ok((await modal.innerText()).includes('（可选）'), 'optional fields are marked in Chinese');
    const picker = p.locator('.ant-picker-dropdown:not(.ant-picker-dropdown-hidden)');
    // A click while the dialog is still animating in can be lost (seen on a loaded machine):
    // click again until the picker opens.
    for (let tries = 0; tries < 5 && !(await picker.isVisible()); tries++) {
      await p.locator('#key-create_expires_at').click();
      await picker.waitFor({ timeout: 4000 }).catch(() => {});
    }
    await picker.waitFor();
    assert.ok((await picker.innerText()).includes('此刻'), 'the date picker is Chinese');
    await p.screenshot({ path: join(shots, 'zh-keys-create.png'), fullPage: true });
    assert.deepEqual(await englishIn(p), [], 'no English antd text on /keys with the create dialog and its date picker open');
    assert.ok(/取\s*消/.test(await modal.locator('.ant-modal-footer').innerText()), 'the dialog says 取消, not Cancel');

    await p.goto(`${base}/transactions`);
    await p.locator('.page .ant-table-row').first().waitFor();
    assert.ok((await p.evaluate(() => document.body.innerText)).includes('条/页'));
    await p.screenshot({ path: join(shots, 'zh-transactions.png'), fullPage: true });
    assert.deepEqual(await englishIn(p), [], 'no English antd text on /transactions');

    await p.goto(`${base}/recharge`);
    await p.getByTestId('recharge-form').waitFor();
    await p.locator('.page .ant-table-row').first().waitFor();
    await p.screenshot({ path: join(shots, 'zh-recharge.png'), fullPage: true });
    assert.deepEqual(await englishIn(p), [], 'no English antd text on /recharge');
  } finally {
    await p.close();
  }
}

const PHONE_PAGES = [
  '/',
  '/keys',
  '/usage',
  '/transactions',
  '/requests',
  '/playground',
  '/models',
  '/quickstart',
  '/recharge',
  '/admin/users',
  '/admin/keys',
  '/admin/prices',
  '/admin/channels',
  '/admin/stats',
  '/admin/requests',
  '/admin/redemption-codes',
  '/admin/recharge-orders',
];

/** 390×844: no page is wider than the screen, wide tables scroll in their own box, the menu is a drawer. */
export async function phoneLayout({ context, base, admin, shots }) {
  const p = await openPage(context, 'en', { width: 390, height: 844 });
  try {
    await loginOn(p, base, admin);
    const wider = [];
    for (const path of PHONE_PAGES) {
      await p.goto(`${base}${path}`);
      await p.locator('.page').waitFor();
      await p.waitForLoadState('networkidle');
      await p.waitForTimeout(300);
      const size = await p.evaluate(() => ({
        doc: document.documentElement.scrollWidth,
        body: document.body.scrollWidth,
        view: window.innerWidth,
      }));
      if (Math.max(size.doc, size.body) > size.view) wider.push(`${path}: ${Math.max(size.doc, size.body)} px`);
      await p.screenshot({ path: join(shots, `phone${path === '/' ? '-dashboard' : path.replaceAll('/', '-')}.png`), fullPage: true });
    }
    assert.deepEqual(wider, [], 'pages wider than a 390 px screen');

    // The users table is wider than the screen and scrolls inside its own box, every column reachable.
    await p.goto(`${base}/admin/users`);
    await p.locator('.ant-table-row').first().waitFor();
    const table = await p.evaluate(() => {
      const box = document.querySelector('.page .ant-table-content') ?? document.querySelector('.page .ant-table-body');
      return box ? { scroll: box.scrollWidth, client: box.clientWidth, pinned: document.querySelectorAll('.page .ant-table-cell-fix-right').length } : null;
    });
    assert.ok(table && table.scroll > table.client, `the table scrolls inside its box: ${JSON.stringify(table)}`);
    assert.equal(table.pinned, 0, 'no column is pinned on a phone');

    // No side menu: a button opens the menu as a drawer, and choosing a page closes it.
    assert.equal(await p.locator('.ant-layout-sider').count(), 0, 'no side menu on a phone');
    await p.getByTestId('nav-toggle').click();
    const drawer = p.locator('.ant-drawer-open');
    await drawer.waitFor();
    await drawer.getByText('Transactions', { exact: true }).click();
    await p.waitForURL(`${base}/transactions`);
    await drawer.waitFor({ state: 'hidden' });
  } finally {
    await p.close();
  }
}

/** Nothing wider than the screen, and the open dialog inside it. */
async function fitsScreen(p, modal, what) {
  const size = await p.evaluate(() => ({
    doc: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth),
    view: window.innerWidth,
  }));
  assert.ok(size.doc <= size.view, `${what}: the page is ${size.doc} px wide on a ${size.view} px screen`);
  if (modal) {
    const box = await modal.boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= size.view, `${what}: the dialog is outside the screen: ${JSON.stringify(box)}`);
  }
}

/**
 * Budgets at 390×844, against the real gateway: the administrator gives the user a daily budget from
 * /admin/users, the user sees it (used / limit, reset time in the gateway's zone) on the dashboard
 * and gives their key a monthly budget from /keys, which reads back as saved.
 */
export async function phoneBudgets({ context, base, admin, user, keyName, shots }) {
  const p = await openPage(context, 'en', { width: 390, height: 844 });
  try {
    await loginOn(p, base, admin);
    await p.goto(`${base}/admin/users`);
    await p.locator('tr', { hasText: user.username }).getByRole('button', { name: 'Budgets' }).click();
    let modal = p.locator('.ant-modal').filter({ hasText: `Budgets of ${user.username}` });
    await modal.getByText(/Windows follow the time zone/).waitFor();
    await p.locator('#budgets_day_enabled').click();
    await p.locator('#budgets_day_credit_limit').fill('12.5');
    await p.locator('#budgets_day_call_limit').fill('1000');
    await p.waitForTimeout(300);
    await fitsScreen(p, modal, 'the user budgets dialog');
    await p.screenshot({ path: join(shots, 'phone-user-budgets.png'), fullPage: true });
    await modal.locator('.ant-modal-footer .ant-btn-primary').click();
    await p.getByText('Budgets saved').waitFor();

    await loginOn(p, base, user);
    await p.goto(`${base}/`);
    const card = p.getByTestId('my-budgets');
    await card.waitFor();
    const text = await card.innerText();
    assert.match(text, /Daily/, text);
    assert.match(text, /\/ 12\.5\b/, `the daily credit limit is shown: ${text}`);
    assert.match(text, /\/ 1,000\b/, `the daily call limit is shown: ${text}`);
    assert.match(text, /Resets .+ UTC/, `the reset time is shown in the gateway's zone: ${text}`);
    await fitsScreen(p, null, 'the dashboard with budgets');
    await p.screenshot({ path: join(shots, 'phone-dashboard-budgets.png'), fullPage: true });

    await p.goto(`${base}/keys`);
    await p.locator('tr', { hasText: keyName }).getByRole('button', { name: 'Budgets' }).click();
    modal = p.locator('.ant-modal').filter({ hasText: `Budgets of key ${keyName}` });
    await modal.getByText(/Windows follow the time zone/).waitFor();
    await p.locator('#budgets_month_enabled').click();
    await p.locator('#budgets_month_token_limit').fill('500000');
    await p.waitForTimeout(300);
    await fitsScreen(p, modal, 'the key budgets dialog');
    await p.screenshot({ path: join(shots, 'phone-key-budgets.png'), fullPage: true });
    await modal.locator('.ant-modal-footer .ant-btn-primary').click();
    await p.getByText('Budgets saved').waitFor();
    await modal.waitFor({ state: 'hidden' });
    // Read back: the dialog opens on what the gateway now holds.
    await p.locator('tr', { hasText: keyName }).getByRole('button', { name: 'Budgets' }).click();
    await modal.getByTestId('budget-month').getByText(/\/ 500,000\b/).waitFor();
    assert.equal(await p.locator('#budgets_month_token_limit').inputValue(), '500000');
  } finally {
    await p.close();
  }
}

/** A refused password change shows why and frees its button within 300 ms of the answer. */
export async function failedPasswordChange({ context, base, user }) {
  const p = await openPage(context, 'en');
  try {
    await loginOn(p, base, user);
    await p.getByTestId('user-menu').click();
    await p.getByText('Change password', { exact: true }).click();
    const modal = p.locator('.ant-modal').filter({ hasText: 'Change password' });
    await modal.waitFor();
    await p.locator('#password_current_password').fill('not-the-current-password');
    await p.locator('#password_new_password').fill('a-brand-new-password');
    await p.locator('#password_confirm').fill('a-brand-new-password');
    const ok = modal.locator('.ant-modal-footer .ant-btn-primary');
    const answered = p.waitForResponse((r) => r.url().endsWith('/api/auth/password'));
    await ok.click();
    const response = await answered;
    assert.ok(response.status() >= 400, `the wrong password is refused (${response.status()})`);
    const start = Date.now();
    await p.waitForFunction(
      () => {
        const button = document.querySelector('.ant-modal-footer .ant-btn-primary');
        return button && !button.classList.contains('ant-btn-loading') && !button.disabled;
      },
      null,
      { timeout: 300, polling: 20 },
    );
    const freed = Date.now() - start;
    assert.ok(freed <= 300, `the button was usable again after ${freed} ms`);
    await modal.getByTestId('password-error').waitFor();
    // Usable means usable: a second try goes out.
    const again = p.waitForRequest((r) => r.url().endsWith('/api/auth/password'), { timeout: 2000 });
    await ok.click();
    await again;
  } finally {
    await p.close();
  }
}
