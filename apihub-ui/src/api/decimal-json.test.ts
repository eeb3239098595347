import { describe, expect, it } from 'vitest';
import { parseDecimalJson } from './decimal-json';

describe('parseDecimalJson', () => {
  it('keeps decimal fields as their exact text and other numbers as numbers', () => {
    const parsed = parseDecimalJson(
      '{"user_id": 7, "token_balance": 9007199254740993.123456, "total_recharged": 100.5, ' +
        '"total_consumed": 0.000001, "discount_rate": 1, "items": [{"amount": -3.25, "id": 12}]}',
    );
    expect(parsed).toEqual({
      user_id: 7,
      token_balance: '9007199254740993.123456',
      total_recharged: '100.5',
      total_consumed: '0.000001',
      discount_rate: '1',
      items: [{ amount: '-3.25', id: 12 }],
    });
  });

  it('leaves nulls and strings alone', () => {
    expect(parseDecimalJson('{"quota_limit": null, "amount": "5"}')).toEqual({ quota_limit: null, amount: '5' });
  });
});
