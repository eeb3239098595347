// What a reply cost, from its usage, the model's price and the two discounts, computed the way
// the gateway bills it (apihub-core's pricing): every term exact, one rounding (half up) to the
// micro-credit at the end, no float.
import type { Price } from '../../api/prices';
import { fromMicros, toMicros } from '../../lib/money';
import type { ChatUsage } from './stream';

const micros = toMicros;
const nonNegative = (v: bigint | null) => (v === null || v < 0n ? 0n : v);

/** `n / d` rounded half up (both positive). */
const roundDiv = (n: bigint, d: bigint) => (n * 2n + d) / (2n * d);

export interface ReplyCost {
  /** At full price. */
  raw: string;
  /** After the user's and the key's discounts: what the ledger shows. */
  charged: string;
}

export function replyCost(
  price: Price,
  usage: ChatUsage,
  userRate: string | number = '1',
  keyRate: string | number = '1',
): ReplyCost | null {
  const input = nonNegative(micros(price.input_price));
  const output = nonNegative(micros(price.output_price));
  const cacheRead = price.cache_read_price == null ? input : nonNegative(micros(price.cache_read_price));
  const perRequest = nonNegative(micros(price.per_request_price));
  const user = micros(userRate);
  const key = micros(keyRate);
  if (user === null || key === null) return null;
  const cached = BigInt(Math.min(usage.cached_tokens ?? 0, usage.prompt_tokens));
  const prompt = BigInt(usage.prompt_tokens) - cached;
  // In micro-credits × 1,000,000 (prices are per million tokens).
  const exact = prompt * input + cached * cacheRead + BigInt(usage.completion_tokens) * output + perRequest * 1_000_000n;
  return {
    raw: fromMicros(roundDiv(exact, 1_000_000n)),
    charged: fromMicros(roundDiv(exact * user * key, 1_000_000n * 1_000_000n * 1_000_000n)),
  };
}
