// Exact decimal text for money and rates. The server sends amounts as exact decimals (at most six
// fractional digits), and the client keeps them as strings (src/api/decimal-json.ts): everything
// here works on the text, digit by digit, never through a float.

/** Decimal text as the server sends it, e.g. `"100.5"`, `"-0.000001"`. */
export type Decimal = string;

/** The most fractional digits an amount may carry. */
export const MAX_FRACTION_DIGITS = 6;

const PLAIN = /^([+-]?)(\d+)(?:\.(\d+))?$/;
const EXPONENT = /^([+-]?)(\d+)(?:\.(\d+))?[eE]([+-]?\d+)$/;

interface Parts {
  negative: boolean;
  whole: string;
  fraction: string;
}

/** Splits decimal text (plain or with an exponent) into sign, whole digits and fraction digits. */
function split(text: string): Parts | null {
  const plain = PLAIN.exec(text);
  if (plain) return { negative: plain[1] === '-', whole: plain[2], fraction: plain[3] ?? '' };
  const exp = EXPONENT.exec(text);
  if (!exp) return null;
  // Move the point by the exponent, on the digits.
  const digits = exp[2] + (exp[3] ?? '');
  let point = exp[2].length + Number(exp[4]);
  let padded = digits;
  if (point < 0) {
    padded = '0'.repeat(-point) + digits;
    point = 0;
  } else if (point > digits.length) {
    padded = digits + '0'.repeat(point - digits.length);
  }
  return { negative: exp[1] === '-', whole: padded.slice(0, point) || '0', fraction: padded.slice(point) };
}

/** Adds one unit in the last place to a string of digits: `"0999"` → `"1000"`, `"99"` → `"100"`. */
function increment(digits: string): string {
  const out = digits.split('');
  for (let i = out.length - 1; i >= 0; i--) {
    if (out[i] === '9') {
      out[i] = '0';
    } else {
      out[i] = String(Number(out[i]) + 1);
      return out.join('');
    }
  }
  return '1' + out.join('');
}

/** Rounds to `digits` fractional digits, half away from zero (the server's one rounding rule). */
function round(parts: Parts, digits: number): Parts {
  if (parts.fraction.length <= digits) return parts;
  const kept = parts.fraction.slice(0, digits);
  if (parts.fraction[digits] < '5') return { ...parts, fraction: kept };
  const bumped = increment(parts.whole + kept);
  const wholeLength = bumped.length - kept.length;
  return { ...parts, whole: bumped.slice(0, wholeLength), fraction: bumped.slice(wholeLength) };
}

