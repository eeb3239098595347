// Online recharge (EPay): `/api/tokens/recharge/*` for the caller, `/api/admin/recharge-orders` for administrators.
// PROVISIONAL: typed by hand from the planned contract until the server's routes are in openapi.json.
import { queryOptions } from '@tanstack/react-query';
import type { PaymentRequest } from '../lib/payment';
import { call, client } from './client';
import type { Paging } from './keys';

export interface RechargeOptions {
  enabled: boolean;
  min_amount: string;
  max_amount: string;
  price: string;
  payment_types: string[];
}

export interface RechargeOrder {
  id: number;
  out_trade_no: string;
  user_id: number;
  amount: string;
  money: string;
  payment_type: string;
  status: string;
  trade_no?: string | null;
  created_at: string;
  paid_at?: string | null;
  completed_by?: number | null;
  note?: string | null;
}

export interface CreatedRecharge {
  order: RechargeOrder;
  payment: PaymentRequest;
  pay_url: string;
}

export interface OrderPage {
  items: RechargeOrder[];
  total: number;
  page: number;
  page_size: number;
}

type Untyped = {
  GET: (path: string, init?: object) => Promise<{ data?: unknown; error?: unknown; response: Response }>;
  POST: (path: string, init?: object) => Promise<{ data?: unknown; error?: unknown; response: Response }>;
};
const raw = client as unknown as Untyped;

/** The order statuses. */
export const ORDER_STATUSES = ['pending', 'paid'] as const;

export const rechargeOptionsQuery = () =>
  queryOptions({
    queryKey: ['recharge', 'options'],
    queryFn: () => call(raw.GET('/api/tokens/recharge/options')) as Promise<RechargeOptions>,
    staleTime: 60_000,
  });

export const createRecharge = (body: { amount: string; payment_type: string }) =>
  call(raw.POST('/api/tokens/recharge', { body })) as Promise<CreatedRecharge>;

/** The caller's orders, newest first. */
export const myOrdersQuery = (paging: Paging) =>
  queryOptions({
    queryKey: ['recharge', 'orders', paging],
    queryFn: () => call(raw.GET('/api/tokens/recharge/orders', { params: { query: paging } })) as Promise<OrderPage>,
  });

/** One of the caller's orders. */
export const orderQuery = (outTradeNo: string) =>
  queryOptions({
    queryKey: ['recharge', 'order', outTradeNo],
    queryFn: () =>
      call(
        raw.GET('/api/tokens/recharge/orders/{out_trade_no}', { params: { path: { out_trade_no: outTradeNo } } }),
      ) as Promise<RechargeOrder>,
  });

export interface AdminOrderFilter extends Paging {
  status?: string;
  user_id?: number;
  out_trade_no?: string;
}

/** Administrators: every order. */
export const adminOrdersQuery = (filter: AdminOrderFilter) =>
  queryOptions({
    queryKey: ['recharge', 'admin', filter],
    queryFn: () => call(raw.GET('/api/admin/recharge-orders', { params: { query: filter } })) as Promise<OrderPage>,
  });

/** Administrators: marks a pending order paid and credits it. */
export const completeOrder = (outTradeNo: string, note: string) =>
  call(
    raw.POST('/api/admin/recharge-orders/{out_trade_no}/complete', {
      params: { path: { out_trade_no: outTradeNo } },
      body: { note },
    }),
  ) as Promise<{ order: RechargeOrder; transaction: unknown; balance: unknown }>;
