import { screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { session } from '../../../api';
import { apiError, json, mockApi } from '../../../test/api';
import { renderPage } from '../../../test/render';
import { fillIn, findButton, findDialog, user } from '../../../test/user';
import AdminUsersPage from '.';

const ALICE =
  '{"id":2,"username":"alice","email":null,"role":"user","status":"active","token_balance":12345678901.123456,' +
  '"total_recharged":12345678901.123456,"total_consumed":0,"discount_rate":0.85,"created_at":"2025-01-01T00:00:00Z"}';
const PAGE = `{"items":[${ALICE}],"total":1,"page":1,"page_size":20}`;
const BALANCE = '{"user_id":2,"token_balance":12345678901.623456,"total_recharged":12345678901.623456,"total_consumed":0,"discount_rate":0.85}';

describe('AdminUsersPage', () => {
  it('lists users with exact balances and recharges one idempotently', async () => {
    session.start('tok');
    const calls = mockApi({
      'GET /api/admin/users': json(PAGE),
      'POST /api/tokens/admin/user/2/recharge': json(
        `{"transaction":{"id":9,"user_id":2,"tx_type":"recharge","amount":0.5,"balance_before":12345678901.123456,` +
          `"balance_after":12345678901.623456,"order_no":"ORDER-1","description":null,"created_at":"2025-01-01T00:00:00Z"},` +
          `"balance":${BALANCE},"replayed":false}`,
      ),
    });
    renderPage(<AdminUsersPage />, { path: '/admin/users' });
    const row = (await screen.findByText('alice')).closest('tr')!;
    expect(within(row).getAllByText('12,345,678,901.123456')).toHaveLength(2);
    expect(within(row).getByText('0.85')).toBeInTheDocument();
    await user.click(await findButton('Credit', row));
    const dialog = await findDialog('Credit of alice');
    await fillIn(within(dialog).getByLabelText('Amount (credits)'), '0.5');
    await fillIn(within(dialog).getByLabelText('Order no.'), 'ORDER-1');
    await user.click(await findButton('OK', dialog));
    expect(await screen.findByText('Done. Balance now 12,345,678,901.623456')).toBeInTheDocument();
    const post = calls.find((c) => c.method === 'POST')!;
    expect(post.body).toEqual({ amount: '0.5', order_no: 'ORDER-1', description: null });
  });

  it('refuses amounts the server would refuse, and shows its errors', async () => {
    session.start('tok');
    mockApi({
      'GET /api/admin/users': json(PAGE),
      'POST /api/tokens/admin/user/2/recharge': apiError(409, 'conflict', 'order ORDER-1 was applied with another amount'),
    });
    renderPage(<AdminUsersPage />, { path: '/admin/users' });
    const row = (await screen.findByText('alice')).closest('tr')!;
    await user.click(await findButton('Credit', row));
    const dialog = await findDialog('Credit of alice');
    await fillIn(within(dialog).getByLabelText('Amount (credits)'), '-1');
    await user.click(await findButton('OK', dialog));
    expect(await within(dialog).findByText('Must not be negative')).toBeInTheDocument();
    await user.clear(within(dialog).getByLabelText('Amount (credits)'));
    await fillIn(within(dialog).getByLabelText('Amount (credits)'), '1');
    await fillIn(within(dialog).getByLabelText('Order no.'), 'ORDER-1');
    await user.click(await findButton('OK', dialog));
    await waitFor(() => expect(within(dialog).getByText('order ORDER-1 was applied with another amount')).toBeInTheDocument());
  });
});
