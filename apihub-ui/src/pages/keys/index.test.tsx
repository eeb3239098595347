import { screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { session } from '../../api';
import { apiError, json, mockApi, type Call } from '../../test/api';
import { renderPage } from '../../test/render';
import { fillIn, findButton, findDialog, user } from '../../test/user';
import KeysPage from '.';

const KEY = {
  id: 3,
  user_id: 2,
  name: 'laptop',
  key_preview: 'ahg_pub123_…9f2a',
  status: 'active',
  allowed_models: ['gpt-4o-mini'],
  discount_rate: 1,
  rate_limit: 60,
  rate_limit_day: null,
  token_limit: 1000,
  quota_limit: 25.5,
  remaining_calls: null,
  expires_at: null,
  tokens_used: 250,
  quota_used: 0.000123,
  calls_total: 4,
  calls_succeeded: 3,
  batch_id: null,
  created_at: '2025-01-01T00:00:00Z',
  updated_at: '2025-01-01T00:00:00Z',
};

const page = (items: object[]) => json({ items, total: items.length, page: 1, page_size: 20 });

describe('KeysPage', () => {
  it('shows an empty state', async () => {
    session.start('tok');
    mockApi({ 'GET /api/keys': page([]) });
    renderPage(<KeysPage />, { path: '/keys' });
    expect(await screen.findByText('No keys yet: create one to call the API.')).toBeInTheDocument();
  });

  it('lists keys with limits and exact usage against them', async () => {
    session.start('tok');
    mockApi({ 'GET /api/keys': page([KEY]) });
    renderPage(<KeysPage />, { path: '/keys' });
    const row = (await screen.findByText('laptop')).closest('tr')!;
    expect(within(row).getByText('ahg_pub123_…9f2a')).toBeInTheDocument();
    expect(within(row).getByText('active')).toBeInTheDocument();
    expect(within(row).getByText('60/min')).toBeInTheDocument();
    expect(within(row).getByText('gpt-4o-mini')).toBeInTheDocument();
    expect(within(row).getByText('250 / 1,000')).toBeInTheDocument();
    expect(within(row).getByText('0.000123 / 25.5')).toBeInTheDocument();
    expect(within(row).getAllByRole('progressbar')).toHaveLength(2);
  });

  it('creates a key with its limits and shows the whole key once', async () => {
    session.start('tok');
    const calls = mockApi({
      'GET /api/keys': page([]),
      'GET /api/prices': json([{ model: 'gpt-4o-mini', input_price: 0.15, output_price: 0.6 }]),
      'POST /api/keys': json({ ...KEY, key: 'ahg_pub123_secretsecret9f2a' }, 201),
    });
    renderPage(<KeysPage />, { path: '/keys' });
    await user.click(await findButton(/Create key/));
    const dialog = await findDialog('Create an API key');
    await fillIn(within(dialog).getByLabelText('Name'), 'laptop');
    await fillIn(within(dialog).getByLabelText('Rate limit (per minute)'), '60');
    await fillIn(within(dialog).getByLabelText('Credit quota'), '25.1234567');
    await user.click(await findButton('Create', dialog));
    expect(await within(dialog).findByText('At most 6 digits after the decimal point')).toBeInTheDocument();
    await user.clear(within(dialog).getByLabelText('Credit quota'));
    await fillIn(within(dialog).getByLabelText('Credit quota'), '25.5');
    await user.click(await findButton('Create', dialog));
    expect(await screen.findByTestId('created-key')).toHaveTextContent('ahg_pub123_secretsecret9f2a');
    const post = calls.find((c: Call) => c.method === 'POST')!;
    expect(post.body).toEqual({ name: 'laptop', rate_limit: 60, quota_limit: '25.5' });
    expect(screen.getByText(/shown this once/)).toBeInTheDocument();
    expect(screen.getByTestId('copy-key')).toBeInTheDocument();
  });

  it('edits a key: an emptied limit is sent as null, which clears it', async () => {
    session.start('tok');
    const calls = mockApi({
      'GET /api/keys': page([KEY]),
      'GET /api/prices': json([]),
      'PUT /api/keys/3': (c) => json({ ...KEY, ...(c.body as object) }),
    });
    renderPage(<KeysPage />, { path: '/keys' });
    const row = (await screen.findByText('laptop')).closest('tr')!;
    await user.click(await findButton('Edit', row));
    const dialog = await findDialog('Edit key');
    await waitFor(() => expect(within(dialog).getByLabelText('Credit quota')).toHaveValue('25.5'));
    await user.clear(within(dialog).getByLabelText('Credit quota'));
    await user.clear(within(dialog).getByLabelText('Rate limit (per minute)'));
    await user.click(await findButton('Save', dialog));
    await waitFor(() => expect(calls.some((c) => c.method === 'PUT')).toBe(true));
    const put = calls.find((c) => c.method === 'PUT')!;
    expect(put.body).toMatchObject({
      name: 'laptop',
      quota_limit: null,
      rate_limit: null,
      token_limit: 1000,
      expires_at: null,
      allowed_models: ['gpt-4o-mini'],
      status: 'active',
    });
    expect(put.body).not.toHaveProperty('discount_rate');
  });

  it("opens a key's budgets from its row and saves them to that key", async () => {
    session.start('tok');
    const calls = mockApi({
      'GET /api/keys': page([KEY]),
      'GET /api/keys/3/budgets': json('{"time_zone":"UTC","budgets":[]}'),
      'PUT /api/keys/3/budgets': (c) => json({ time_zone: 'UTC', budgets: [] }, c.body ? 200 : 400),
    });
    renderPage(<KeysPage />, { path: '/keys' });
    const row = (await screen.findByText('laptop')).closest('tr')!;
    await user.click(await findButton('Budgets', row));
    const dialog = await findDialog('Budgets of key laptop');
    expect(await within(dialog).findByText(/Windows follow the time zone UTC/)).toBeInTheDocument();
    await user.click(within(dialog).getByLabelText('Monthly budget'));
    await fillIn(within(dialog).getByLabelText('Calls per month'), '1000');
    await user.click(await findButton('Save', dialog));
    await waitFor(() => expect(calls.some((c) => c.method === 'PUT')).toBe(true));
    expect(calls.find((c) => c.method === 'PUT')!.body).toEqual({
      budgets: [{ period: 'month', credit_limit: null, token_limit: null, call_limit: 1000 }],
    });
  });

  it("shows the server's message when creation is refused", async () => {
    session.start('tok');
    mockApi({
      'GET /api/keys': page([]),
      'GET /api/prices': json([]),
      'POST /api/keys': apiError(403, 'forbidden', 'only an administrator may set `discount_rate`'),
    });
    renderPage(<KeysPage />, { path: '/keys' });
    await user.click(await findButton(/Create key/));
    const dialog = await findDialog('Create an API key');
    await user.click(await findButton('Create', dialog));
    expect(await within(dialog).findByText('only an administrator may set `discount_rate`')).toBeInTheDocument();
  });

  it('refuses a negative rate limit with a message instead of turning it into 0', async () => {
    session.start('tok');
    const calls = mockApi({ 'GET /api/keys': page([]), 'GET /api/prices': json([]) });
    renderPage(<KeysPage />, { path: '/keys' });
    await user.click(await findButton(/Create key/));
    const dialog = await findDialog('Create an API key');
    await fillIn(within(dialog).getByLabelText('Rate limit (per minute)'), '-5');
    await user.click(await findButton('Create', dialog));
    expect(await within(dialog).findByText(/A whole number from 0 to/)).toBeInTheDocument();
    expect(within(dialog).getByLabelText('Rate limit (per minute)')).toHaveValue('-5');
    expect(calls.some((c) => c.method === 'POST')).toBe(false);
  });

  it('frees a row action as soon as it fails, with the reason in Chinese', async () => {
    session.start('tok');
    mockApi({
      'GET /api/keys': page([KEY]),
      'POST /api/keys/3/reset-usage': apiError(404, 'not_found', 'key not found'),
    });
    renderPage(<KeysPage />, { path: '/keys', locale: 'zh-CN' });
    const row = (await screen.findByText('laptop')).closest('tr')!;
    const reset = await findButton('重置用量', row);
    await user.click(reset);
    await user.click(await findButton(/确\s*定/, document.querySelector('.ant-popover') as HTMLElement));
    expect(await screen.findByText('密钥不存在')).toBeInTheDocument();
    await waitFor(() => expect(reset).not.toHaveClass('ant-btn-loading'), { timeout: 300 });
  });
});
