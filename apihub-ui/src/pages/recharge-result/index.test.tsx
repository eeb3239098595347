import { screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { session } from '../../api';
import { apiError, json, mockApi } from '../../test/api';
import { renderPage } from '../../test/render';
import RechargeResultPage, { POLL_MS } from '.';

const NO = 'epay20250101000000abcdefghij';
const ORDER = {
  id: 1,
  out_trade_no: NO,
  user_id: 2,
  amount: 2.5,
  money: '18.25',
  payment_type: 'alipay',
  status: 'pending',
  trade_no: null,
  created_at: '2025-01-01T00:00:00Z',
  paid_at: null,
};
// What EPay appends to the return address, besides our order number.
const PATH = `/recharge/result?out_trade_no=${NO}&trade_no=2025x&trade_status=TRADE_SUCCESS&sign=abc`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('RechargeResultPage', () => {
  it('asks again while the order is pending, and stops once it is paid', async () => {
    session.start('tok');
    let asked = 0;
    const calls = mockApi({
      [`GET /api/tokens/recharge/orders/${NO}`]: () => {
        asked += 1;
        return json(asked < 2 ? ORDER : { ...ORDER, status: 'paid', trade_no: '2025x', paid_at: '2025-01-01T00:01:00Z' });
      },
    });
    renderPage(<RechargeResultPage />, { path: PATH });
    const card = await screen.findByTestId('recharge-result');
    expect(await within(card).findByText('Waiting for the payment to be confirmed…')).toBeInTheDocument();
    expect(within(card).getByText('pending')).toBeInTheDocument();
    expect(within(card).getByText('18.25')).toBeInTheDocument();
    expect(within(card).getByText('Alipay')).toBeInTheDocument();
    expect(await within(card).findByText('Payment received', {}, { timeout: POLL_MS + 3000 })).toBeInTheDocument();
    expect(within(card).getByText('2.5 credits were added to your balance.')).toBeInTheDocument();
    expect(within(card).getByText('paid')).toBeInTheDocument();
    expect(within(card).getByText('View transactions').closest('a')).toHaveAttribute('href', '/transactions');
    expect(within(card).getByText('Back to Recharge').closest('a')).toHaveAttribute('href', '/recharge');
    const orderCalls = () => calls.filter((c) => c.path.startsWith('/api/tokens/recharge/orders/')).length;
    const seen = orderCalls();
    await sleep(POLL_MS + 500);
    expect(orderCalls()).toBe(seen);
  }, 20_000);

  it("shows the server's message for an order it does not know", async () => {
    session.start('tok');
    mockApi({ [`GET /api/tokens/recharge/orders/${NO}`]: apiError(404, 'not_found', 'order not found') });
    renderPage(<RechargeResultPage />, { path: PATH });
    expect(await screen.findByText('Could not load the order')).toBeInTheDocument();
    expect(screen.getByText('order not found')).toBeInTheDocument();
  });

  it('says so when the address names no order', async () => {
    session.start('tok');
    const calls = mockApi({});
    renderPage(<RechargeResultPage />, { path: '/recharge/result' });
    expect(await screen.findByText('No order number in the address.')).toBeInTheDocument();
    await waitFor(() => expect(calls).toHaveLength(0));
  });
});
