// The currency payments are made in: the server's `CURRENCY` setting, which
// `GET /api/tokens/recharge/options` carries as `currency` (an ISO 4217 code such as "CNY" or
// "USD"); `CURRENCY` below only until that answer arrives. Nothing else in the dashboard assumes one.
import { useQuery } from '@tanstack/react-query';
import { rechargeApi } from '../api';

export interface Currency {
  /** ISO 4217, e.g. `CNY`. */
  code: string;
  /** What is written before an amount, e.g. `¥`. */
  symbol: string;
}

/** The default: EPay (Alipay, WeChat Pay) settles in renminbi. */
export const CURRENCY: Currency = { code: 'CNY', symbol: '¥' };

/** The symbol Intl knows for a code (`USD` → `$`, `CNY` → `¥`), or the code itself. */
export function currencyFor(code: string): Currency {
  const upper = code.trim().toUpperCase();
  if (!/^[A-Z]{3}$/.test(upper)) return CURRENCY;
  try {
    const parts = new Intl.NumberFormat('zh-CN', { style: 'currency', currency: upper, currencyDisplay: 'narrowSymbol' }).formatToParts(0);
    return { code: upper, symbol: parts.find((p) => p.type === 'currency')?.value ?? upper };
  } catch {
    return { code: upper, symbol: upper };
  }
}

/** The currency from the recharge options' `currency` field, else (still loading) `CURRENCY`. */
export function useCurrency(): Currency {
  const options = useQuery({ ...rechargeApi.rechargeOptionsQuery(), retry: false });
  const code = options.data?.currency;
  return typeof code === 'string' && code ? currencyFor(code) : CURRENCY;
}
