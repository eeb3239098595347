// Credit: `/api/tokens/*`, the caller's balance and ledger and (administrators) anyone's.
import { queryOptions } from '@tanstack/react-query';
import { call, client, type Schemas } from './client';
import type { Paging } from './keys';

export type Balance = Schemas['BalanceView'];
export type Transaction = Schemas['TransactionView'];
export type CreditRequest = Schemas['CreditRequest'];
export type CreditResponse = Schemas['CreditResponse'];

/** The ledger's transaction types. */
export const TX_TYPES = ['recharge', 'consume', 'refund', 'adjust'] as const;
export type TxType = (typeof TX_TYPES)[number];

export const balanceQuery = () =>
  queryOptions({ queryKey: ['balance'], queryFn: () => call(client.GET('/api/tokens/balance')) });

export const transactionsQuery = (filter: Paging & { tx_type?: TxType }) =>
  queryOptions({
    queryKey: ['transactions', filter],
    queryFn: () => call(client.GET('/api/tokens/transactions', { params: { query: filter } })),
  });

/** The four administrator credit operations. */
export type CreditOperation = TxType;

/** Administrators: recharge, consume, refund or adjust a user's credit. */
export function creditUser(userId: number, operation: CreditOperation, body: CreditRequest): Promise<CreditResponse> {
  const params = { path: { user_id: userId } };
  switch (operation) {
    case 'recharge':
      return call(client.POST('/api/tokens/admin/user/{user_id}/recharge', { params, body }));
    case 'consume':
      return call(client.POST('/api/tokens/admin/user/{user_id}/consume', { params, body }));
    case 'refund':
      return call(client.POST('/api/tokens/admin/user/{user_id}/refund', { params, body }));
    case 'adjust':
      return call(client.POST('/api/tokens/admin/user/{user_id}/adjust', { params, body }));
  }
}

/** Administrators: a user's discount rate, in (0, 1]. */
export const setDiscount = (userId: number, discountRate: string) =>
  call(
    client.POST('/api/tokens/admin/user/{user_id}/discount', {
      params: { path: { user_id: userId } },
      body: { discount_rate: discountRate },
    }),
  );
