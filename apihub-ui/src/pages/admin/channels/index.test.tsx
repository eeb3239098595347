import { screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { session } from '../../../api';
import { json, mockApi } from '../../../test/api';
import { renderPage } from '../../../test/render';
import { fillIn, findButton, findDialog, user } from '../../../test/user';
import AdminChannelsPage from '.';

const PRIMARY = {
  id: 1,
  name: 'primary',
  base_url: 'http://10.0.0.1:8317',
  api_key_preview: '…abcd',
  dialects: ['openai'],
  models: ['gpt-4o', 'gpt-4o-mini'],
  aliases: { 'gpt-4o': 'gpt-4o-2024-11-20' },
  priority: 10,
  weight: 2,
  enabled: true,
  timeout_secs: 120,
  cost_prices: { 'gpt-4o': { input_price: '2', output_price: '8', cache_read_price: null } },
  default_cost_price: { input_price: '0.5', output_price: '1.5' },
  health: { state: 'open', consecutive_failures: 5, answered: 40, failed: 7 },
  created_at: '2026-12-03T00:00:00Z',
  updated_at: '2026-12-03T00:00:00Z',
};
const SPARE = {
  ...PRIMARY,
  id: 2,
  name: 'spare',
  base_url: 'http://10.0.0.2:8317',
  api_key_preview: null,
  dialects: [],
  models: [],
  aliases: {},
  priority: 0,
  weight: 1,
  enabled: false,
  timeout_secs: null,
  cost_prices: {},
  default_cost_price: null,
  health: null,
};

describe('AdminChannelsPage', () => {
  it('lists channels with their key preview and health, and edits one keeping or removing its key', async () => {
    session.start('tok');
    const calls = mockApi({
      'GET /api/admin/channels': json([PRIMARY, SPARE]),
      'PUT /api/admin/channels/1': (call) => json({ ...PRIMARY, ...(call.body as object) }),
    });
    renderPage(<AdminChannelsPage />, { path: '/admin/channels' });
    const row = (await screen.findByText('primary')).closest('tr')!;
    expect(within(row).getByText('…abcd')).toBeInTheDocument();
    expect(within(row).getByText('Tripped')).toBeInTheDocument();
    expect(within(row).getByText('5 failures in a row')).toBeInTheDocument();
    expect(within(row).getByText('2 models')).toBeInTheDocument();
    expect(within(row).getByText('1 alias')).toBeInTheDocument();
    expect(within(row).getByText('1 cost price')).toBeInTheDocument();
    expect(within(row).getByText('default cost 0.5 / 1.5')).toBeInTheDocument();
    const spare = screen.getByText('spare').closest('tr')!;
    expect(within(spare).getByText('no key')).toBeInTheDocument();
    expect(within(spare).getByText('any model')).toBeInTheDocument();
    expect(within(spare).getByText('Disabled')).toBeInTheDocument();

    await user.click(await findButton('Edit', row));
    let dialog = await findDialog('Channel primary');
    expect(within(dialog).getByLabelText('Upstream key')).toHaveValue('');
    expect(within(dialog).getByLabelText('Aliases')).toHaveValue('gpt-4o=gpt-4o-2024-11-20');
    expect(within(dialog).getByLabelText('Cost prices')).toHaveValue('gpt-4o=2,8\n*=0.5,1.5');
    await user.click(await findButton('OK', dialog));
    await screen.findByText('Channel primary saved');
    const kept = calls.filter((c) => c.method === 'PUT').at(-1)!;
    expect(kept.body).not.toHaveProperty('api_key');
    expect(kept.body).toMatchObject({ name: 'primary', aliases: { 'gpt-4o': 'gpt-4o-2024-11-20' }, priority: 10, weight: 2, timeout_secs: 120 });
    expect(kept.body).toMatchObject({
      cost_prices: { 'gpt-4o': { input_price: '2', output_price: '8' } },
      default_cost_price: { input_price: '0.5', output_price: '1.5' },
    });

    await user.click(await findButton('Edit', row));
    dialog = await findDialog('Channel primary');
    await user.click(within(dialog).getByLabelText('Remove the stored key'));
    await user.click(await findButton('OK', dialog));
    await waitFor(() => expect(calls.filter((c) => c.method === 'PUT')).toHaveLength(2));
    expect(calls.filter((c) => c.method === 'PUT').at(-1)!.body).toHaveProperty('api_key', null);
  });

  it('creates a channel, refusing a bad alias line and a negative cost price first', async () => {
    session.start('tok');
    const calls = mockApi({
      'GET /api/admin/channels': json([]),
      'POST /api/admin/channels': (call) => json({ ...SPARE, ...(call.body as object), id: 3, api_key_preview: '…-new' }),
    });
    renderPage(<AdminChannelsPage />, { path: '/admin/channels' });
    expect(await screen.findByText('No channels: every call goes to UPSTREAM_URL')).toBeInTheDocument();
    await user.click(await findButton('New channel'));
    const dialog = await findDialog('New channel');
    expect(within(dialog).queryByLabelText('Remove the stored key')).toBeNull();
    await fillIn(within(dialog).getByLabelText('Name'), 'gem');
    await user.clear(within(dialog).getByLabelText('Base URL'));
    await fillIn(within(dialog).getByLabelText('Base URL'), 'http://10.0.0.3:9000');
    await fillIn(within(dialog).getByLabelText('Upstream key'), 'sk-new');
    await fillIn(within(dialog).getByLabelText('Aliases'), 'gemini-pro');
    await user.click(await findButton('OK', dialog));
    expect(await within(dialog).findByText('Line 1: write public=upstream, both names filled')).toBeInTheDocument();
    await fillIn(within(dialog).getByLabelText('Aliases'), '=gemini-1.5-pro');
    await fillIn(within(dialog).getByLabelText('Cost prices'), 'gemini-pro=1,-5');
    await user.click(await findButton('OK', dialog));
    expect(await within(dialog).findByText('Line 1: amounts are plain decimals, not negative, up to 6 decimals')).toBeInTheDocument();
    await user.clear(within(dialog).getByLabelText('Cost prices'));
    await fillIn(within(dialog).getByLabelText('Cost prices'), 'gemini-pro=1.25,5');
    await user.click(await findButton('OK', dialog));
    await screen.findByText('Channel gem saved');
    expect(calls.find((c) => c.method === 'POST')!.body).toEqual({
      name: 'gem',
      base_url: 'http://10.0.0.3:9000',
      api_key: 'sk-new',
      dialects: [],
      models: [],
      aliases: { 'gemini-pro': 'gemini-1.5-pro' },
      cost_prices: { 'gemini-pro': { input_price: '1.25', output_price: '5' } },
      default_cost_price: null,
      priority: 0,
      weight: 1,
      timeout_secs: null,
      enabled: true,
    });
  });

  it('speaks Chinese', async () => {
    session.start('tok');
    mockApi({ 'GET /api/admin/channels': json([PRIMARY]) });
    renderPage(<AdminChannelsPage />, { path: '/admin/channels', locale: 'zh-CN' });
    expect(await screen.findByText('已熔断')).toBeInTheDocument();
    expect(screen.getByText('连续失败 5 次')).toBeInTheDocument();
    expect(await findButton('新建渠道')).toBeInTheDocument();
  });
});
