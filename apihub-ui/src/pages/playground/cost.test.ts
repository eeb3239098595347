import { describe, expect, it } from 'vitest';
import { replyCost } from './cost';

const price = { model: 'm', input_price: '3', output_price: '15', cache_read_price: '0.3' } as Parameters<typeof replyCost>[0];

describe('replyCost', () => {
  it('bills like the gateway: cached prompt tokens at the cache price, both discounts, one rounding', () => {
    // apihub-core's own example: (200 × 3 + 800 × 0.3 + 100 × 15) / 1,000,000 = 0.00234, × 0.8 × 0.5.
    const usage = { prompt_tokens: 1000, cached_tokens: 800, completion_tokens: 100, total_tokens: 1100 };
    expect(replyCost(price, usage, '0.8', '0.5')).toEqual({ raw: '0.00234', charged: '0.000936' });
  });

  it('is exact at full price and rounds half up to the micro', () => {
    const usage = { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 };
    expect(replyCost({ ...price, input_price: '3', output_price: '6' }, usage)).toEqual({ raw: '0.000078', charged: '0.000078' });
    // 1 token at 0.5 per million = 0.0000005 → 0.000001 (half up).
    expect(replyCost({ ...price, input_price: '0.5', output_price: '0' }, { prompt_tokens: 1, completion_tokens: 0, total_tokens: 1 })?.raw).toBe('0.000001');
  });
});
