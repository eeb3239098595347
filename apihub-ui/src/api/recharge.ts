// Online recharge (EPay): `/api/tokens/recharge/*` for the caller, `/api/admin/recharge-orders` for administrators.
import { queryOptions } from '@tanstack/react-query';
import { call, client, type Schemas } from './client';
import type { Paging } from './keys';

export type RechargeOptions = Schemas['RechargeOptions'];
export type RechargeOrder = Schemas['RechargeOrderView'];
export type OrderPage = Schemas['RechargeOrderPage'];
export type CreatedRecharge = Schemas['CreatedOrder'];
export type CompletedOrder = Schemas['CompletedOrder'];

/** The order statuses. */
export const ORDER_STATUSES = ['pending', 'paid'] as const;

/** What may be bought online: bounds, price per credit, payment types; `enabled: false` without EPay. */
export const rechargeOptionsQuery = () =>
  queryOptions({
    queryKey: ['recharge', 'options'],
    queryFn: () => call(client.GET('/api/tokens/recharge/options')),
    staleTime: 60_000,
  });

/** A pending order and the signed request that starts its payment. */
export const createRecharge = (body: Schemas['RechargeRequest']) => call(client.POST('/api/tokens/recharge', { body }));

/** The caller's orders, newest first. */
export const myOrdersQuery = (paging: Paging) =>
  queryOptions({
    queryKey: ['recharge', 'orders', paging],
    queryFn: () => call(client.GET('/api/tokens/recharge/orders', { params: { query: paging } })),
  });

/** One of the caller's orders. */
export const orderQuery = (outTradeNo: string) =>
  queryOptions({
    queryKey: ['recharge', 'order', outTradeNo],
    queryFn: () =>
      call(client.GET('/api/tokens/recharge/orders/{out_trade_no}', { params: { path: { out_trade_no: outTradeNo } } })),
  });

export interface AdminOrderFilter extends Paging {
  status?: string;
  user_id?: number;
  out_trade_no?: string;
}

/** Administrators: a page of every order. */
export const adminOrders = (filter: AdminOrderFilter) => call(
    client.GET('/api/admin/recharge-orders', {
      // The filter's select offers only the documented values.
      params: { query: { ...filter, status: filter.status as 'pending' | 'paid' | undefined } },
    }),
  );

/** Administrators: every order. */
export const adminOrdersQuery = (filter: AdminOrderFilter) =>
  queryOptions({ queryKey: ['recharge', 'admin', filter], queryFn: () => adminOrders(filter) });

/** Administrators: marks a pending order paid and credits it. */
export const completeOrder = (outTradeNo: string, note: string) =>
  call(
    client.POST('/api/admin/recharge-orders/{out_trade_no}/complete', {
      params: { path: { out_trade_no: outTradeNo } },
      body: { note },
    }),
  );
