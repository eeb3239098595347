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

  it("views a user's budgets with their usage and replaces them", async () => {
    session.start('tok');
    const calls = mockApi({
      'GET /api/admin/users': json(PAGE),
      'GET /api/admin/users/2/budgets': json(
        '{"time_zone":"Europe/Berlin","budgets":[{"period":"week","credit_limit":50.25,"token_limit":1000000,"call_limit":null,' +
          '"credit_used":50.250001,"tokens_used":1234,"calls_used":3,"window_start":"2026-11-29T23:00:00Z","resets_at":"2026-12-06T23:00:00Z"}]}',
      ),
      'PUT /api/admin/users/2/budgets': json('{"time_zone":"Europe/Berlin","budgets":[]}'),
    });
    renderPage(<AdminUsersPage />, { path: '/admin/users' });
    const row = (await screen.findByText('alice')).closest('tr')!;
    await user.click(await findButton('Budgets', row));
    const dialog = await findDialog('Budgets of alice');
    expect(within(dialog).getByText(/A cap across all of alice's keys/)).toBeInTheDocument();
    const week = await within(dialog).findByTestId('budget-week');
    expect(within(week).getByText('50.250001 / 50.25')).toBeInTheDocument();
    expect(within(week).getByText('1,234 / 1,000,000')).toBeInTheDocument();
    expect(within(week).getByTestId('budget-week-resets')).toHaveTextContent('Resets 7 Dec 2026, 00:00 Europe/Berlin');
    await waitFor(() => expect(within(dialog).getByLabelText('Credits per week')).toHaveValue('50.25'));
    await user.clear(within(dialog).getByLabelText('Credits per week'));
    await fillIn(within(dialog).getByLabelText('Credits per week'), '75');
    await user.click(within(dialog).getByLabelText('Daily budget'));
    await fillIn(within(dialog).getByLabelText('Credits per day'), '10.000001');
    await user.click(await findButton('Save', dialog));
    await waitFor(() => expect(calls.some((c) => c.method === 'PUT')).toBe(true));
    expect(calls.find((c) => c.method === 'PUT')!.body).toEqual({
      budgets: [
        { period: 'day', credit_limit: '10.000001', token_limit: null, call_limit: null },
        { period: 'week', credit_limit: '75', token_limit: 1000000, call_limit: null },
      ],
    });
    expect(await screen.findByText('Budgets saved')).toBeInTheDocument();
  });
});
