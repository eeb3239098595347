import { describe, expect, it } from 'vitest';
import { apiError, json, mockApi } from '../test/api';
import { changePassword, login } from './auth';
import { balanceQuery } from './credit';
import { ApiError } from './errors';
import { session } from './session';

const balance = () => balanceQuery().queryFn!({} as never) as Promise<unknown>;

describe('client', () => {
  it('sends the bearer token and keeps money exact', async () => {
    session.start('tok-1');
    const calls = mockApi({
      'GET /api/tokens/balance': json(
        '{"user_id":1,"token_balance":12345678901234.123456,"total_recharged":1,"total_consumed":0,"discount_rate":0.8}',
      ),
    });
    const data = await balance();
    expect(calls[0].headers.get('authorization')).toBe('Bearer tok-1');
    expect(data).toMatchObject({ token_balance: '12345678901234.123456', discount_rate: '0.8' });
  });

  it('turns an error body into an ApiError with the server message', async () => {
    session.start('tok-1');
    mockApi({ 'GET /api/tokens/balance': apiError(422, 'validation', 'page must be between 1 and 1000000') });
    await expect(balance()).rejects.toEqual(new ApiError(422, 'validation', 'page must be between 1 and 1000000'));
  });

  it('ends the session when the server refuses the token', async () => {
    session.start('tok-1');
    const ends: unknown[] = [];
    const off = session.subscribe((token, reason) => ends.push([token, reason]));
    mockApi({ 'GET /api/tokens/balance': apiError(401, 'unauthorized', 'session expired') });
    await expect(balance()).rejects.toMatchObject({ status: 401 });
    expect(session.token()).toBeNull();
    expect(ends).toEqual([[null, 'expired']]);
    off();
  });

  it('keeps the session on a wrong password', async () => {
    session.start('tok-1');
    mockApi({
      'POST /api/auth/password': apiError(401, 'unauthorized', 'current password is wrong'),
      'POST /api/auth/login': apiError(401, 'unauthorized', 'wrong username or password'),
    });
    await expect(changePassword({ current_password: 'x', new_password: 'y'.repeat(8) })).rejects.toMatchObject({
      message: 'current password is wrong',
    });
    await expect(login({ username: 'a', password: 'b' })).rejects.toMatchObject({ status: 401 });
    expect(session.token()).toBe('tok-1');
  });
});
