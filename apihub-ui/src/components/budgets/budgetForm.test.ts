import { describe, expect, it } from 'vitest';
import type { BudgetList } from '../../api/budgets';
import { fromBudgets, limitFields, switchField, toBudgetsRequest } from './budgetForm';

const LIST: BudgetList = {
  time_zone: 'Asia/Shanghai',
  budgets: [
    {
      period: 'day',
      credit_limit: '12345678.123456',
      token_limit: null,
      call_limit: 100,
      credit_used: '0.5',
      tokens_used: 10,
      calls_used: 2,
      window_start: '2026-12-03T16:00:00Z',
      resets_at: '2026-12-04T16:00:00Z',
    },
  ],
};

describe('budgets form mapping', () => {
  it('fills a period that has a budget and leaves the others off', () => {
    expect(fromBudgets(LIST)).toEqual({
      day_enabled: true,
      day_credit_limit: '12345678.123456',
      day_token_limit: null,
      day_call_limit: 100,
      week_enabled: false,
      week_credit_limit: '',
      week_token_limit: null,
      week_call_limit: null,
      month_enabled: false,
      month_credit_limit: '',
      month_token_limit: null,
      month_call_limit: null,
    });
  });

  it('sends every period switched on, in order, amounts as exact text and empty limits as null', () => {
    expect(
      toBudgetsRequest({
        month_enabled: true,
        month_token_limit: 0,
        day_enabled: true,
        day_credit_limit: ' 0.000001 ',
        day_token_limit: null,
        day_call_limit: 5,
        // Switched off: left out (a PUT replaces all, so its budget goes), whatever its fields hold.
        week_enabled: false,
        week_credit_limit: '7',
      }),
    ).toEqual({
      budgets: [
        { period: 'day', credit_limit: '0.000001', token_limit: null, call_limit: 5 },
        { period: 'month', credit_limit: null, token_limit: 0, call_limit: null },
      ],
    });
  });

  it('sends an empty list when every period is off (removes the budgets)', () => {
    expect(toBudgetsRequest(fromBudgets({ budgets: [] }))).toEqual({ budgets: [] });
  });

  it('round-trips what the server sent', () => {
    expect(toBudgetsRequest(fromBudgets(LIST))).toEqual({
      budgets: [{ period: 'day', credit_limit: '12345678.123456', token_limit: null, call_limit: 100 }],
    });
  });

  it('declares per-period fields with their rules', () => {
    expect(switchField('week')).toMatchObject({ name: 'week_enabled', kind: 'switch', dependencies: ['week_credit_limit', 'week_token_limit', 'week_call_limit'] });
    expect(limitFields('month').map((f) => [f.name, f.kind, f.label])).toEqual([
      ['month_credit_limit', 'decimal', 'budgets.month.credit'],
      ['month_token_limit', 'integer', 'budgets.month.tokens'],
      ['month_call_limit', 'integer', 'budgets.month.calls'],
    ]);
  });
});
