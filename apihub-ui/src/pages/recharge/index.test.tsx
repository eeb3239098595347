import { screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import { session } from '../../api';
import { apiError, json, mockApi } from '../../test/api';
import { renderPage } from '../../test/render';
import { fillIn, findButton, user } from '../../test/user';
import RechargePage from '.';

const ME = { id: 2, username: 'alice', email: null, role: 'user', status: 'active', created_at: '2025-01-01T00:00:00Z' };
const DISABLED = json({ enabled: false, min_amount: 0, max_amount: 0, price: 0, payment_types: [] });
const OPTIONS = json('{"enabled":true,"min_amount":1,"max_amount":1000,"price":7.3,"payment_types":["alipay","wxpay"]}');
const balance = (amount: string) =>
  json(`{"user_id":2,"token_balance":${amount},"total_recharged":${amount},"total_consumed":0,"discount_rate":1}`);

describe('RechargePage: redeem a code', () => {
  it('redeems a code, shows the new balance exactly and refreshes it', async () => {
    session.start('tok');
    let redeemed = false;
    const calls = mockApi({
      'GET /api/auth/me': json(ME),
      'GET /api/tokens/recharge/options': DISABLED,
      'GET /api/tokens/balance': () => balance(redeemed ? '12345678901.123456' : '12345678891.123456'),
      'POST /api/tokens/redeem': () => {
        redeemed = true;
        return json(
          '{"transaction":{"id":7,"user_id":2,"tx_type":"recharge","amount":10,"balance_before":12345678891.123456,' +
            '"balance_after":12345678901.123456,"order_no":"redeem-abc123","description":null,"created_at":"2025-01-01T00:00:00Z"},' +
            '"balance":{"user_id":2,"token_balance":12345678901.123456,"total_recharged":12345678901.123456,"total_consumed":0,"discount_rate":1}}',
        );
      },
    });
    renderPage(<RechargePage />, { path: '/recharge' });
    const card = await screen.findByTestId('redeem-card');
    await waitFor(() => expect(within(card).getByTestId('recharge-balance')).toHaveTextContent('12,345,678,891.123456'));
    await fillIn(within(card).getByLabelText('Redemption code'), '  abc123 ');
    await user.click(await findButton('Redeem', card));
    expect(await within(card).findByText('Redeemed 10 credits. Your balance is now 12,345,678,901.123456.')).toBeInTheDocument();
    expect(calls.find((c) => c.method === 'POST')!.body).toEqual({ code: 'abc123' });
    await waitFor(() => expect(within(card).getByTestId('recharge-balance')).toHaveTextContent('12,345,678,901.123456'));
    expect(within(card).getByLabelText('Redemption code')).toHaveValue('');
  });

  it("shows the server's message for an unknown or used code", async () => {
    session.start('tok');
    let answer = apiError(404, 'not_found', 'unknown redemption code');
    mockApi({
      'GET /api/auth/me': json(ME),
      'GET /api/tokens/recharge/options': DISABLED,
      'GET /api/tokens/balance': balance('5'),
      'POST /api/tokens/redeem': () => answer,
    });
    renderPage(<RechargePage />, { path: '/recharge' });
    const card = await screen.findByTestId('redeem-card');
    await user.click(await findButton('Redeem', card));
    expect(await within(card).findByText('Required')).toBeInTheDocument();
    await fillIn(within(card).getByLabelText('Redemption code'), 'nope');
    await user.click(await findButton('Redeem', card));
    expect(await within(card).findByText('unknown redemption code')).toBeInTheDocument();
    answer = apiError(409, 'conflict', 'this redemption code has already been redeemed');
    await user.click(await findButton('Redeem', card));
    expect(await within(card).findByText('this redemption code has already been redeemed')).toBeInTheDocument();
    expect(within(card).queryByTestId('redeem-result')).toBeNull();
  });
});

const ORDER = {
  id: 1,
  out_trade_no: 'epay20250101000000abcdefghij',
  user_id: 2,
  amount: 2.5,
  money: '18.25',
  payment_type: 'wxpay',
  status: 'pending',
  trade_no: null,
  created_at: '2025-01-01T00:00:00Z',
  paid_at: null,
};
const PAYMENT = {
  url: 'https://pay.example.com/submit.php',
  method: 'POST',
  fields: { pid: '1001', out_trade_no: ORDER.out_trade_no, money: '18.25', type: 'wxpay', sign: 'abc', sign_type: 'MD5' },
};

describe('RechargePage: online payment', () => {
  it('says online payment is not configured, and keeps the redeem card', async () => {
    session.start('tok');
    const calls = mockApi({
      'GET /api/auth/me': json(ME),
      'GET /api/tokens/recharge/options': DISABLED,
      'GET /api/tokens/balance': balance('5'),
    });
    renderPage(<RechargePage />, { path: '/recharge' });
    expect(await screen.findByText('Online payment is not configured')).toBeInTheDocument();
    expect(await screen.findByText('alice')).toBeInTheDocument();
    expect(screen.getByTestId('redeem-card')).toBeInTheDocument();
    expect(screen.queryByTestId('recharge-form')).toBeNull();
    expect(calls.some((c) => c.path === '/api/tokens/recharge/orders')).toBe(false);
  });

  it('checks the amount against the bounds, shows the money to pay, and sends the browser to pay', async () => {
    session.start('tok');
    const submit = vi.spyOn(HTMLFormElement.prototype, 'submit').mockImplementation(() => {});
    const calls = mockApi({
      'GET /api/auth/me': json(ME),
      'GET /api/tokens/recharge/options': OPTIONS,
      'GET /api/tokens/balance': balance('5'),
      'GET /api/tokens/recharge/orders': json({ items: [{ ...ORDER, status: 'paid', id: 0, out_trade_no: 'epay-old' }], total: 1, page: 1, page_size: 10 }),
      'POST /api/tokens/recharge': json({ order: ORDER, payment: PAYMENT, pay_url: 'https://pay.example.com/submit.php?pid=1001' }, 201),
    });
    renderPage(<RechargePage />, { path: '/recharge' });
    const card = await screen.findByTestId('recharge-form');
    expect(within(card).getByText('1 credit costs ¥7.3')).toBeInTheDocument();
    expect(await screen.findByText('epay-old')).toBeInTheDocument();
    const amount = within(card).getByLabelText('Credits to buy');
    await fillIn(amount, '0.5');
    await user.click(await findButton('Pay', card));
    expect(await within(card).findByText('From 1 to 1,000 credits')).toBeInTheDocument();
    await user.clear(amount);
    await fillIn(amount, '2.5');
    await waitFor(() => expect(within(card).getByTestId('to-pay')).toHaveTextContent('18.25'));
    await user.click(within(card).getByText('WeChat Pay'));
    await user.click(await findButton('Pay', card));
    await waitFor(() => expect(submit).toHaveBeenCalledTimes(1));
    expect(calls.find((c) => c.method === 'POST')!.body).toEqual({ amount: '2.5', payment_type: 'wxpay' });
    const form = submit.mock.contexts[0] as HTMLFormElement;
    expect(form.action).toBe(PAYMENT.url);
    expect(Object.fromEntries(new FormData(form))).toEqual(PAYMENT.fields);
    expect(await within(card).findByText('Open the payment page')).toHaveAttribute('href', 'https://pay.example.com/submit.php?pid=1001');
    form.remove();
  });

  it("shows the server's refusal", async () => {
    session.start('tok');
    mockApi({
      'GET /api/auth/me': json(ME),
      'GET /api/tokens/recharge/options': OPTIONS,
      'GET /api/tokens/balance': balance('5'),
      'GET /api/tokens/recharge/orders': json({ items: [], total: 0, page: 1, page_size: 10 }),
      'POST /api/tokens/recharge': apiError(503, 'unavailable', 'online payment is not configured'),
    });
    renderPage(<RechargePage />, { path: '/recharge' });
    const card = await screen.findByTestId('recharge-form');
    await fillIn(within(card).getByLabelText('Credits to buy'), '10');
    await user.click(await findButton('Pay', card));
    expect(await within(card).findByText('online payment is not configured')).toBeInTheDocument();
  });
});
