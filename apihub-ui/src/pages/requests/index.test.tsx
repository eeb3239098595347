import { screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { session } from '../../api';
import { json, mockApi } from '../../test/api';
import { renderPage } from '../../test/render';
import { user } from '../../test/user';
import RequestsPage from '.';

const item = (id: number, model: string, status: number, charged: string) =>
  `{"id":${id},"created_at":"2025-06-0${id}T00:00:00Z","request_id":"gw-${id}","user_id":2,"username":"alice",` +
  `"key_id":7,"key_name":"laptop","model":"${model}","endpoint":"/v1/chat/completions","route_id":null,"route_name":null,"channel":"default","attempts":1,` +
  `"stream":false,"status":${status},"prompt_tokens":1200,"completion_tokens":34,"cached_tokens":5,"raw_cost":${charged},` +
  `"user_discount":1,"key_discount":0.8,"charged":${charged},"overage":0,"upstream_latency_ms":812,"first_byte_ms":1507,"usage_source":"reported"}`;

const KEYS = json({ items: [{ id: 7, name: 'laptop', key_preview: 'ahg_x…1' }], total: 1, page: 1, page_size: 200 });

describe('RequestsPage', () => {
  it('lists requests with exact charges, loads more after the cursor and opens a request', async () => {
    session.start('tok');
    const calls = mockApi({
      'GET /api/usage/requests': (call) =>
        call.query.get('cursor')
          ? json(`{"items":[${item(1, 'claude-3', 502, '0')}],"next_cursor":null}`)
          : json(`{"items":[${item(2, 'gpt-4o-mini', 200, '0.000123')}],"next_cursor":"1748822400000-2"}`),
      'GET /api/keys': KEYS,
    });
    renderPage(<RequestsPage />, { path: '/requests' });
    const row = (await screen.findByText('gpt-4o-mini')).closest('tr')!;
    expect(within(row).getByText('0.000123')).toBeInTheDocument();
    expect(within(row).getByText('laptop')).toBeInTheDocument();
    await user.click(screen.getByRole('button', { name: 'Load more' }));
    expect(await screen.findByText('claude-3')).toBeInTheDocument();
    expect(calls.filter((c) => c.path === '/api/usage/requests').at(-1)!.query.get('cursor')).toBe('1748822400000-2');
    expect(screen.queryByRole('button', { name: 'Load more' })).not.toBeInTheDocument();
    await user.click(screen.getByText('gpt-4o-mini'));
    const drawer = await screen.findByRole('dialog');
    expect(within(drawer).getByText('gw-2')).toBeInTheDocument();
    expect(within(drawer).getByText('Reported by the upstream')).toBeInTheDocument();
    expect(within(drawer).getByText('Time to first byte')).toBeInTheDocument();
    expect(within(drawer).getByText(/1,?507/)).toBeInTheDocument();
    expect(within(drawer).queryByText('Your cost (channel cost price)')).toBeNull();
  });

  it('shows administrators what a request cost them at its channel\'s cost price', async () => {
    session.start('tok');
    const costed = item(3, 'gpt-4o', 200, '0.0042').replace(/}$/, ',"cost":0.003125}');
    mockApi({ 'GET /api/admin/usage/requests': json(`{"items":[${costed},${item(1, 'o3', 200, '0.1')}],"next_cursor":null}`) });
    renderPage(<RequestsPage admin />, { path: '/admin/requests' });
    await user.click(await screen.findByText('gpt-4o'));
    let drawer = await screen.findByRole('dialog');
    expect(within(drawer).getByText('Your cost (channel cost price)')).toBeInTheDocument();
    expect(within(drawer).getByText('0.003125')).toBeInTheDocument();
    await user.click(screen.getByText('o3'));
    drawer = await screen.findByRole('dialog');
    expect(await within(drawer).findByText('no cost price')).toBeInTheDocument();
  });

  it('filters through the address, in Chinese too', async () => {
    session.start('tok');
    const calls = mockApi({
      'GET /api/usage/requests': json('{"items":[],"next_cursor":null}'),
      'GET /api/keys': KEYS,
    });
    renderPage(<RequestsPage />, { path: '/requests?model=gpt-4o&status=error', locale: 'zh-CN' });
    expect(await screen.findByText('没有请求')).toBeInTheDocument();
    const last = () => calls.filter((c) => c.path === '/api/usage/requests').at(-1)!;
    await waitFor(() => expect(last().query.get('model')).toBe('gpt-4o'));
    expect(last().query.get('status')).toBe('error');
    expect(last().query.get('limit')).toBe('50');
    expect(screen.getByRole('button', { name: /CSV/ })).toBeInTheDocument();
  });
});
