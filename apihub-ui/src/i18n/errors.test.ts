import { describe, expect, it } from 'vitest';
import { ApiError } from '../api/errors';
import { errorText } from './errors';
import { translate } from './index';

describe('errorText', () => {
  it('translates the messages people meet into Chinese', () => {
    const cases: [ApiError, string][] = [
      [new ApiError(401, 'unauthorized', 'invalid username or password'), '用户名或密码错误'],
      [new ApiError(401, 'unauthorized', 'current password is wrong'), '当前密码不正确'],
      [new ApiError(409, 'conflict', 'this redemption code has already been redeemed'), '此兑换码已被兑换'],
      [new ApiError(409, 'conflict', 'username `alice` is taken'), '用户名 alice 已被占用'],
      [new ApiError(429, 'too_many_requests', 'too many failed logins for this account; try again in 30 s'), '登录失败次数过多，请 30 秒后再试。'],
      [new ApiError(429, 'too_many_requests', 'too many failed logins from this address; try again in 5 s'), '登录失败次数过多，请 5 秒后再试。'],
      [new ApiError(404, 'not_found', 'key not found'), '密钥不存在'],
      [new ApiError(402, 'insufficient_balance', 'insufficient balance: 1.5 available, 2 required'), '余额不足：可用 1.5，需要 2'],
      [
        new ApiError(422, 'validation_error', 'the `week` budget sets no limit: give credit_limit, token_limit or call_limit'),
        '至少设置一项限额：额度、Token 或调用次数',
      ],
      [new ApiError(422, 'validation_error', 'the `day` budget has a negative limit'), '不能为负数'],
      [new ApiError(422, 'validation_error', 'credit_limit must be at most 999999999.999999'), '数值过大（须小于 1,000,000,000）'],
    ];
    for (const [error, text] of cases) expect(errorText(error, 'zh-CN')).toBe(text);
  });

  it("falls back to a Chinese sentence for the code, keeping the server's words", () => {
    expect(errorText(new ApiError(422, 'validation_error', 'count must be between 1 and 1000'), 'zh-CN')).toBe(
      '输入的值无效（count must be between 1 and 1000）',
    );
    expect(errorText(new ApiError(500, 'internal_error', 'internal error'), 'zh-CN')).toBe('服务器出错了');
    expect(errorText(new ApiError(502, 'http_502', 'Bad Gateway'), 'zh-CN')).toBe('服务暂时不可用，请稍后重试');
  });

  it("shows the server's English message as it is in English, and explains network failures", () => {
    expect(errorText(new ApiError(409, 'conflict', 'this redemption code has already been redeemed'), 'en')).toBe(
      'this redemption code has already been redeemed',
    );
    expect(errorText(new ApiError(0, 'network', 'Failed to fetch'), 'en')).toMatch(/could not be reached/);
    expect(errorText(new Error('boom'), 'zh-CN')).toBe('boom');
  });
});

describe('translate', () => {
  it('picks singular or plural by the value', () => {
    expect(translate('en', 'adminOrders.completed', { amount: '1' })).toBe('Order completed: 1 credit added');
    expect(translate('en', 'adminOrders.completed', { amount: '2.5' })).toBe('Order completed: 2.5 credits added');
    expect(translate('en', 'keys.callsLeft', { n: '1' })).toBe('1 call left');
    expect(translate('en', 'keys.callsLeft', { n: '1,000' })).toBe('1,000 calls left');
    expect(translate('zh-CN', 'adminOrders.completed', { amount: '1' })).toBe('订单已完成：已增加 1 额度');
  });
});
