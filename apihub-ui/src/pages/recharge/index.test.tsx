import { screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { session } from '../../api';
import { apiError, json, mockApi } from '../../test/api';
import { renderPage } from '../../test/render';
import { fillIn, findButton, user } from '../../test/user';
import RechargePage from '.';

const ME = { id: 2, username: 'alice', email: null, role: 'user', status: 'active', created_at: '2025-01-01T00:00:00Z' };
const balance = (amount: string) =>
  json(`{"user_id":2,"token_balance":${amount},"total_recharged":${amount},"total_consumed":0,"discount_rate":1}`);

describe('RechargePage: redeem a code', () => {
  it('redeems a code, shows the new balance exactly and refreshes it', async () => {
    session.start('tok');
    let redeemed = false;
    const calls = mockApi({
      'GET /api/auth/me': json(ME),
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
