// The split of "credit added" the overview cannot give yet: what was bought online. The overview's
// `revenue` is every recharge in the range (online payments, administrators' recharges and
// redemption codes together); paid orders are read here, newest first, and those paid in the
// range are summed exactly. The rest of the credit added came from administrators and codes.
import { useQuery } from '@tanstack/react-query';
import { rechargeApi } from '../../../api';
import type { RechargeOrder } from '../../../api/recharge';
import { sumDecimals, toMicros, fromMicros } from '../../../lib/money';

const PAGE = 200;
const MAX_PAGES = 5;
/** Orders created this long before the range may still have been paid in it. */
const PAYMENT_SLACK_MS = 2 * 24 * 3600 * 1000;

export interface OnlineRevenue {
  /** Credits bought online (paid orders, paid in the range). */
  credits: string;
  /** Money received for them, in the payment currency. */
  money: string;
  /** Orders counted. */
  orders: number;
  /** False when older paid orders were not read (more than MAX_PAGES pages): a lower bound. */
  complete: boolean;
}

export function onlineRevenue(orders: RechargeOrder[], from: string, to: string, complete: boolean): OnlineRevenue {
  const start = Date.parse(from);
  const end = Date.parse(to);
  const paid = orders.filter((o) => {
    const at = o.paid_at ? Date.parse(o.paid_at) : NaN;
    return o.status === 'paid' && at >= start && at < end;
  });
  return { credits: sumDecimals(paid.map((o) => o.amount)), money: sumDecimals(paid.map((o) => o.money)), orders: paid.length, complete };
}

/** `total - part`, exactly (never below zero). */
export function remainder(total: string, part: string): string {
  const rest = (toMicros(total) ?? 0n) - (toMicros(part) ?? 0n);
  return fromMicros(rest < 0n ? 0n : rest);
}

export function useOnlineRevenue(range: { from: string; to: string } | undefined) {
  return useQuery({
    queryKey: ['recharge', 'revenue', range],
    enabled: !!range,
    queryFn: async (): Promise<OnlineRevenue> => {
      const { from, to } = range!;
      const orders: RechargeOrder[] = [];
      for (let page = 1; page <= MAX_PAGES; page++) {
        const got = await rechargeApi.adminOrders({ status: 'paid', page, page_size: PAGE });
        orders.push(...got.items);
        const oldest = got.items.at(-1);
        const done = got.items.length < PAGE || page * PAGE >= got.total;
        if (done || (oldest && Date.parse(oldest.created_at) < Date.parse(from) - PAYMENT_SLACK_MS)) {
          return onlineRevenue(orders, from, to, true);
        }
      }
      return onlineRevenue(orders, from, to, false);
    },
  });
}
