// Periodic budgets: credit, token and call limits per day, week or month, on a key
// (`/api/keys/{key_id}/budgets`), on a user across their keys (`/api/admin/users/{user_id}/budgets`,
// set by administrators) and the caller's own user-wide ones (`/api/budgets`, read only).
import { queryOptions } from '@tanstack/react-query';
import { call, client, type Schemas } from './client';

export type Budget = Schemas['BudgetView'];
export type BudgetList = Schemas['BudgetList'];
export type BudgetInput = Schemas['BudgetInput'];
export type SetBudgets = Schemas['SetBudgetsRequest'];

/** The periods, shortest first (the order the server lists them in). */
export const PERIODS = ['day', 'week', 'month'] as const;
export type Period = (typeof PERIODS)[number];

/** A key's budgets and their current windows (its owner or an administrator). */
export const keyBudgetsQuery = (keyId: number) =>
  queryOptions({
    queryKey: ['budgets', 'key', keyId],
    queryFn: () => call(client.GET('/api/keys/{key_id}/budgets', { params: { path: { key_id: keyId } } })),
  });

/** A budgets query (a key's, a user's or the caller's own): they all read a BudgetList. */
export type BudgetsQuery = ReturnType<typeof keyBudgetsQuery>;

/** Replaces a key's budgets (an empty list removes them). */
export const setKeyBudgets = (keyId: number, body: SetBudgets) =>
  call(client.PUT('/api/keys/{key_id}/budgets', { params: { path: { key_id: keyId } }, body }));

/** The caller's own user-wide budgets. */
export const myBudgetsQuery = () =>
  queryOptions({ queryKey: ['budgets', 'mine'], queryFn: () => call(client.GET('/api/budgets')) });

/** Administrators: a user's budgets (a cap across all of their keys). */
export const userBudgetsQuery = (userId: number) =>
  queryOptions({
    queryKey: ['budgets', 'user', userId],
    queryFn: () => call(client.GET('/api/admin/users/{user_id}/budgets', { params: { path: { user_id: userId } } })),
  });

/** Administrators: replaces a user's budgets. */
export const setUserBudgets = (userId: number, body: SetBudgets) =>
  call(client.PUT('/api/admin/users/{user_id}/budgets', { params: { path: { user_id: userId } }, body }));
