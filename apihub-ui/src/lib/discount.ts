// A discount rate in words: 1 is "No discount", 0.8 is "20% off" (八折 in Chinese).
import type { Translate } from '../i18n';
import type { Decimal } from './money';

/** Percent off for a rate in (0, 1], exactly from its digits: `0.85` → `15`, `0.123456` → `87.6544`. */
export function percentOff(rate: Decimal | number): string | null {
  const text = String(rate).trim();
  const m = /^(\d+)(?:\.(\d{1,6}))?$/.exec(text);
  if (!m) return null;
  const micros = Number(m[1]) * 1_000_000 + Number((m[2] ?? '').padEnd(6, '0'));
  if (micros <= 0 || micros > 1_000_000) return null;
  const off = 1_000_000 - micros; // in millionths; percent = off / 10,000
  const whole = Math.floor(off / 10_000);
  const frac = String(off % 10_000).padStart(4, '0').replace(/0+$/, '');
  return frac ? `${whole}.${frac}` : String(whole);
}

/** `折` in Chinese: the rate times ten, `0.85` → `8.5`. */
function zhe(rate: Decimal | number): string {
  const m = /^(\d+)(?:\.(\d{1,6}))?$/.exec(String(rate).trim());
  if (!m) return String(rate);
  const tenths = (Number(m[1]) * 1_000_000 + Number((m[2] ?? '').padEnd(6, '0'))) * 10;
  const whole = Math.floor(tenths / 1_000_000);
  const frac = String(tenths % 1_000_000).padStart(6, '0').replace(/0+$/, '');
  return frac ? `${whole}.${frac}` : String(whole);
}

export function discountText(t: Translate, rate: Decimal | number | null | undefined): string {
  if (rate === null || rate === undefined) return '—';
  const pct = percentOff(rate);
  if (pct === null) return String(rate);
  if (pct === '0') return t('dashboard.noDiscount');
  return t('dashboard.discountOff', { pct, zhe: zhe(rate) });
}
