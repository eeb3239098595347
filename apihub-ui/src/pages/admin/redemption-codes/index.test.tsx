import { screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import { session } from '../../../api';
import { json, mockApi } from '../../../test/api';
import { renderPage } from '../../../test/render';
import { fillIn, findButton, findDialog, user } from '../../../test/user';
import AdminRedemptionCodesPage, { codeState } from '.';
import { codesToText } from './components/CreatedCodesModal';

const code = (id: number, extra: object = {}) => ({
  id,
  code: `c0de${id}`.padEnd(32, '0'),
  amount: 12345678.123456,
  name: 'launch',
  status: 'active',
  batch_id: 'b47c4',
  created_by: 1,
  created_at: '2025-01-01T00:00:00Z',
  expires_at: null,
  redeemed_at: null,
  redeemed_by: null,
  ...extra,
});
const readText = (blob: Blob) =>
  new Promise<string>((resolve) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result as string);
    reader.readAsText(blob);
  });
const page = (items: object[]) => json({ items, total: items.length, page: 1, page_size: 20 });

describe('AdminRedemptionCodesPage', () => {
  it('generates a batch and shows its codes once, to copy or download', async () => {
    session.start('tok');
    const created = [code(1), code(2), code(3)];
    const calls = mockApi({
      'GET /api/admin/redemption-codes': page([]),
      'POST /api/admin/redemption-codes': json({ batch_id: 'b47c4', codes: created }, 201),
    });
    const createObjectURL = vi.spyOn(URL, 'createObjectURL').mockReturnValue('blob:codes');
    vi.spyOn(HTMLAnchorElement.prototype, 'click').mockImplementation(() => {});
    renderPage(<AdminRedemptionCodesPage />, { path: '/admin/redemption-codes' });
    expect(await screen.findByText('No codes match.')).toBeInTheDocument();
    await user.click(await findButton('Generate codes'));
    const dialog = await findDialog('Generate redemption codes');
    await user.click(await findButton('Create', dialog));
    await waitFor(() => expect(within(dialog).getAllByText('Required')).toHaveLength(2));
    await fillIn(within(dialog).getByLabelText('Credit per code'), '12345678.123456');
    await fillIn(within(dialog).getByLabelText('Batch name'), ' launch ');
    await user.click(await findButton('Create', dialog));

    const shown = await findDialog('3 new codes');
    expect(within(shown).getAllByTestId('created-code').map((e) => e.textContent)).toEqual(created.map((c) => c.code));
    expect(within(shown).getByTestId('created-batch')).toHaveTextContent('b47c4');
    expect(await findButton('Copy all', shown)).toBeInTheDocument();
    await user.click(await findButton('Download .txt', shown));
    expect(await readText(createObjectURL.mock.calls[0][0] as Blob)).toBe(created.map((c) => `${c.code}\n`).join(''));
    const post = calls.find((c) => c.method === 'POST')!;
    expect(post.body).toEqual({ count: 10, amount: '12345678.123456', name: 'launch', expires_at: null });
    // The list now shows the new batch.
    await waitFor(() => expect(calls.at(-1)!.query.get('batch_id')).toBe('b47c4'));
  });

  const LIST = {
    'GET /api/admin/redemption-codes': page([
      code(1),
      code(2, { redeemed_at: '2025-01-02T00:00:00Z', redeemed_by: 7 }),
      code(3, { status: 'disabled' }),
    ]),
    'POST /api/admin/redemption-codes/1/disable': json(code(1, { status: 'disabled' })),
    'GET /api/admin/users': json({ items: [{ id: 7, username: 'alice' }], total: 1, page: 1, page_size: 200 }),
  };

  it('lists codes with their state and disables one after confirmation', async () => {
    session.start('tok');
    const calls = mockApi(LIST);
    renderPage(<AdminRedemptionCodesPage />, { path: '/admin/redemption-codes' });
    const first = (await screen.findByText(code(1).code)).closest('tr')!;
    expect(within(first).getByText('12,345,678.123456')).toBeInTheDocument();
    expect(within(first).getByText('active')).toBeInTheDocument();
    const redeemed = screen.getByText(code(2).code).closest('tr')!;
    expect(within(redeemed).getByText('redeemed')).toBeInTheDocument();
    expect(await within(redeemed).findByText('alice (#7)')).toBeInTheDocument();
    expect(within(redeemed).queryByText('Disable')).toBeNull();
    expect(within(screen.getByText(code(3).code).closest('tr')!).getByText('disabled')).toBeInTheDocument();

    await user.click(await findButton('Disable', first));
    await screen.findByText('Disable this code? It can no longer be redeemed.');
    await user.click(await findButton('OK', document.querySelector('.ant-popconfirm') as HTMLElement));
    expect(await screen.findByText('Code disabled')).toBeInTheDocument();
    expect(calls.some((c) => c.method === 'POST' && c.path === '/api/admin/redemption-codes/1/disable')).toBe(true);
  });

  it('filters by redeemed, and by batch from the URL', async () => {
    session.start('tok');
    const calls = mockApi(LIST);
    renderPage(<AdminRedemptionCodesPage />, { path: '/admin/redemption-codes?batch_id=b47c4' });
    await screen.findByText(code(1).code);
    expect(calls[0].query.get('batch_id')).toBe('b47c4');
    await user.click(screen.getByLabelText('Redeemed'));
    await user.click(await screen.findByTitle('Not redeemed'));
    await user.click(await findButton('Filter'));
    await waitFor(() => expect(calls.at(-1)!.query.get('redeemed')).toBe('false'));
    expect(calls.at(-1)!.query.get('batch_id')).toBe('b47c4');
  });
});

describe('codeState and codesToText', () => {
  it('says what a code is now', () => {
    const now = Date.parse('2025-06-01T00:00:00Z');
    const view = (extra: object) => code(1, extra) as unknown as Parameters<typeof codeState>[0];
    expect(codeState(view({}), now)).toBe('active');
    expect(codeState(view({ expires_at: '2025-05-01T00:00:00Z' }), now)).toBe('expired');
    expect(codeState(view({ status: 'disabled', expires_at: '2025-05-01T00:00:00Z' }), now)).toBe('disabled');
    expect(codeState(view({ status: 'disabled', redeemed_at: '2025-01-02T00:00:00Z' }), now)).toBe('redeemed');
    expect(codesToText([view({}), view({ code: 'x' })])).toBe(`${code(1).code}\nx\n`);
  });
});
