// The budgets form as data: per period (day, week, month) a switch and three optional limits,
// and the mapping between form values and the API. A period switched off has no budget (a PUT
// replaces them all); one switched on needs at least one limit, as the server does.
import type { Budget, BudgetList, Period, SetBudgets } from '../../api/budgets';
import { PERIODS } from '../../api/budgets';
import * as v from '../../lib/validation';
import type { FieldDef } from '../FormFields';

/** A budget's three limits, in the order they are shown. */
export const LIMITS = ['credit_limit', 'token_limit', 'call_limit'] as const;
export type LimitName = (typeof LIMITS)[number];

/** Flat field names, `day_enabled`, `day_credit_limit`, …: FormFields names are plain strings. */
export const fieldName = (period: Period, name: 'enabled' | LimitName) => `${period}_${name}`;

export interface PeriodValues {
  enabled?: boolean;
  /** Exact decimal text. */
  credit_limit?: string;
  token_limit?: number | null;
  call_limit?: number | null;
}

/** The form's values: `day_enabled`, `day_credit_limit`, `day_token_limit`, `day_call_limit`, … */
export type BudgetFormValues = Record<string, boolean | string | number | null | undefined>;

const blank = (x: unknown) => x === undefined || x === null || (typeof x === 'string' && x.trim() === '');

/** A period switched on must limit something: the switch's rule, re-checked as the limits change. */
export const needsALimit =
  (period: Period): v.Validator =>
  (t) =>
  ({ getFieldValue }) => ({
    validator: (_, enabled?: boolean) =>
      !enabled || LIMITS.some((l) => !blank(getFieldValue(fieldName(period, l))))
        ? Promise.resolve()
        : Promise.reject(new Error(t('budgets.needLimit'))),
  });

/** The switch of a period. */
export function switchField(period: Period): FieldDef {
  return {
    name: fieldName(period, 'enabled'),
    label: `budgets.${period}.enabled` as const,
    kind: 'switch',
    dependencies: LIMITS.map((l) => fieldName(period, l)),
    validators: [needsALimit(period)],
  };
}

/** The three limits of a period: credits (exact decimal, zero allowed), tokens and calls (whole, ≥ 0). */
export function limitFields(period: Period): FieldDef[] {
  return [
    {
      name: fieldName(period, 'credit_limit'),
      label: `budgets.${period}.credit` as const,
      kind: 'decimal',
      help: 'budgets.creditHelp',
      validators: [v.decimal({ allowZero: true })],
    },
    {
      name: fieldName(period, 'token_limit'),
      label: `budgets.${period}.tokens` as const,
      kind: 'integer',
      min: 0,
      validators: [v.integer(0)],
    },
    {
      name: fieldName(period, 'call_limit'),
      label: `budgets.${period}.calls` as const,
      kind: 'integer',
      min: 0,
      help: 'budgets.callsHelp',
      validators: [v.integer(0)],
    },
  ];
}

/** The values of one period, read from the flat form values. */
export function periodValues(values: BudgetFormValues, period: Period): PeriodValues {
  const get = (name: 'enabled' | LimitName) => values[fieldName(period, name)];
  return {
    enabled: get('enabled') === true,
    credit_limit: (get('credit_limit') as string | undefined) ?? undefined,
    token_limit: (get('token_limit') as number | null | undefined) ?? null,
    call_limit: (get('call_limit') as number | null | undefined) ?? null,
  };
}

/** The PUT body: every period switched on, with the limits filled in (amounts as exact text). */
export function toBudgetsRequest(values: BudgetFormValues): SetBudgets {
  const budgets: SetBudgets['budgets'] = [];
  for (const period of PERIODS) {
    const p = periodValues(values, period);
    if (!p.enabled) continue;
    budgets.push({
      period,
      credit_limit: blank(p.credit_limit) ? null : p.credit_limit!.trim(),
      token_limit: blank(p.token_limit) ? null : p.token_limit!,
      call_limit: blank(p.call_limit) ? null : p.call_limit!,
    });
  }
  return { budgets };
}

/** The current budgets as form values: a period with a budget is switched on with its limits. */
export function fromBudgets(list: Pick<BudgetList, 'budgets'> | undefined): BudgetFormValues {
  const values: BudgetFormValues = {};
  for (const period of PERIODS) {
    const budget = list?.budgets.find((b) => b.period === period);
    values[fieldName(period, 'enabled')] = !!budget;
    values[fieldName(period, 'credit_limit')] = budget?.credit_limit ?? '';
    values[fieldName(period, 'token_limit')] = budget?.token_limit ?? null;
    values[fieldName(period, 'call_limit')] = budget?.call_limit ?? null;
  }
  return values;
}

/** The budget of a period in a list, if there is one. */
export const budgetOf = (list: Pick<BudgetList, 'budgets'> | undefined, period: Period): Budget | undefined =>
  list?.budgets.find((b) => b.period === period);
