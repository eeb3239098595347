// Redemption codes: `POST /api/tokens/redeem` for users, `/api/admin/redemption-codes` for administrators.
import { queryOptions } from '@tanstack/react-query';
import { call, client, type Schemas } from './client';
import type { Paging } from './keys';

export type RedemptionCode = Schemas['RedemptionCodeView'];
export type CreateCodesRequest = Schemas['CreateCodesRequest'];
export type CreatedCodes = Schemas['CreatedCodes'];
export type Redeemed = Schemas['RedeemResponse'];

/** Redeems a code into a recharge of the caller's balance (404 unknown; 409 used, disabled or expired). */
export const redeem = (code: string) => call(client.POST('/api/tokens/redeem', { body: { code } }));

export interface CodeFilter extends Paging {
  status?: 'active' | 'disabled';
  batch_id?: string;
  redeemed?: boolean;
}

/** Administrators: codes, newest first. */
export const codesQuery = (filter: CodeFilter) =>
  queryOptions({
    queryKey: ['redemption-codes', filter],
    queryFn: () => call(client.GET('/api/admin/redemption-codes', { params: { query: filter } })),
  });

/** Administrators: a batch of codes. */
export const createCodes = (body: CreateCodesRequest) => call(client.POST('/api/admin/redemption-codes', { body }));

export const disableCode = (id: number) =>
  call(client.POST('/api/admin/redemption-codes/{id}/disable', { params: { path: { id } } }));
