import { screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { session } from '../../../api';
import { json, mockApi } from '../../../test/api';
import { renderPage } from '../../../test/render';
import { fillIn, findButton, findDialog, user } from '../../../test/user';
import AdminRechargeOrdersPage from '.';

const order = (id: number, extra: object = {}) => ({
  id,
  out_trade_no: `epay2025010100000${id}abcdefghij`,
  user_id: 2,
  amount: 12345.123456,
  money: '90120.40',
  payment_type: 'alipay',
  status: 'pending',
  trade_no: null,
  created_at: '2025-01-01T00:00:00Z',
  paid_at: null,
  completed_by: null,
  note: null,
  ...extra,
});

describe('AdminRechargeOrdersPage', () => {
  it('lists orders and completes a pending one by hand, with a note, after a warning', async () => {
    session.start('tok');
    const pending = order(1);
    const calls = mockApi({
      'GET /api/admin/users': json({ items: [{ id: 2, username: 'bob' }], total: 1, page: 1, page_size: 200 }),
      'GET /api/admin/recharge-orders': json({
        items: [pending, order(2, { status: 'paid', trade_no: 'T-99', paid_at: '2025-01-01T00:05:00Z' })],
        total: 2,
        page: 1,
        page_size: 20,
      }),
      [`POST /api/admin/recharge-orders/${pending.out_trade_no}/complete`]: json({
        order: { ...pending, status: 'paid', completed_by: 1, note: 'bank ref 42' },
        transaction: { id: 5, user_id: 2, tx_type: 'recharge', amount: 12345.123456, balance_before: 0, balance_after: 12345.123456, order_no: pending.out_trade_no, description: null, created_at: '2025-01-01T00:06:00Z' },
        balance: { user_id: 2, token_balance: 12345.123456, total_recharged: 12345.123456, total_consumed: 0, discount_rate: 1 },
      }),
    });
    renderPage(<AdminRechargeOrdersPage />, { path: '/admin/recharge-orders?status=pending' });
    const row = (await screen.findByText(pending.out_trade_no)).closest('tr')!;
    expect(calls.find((c) => c.path === '/api/admin/recharge-orders')!.query.get('status')).toBe('pending');
    expect(within(row).getByText('12,345.123456')).toBeInTheDocument();
    expect(within(row).getByText('90,120.40')).toBeInTheDocument();
    expect(within(row).getByText('pending')).toBeInTheDocument();
    const paid = screen.getByText(order(2).out_trade_no).closest('tr')!;
    expect(within(paid).getByText('T-99')).toBeInTheDocument();
    expect(within(paid).queryByText('Complete by hand')).toBeNull();

    await user.click(await findButton('Complete by hand', row));
    const dialog = await findDialog(`Complete order ${pending.out_trade_no} by hand`);
    expect(within(dialog).getByText(/user bob \(#2\) receives 12,345.123456 credits/)).toBeInTheDocument();
    await user.click(await findButton('Mark paid and credit', dialog));
    expect(await within(dialog).findByText('Required')).toBeInTheDocument();
    await fillIn(within(dialog).getByLabelText('Note'), ' bank ref 42 ');
    await user.click(await findButton('Mark paid and credit', dialog));
    expect(await screen.findByText('Order completed: 12,345.123456 credits added')).toBeInTheDocument();
    const post = calls.find((c) => c.method === 'POST')!;
    expect(post.body).toEqual({ note: 'bank ref 42' });
    await waitFor(() => expect(calls.filter((c) => c.path === '/api/admin/recharge-orders').length).toBeGreaterThan(1));
  });
});