function group(whole: string): string {
  return whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

export interface FormatOptions {
  /** Pad the fraction to at least this many digits (default 0: exactly as sent). */
  minFractionDigits?: number;
  /** Round beyond this many digits, half away from zero (default 6). */
  maxFractionDigits?: number;
  /** Prefix positive values with `+` (for ledger amounts). */
  signed?: boolean;
  /** Thousands separators (default true). */
  grouping?: boolean;
}

/**
 * Formats an exact decimal for display: `"1234567.5"` → `"1,234,567.5"`, with every digit the
 * server sent (up to six fractional digits). A `number` is read through its shortest text, which
 * is what the server wrote for every value a double holds exactly. Null and undefined give `"—"`;
 * text that is not a number is shown as it is.
 */
export function formatMoney(value: Decimal | number | null | undefined, options: FormatOptions = {}): string {
  if (value === null || value === undefined || value === '') return '—';
  const text = typeof value === 'number' ? (Number.isFinite(value) ? String(value) : '') : value.trim();
  const parts = split(text);
  if (!parts) return String(value);
  const { minFractionDigits = 0, maxFractionDigits = MAX_FRACTION_DIGITS, signed = false, grouping = true } = options;
  const rounded = round(
    { ...parts, whole: parts.whole.replace(/^0+(?=\d)/, '') },
    Math.max(maxFractionDigits, minFractionDigits),
  );
  let fraction = rounded.fraction.replace(/0+$/, '');
  if (fraction.length < minFractionDigits) fraction = fraction.padEnd(minFractionDigits, '0');
  const zero = /^0*$/.test(rounded.whole) && /^0*$/.test(fraction);
  const sign = zero ? '' : rounded.negative ? '-' : signed ? '+' : '';
  const whole = grouping ? group(rounded.whole) : rounded.whole;
  return `${sign}${whole}${fraction ? `.${fraction}` : ''}`;
}

/** The sign of decimal text: -1, 0 or 1 (0 for text that is not a number). */
export function signOf(value: Decimal | number | null | undefined): -1 | 0 | 1 {
  if (value === null || value === undefined) return 0;
  const parts = split(typeof value === 'number' ? String(value) : value.trim());
  if (!parts || /^0*$/.test(parts.whole + parts.fraction)) return 0;
  return parts.negative ? -1 : 1;
}

export interface DecimalRule {
  /** Accept negative values (for `adjust`). */
  allowNegative?: boolean;
  /** Accept zero. */
  allowZero?: boolean;
  /** Largest whole part, in digits (the server takes amounts below 10⁹: 9 digits). */
  maxWholeDigits?: number;
}

/** Why text is not an acceptable amount: `format`, `precision`, `negative`, `zero`, `range`, or null when fine. */
export function decimalProblem(
  text: string,
  rule: DecimalRule = {},
): 'format' | 'precision' | 'negative' | 'zero' | 'range' | null {
  const parts = PLAIN.exec(text.trim());
  if (!parts || text.trim().startsWith('+')) return 'format';
  const [, sign, whole, fraction = ''] = parts;
  if (fraction.length > MAX_FRACTION_DIGITS) return 'precision';
  if (whole.replace(/^0+/, '').length > (rule.maxWholeDigits ?? 9)) return 'range';
  const zero = /^0*$/.test(whole + fraction);
  if (zero) return rule.allowZero ? null : 'zero';
  if (sign === '-' && !rule.allowNegative) return 'negative';
  return null;
}

/**
 * A ratio for drawing only (bars, chart heights): `used / limit` clamped to [0, 1]. The result
 * is never shown as money; the amounts themselves are displayed with formatMoney.
 */
export function ratio(used: Decimal | number | null | undefined, limit: Decimal | number | null | undefined): number {
  const u = Number(used ?? 0);
  const l = Number(limit ?? 0);
  if (!Number.isFinite(u) || !Number.isFinite(l) || l <= 0) return 0;
  return Math.min(1, Math.max(0, u / l));
}

/**
 * The exact product of two decimals, rounded half away from zero to `digits` fractional digits
 * (the server's rounding), as plain text with exactly that many digits: `multiply("2.5", "7.3", 2)`
 * → `"18.25"`. Null when either is not a plain decimal number.
 */
export function multiply(a: Decimal | number, b: Decimal | number, digits: number): Decimal | null {
  const x = PLAIN.exec(String(a).trim());
  const y = PLAIN.exec(String(b).trim());
  if (!x || !y) return null;
  const negative = (x[1] === '-') !== (y[1] === '-');
  const scale = (x[3] ?? '').length + (y[3] ?? '').length;
  let value = BigInt(x[2] + (x[3] ?? '')) * BigInt(y[2] + (y[3] ?? ''));
  if (scale > digits) {
    const divisor = 10n ** BigInt(scale - digits);
    const rest = value % divisor;
    value = value / divisor + (rest * 2n >= divisor ? 1n : 0n);
  } else {
    value *= 10n ** BigInt(digits - scale);
  }
  const text = value.toString().padStart(digits + 1, '0');
  const whole = text.slice(0, text.length - digits);
  const fraction = text.slice(text.length - digits);
  const sign = negative && value !== 0n ? '-' : '';
  return `${sign}${whole}${digits > 0 ? `.${fraction}` : ''}`;
}

/** Compares two plain decimals exactly: -1, 0 or 1; null when either is not a plain decimal. */
export function compare(a: Decimal | number, b: Decimal | number): -1 | 0 | 1 | null {
  const x = multiply(a, 1, MAX_FRACTION_DIGITS * 2);
  const y = multiply(b, 1, MAX_FRACTION_DIGITS * 2);
  if (x === null || y === null) return null;
  const scaled = (text: string) => BigInt(text.replace('.', ''));
  const diff = scaled(x) - scaled(y);
  return diff < 0n ? -1 : diff > 0n ? 1 : 0;
}

/** How many fractional digits `formatMoney` shows for a value (0 for a whole number or none). */
export function fractionLength(value: Decimal | number | null | undefined, options: FormatOptions = {}): number {
  const text = formatMoney(value, options);
  const point = text.indexOf('.');
  return point < 0 ? 0 : text.length - point - 1;
}

/** The widest fraction among a column's values: the room each row's fraction is given. */
export function columnFraction(values: (Decimal | number | null | undefined)[], options: FormatOptions = {}): number {
  return values.reduce<number>((widest, v) => Math.max(widest, fractionLength(v, options)), 0);
}

/** Decimal text (at most 6 fractional digits) → integer millionths, or null. */
export function toMicros(value: Decimal | number | null | undefined): bigint | null {
  if (value === null || value === undefined) return null;
  const m = /^([+-]?)(\d+)(?:\.(\d{1,6}))?$/.exec(String(value).trim());
  if (!m) return null;
  const micros = BigInt(m[2]) * 1_000_000n + BigInt((m[3] ?? '').padEnd(6, '0'));
  return m[1] === '-' ? -micros : micros;
}

/** Integer millionths → the shortest exact decimal text. */
export function fromMicros(value: bigint): Decimal {
  const negative = value < 0n;
  const abs = negative ? -value : value;
  const frac = (abs % 1_000_000n).toString().padStart(6, '0').replace(/0+$/, '');
  return `${negative ? '-' : ''}${abs / 1_000_000n}${frac ? `.${frac}` : ''}`;
}

/** The exact sum of amounts (what is not a number counts as nothing). */
export function sumDecimals(values: (Decimal | number | null | undefined)[]): Decimal {
  return fromMicros(values.reduce<bigint>((sum, v) => sum + (toMicros(v) ?? 0n), 0n));
}
