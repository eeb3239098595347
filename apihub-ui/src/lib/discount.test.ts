import { describe, expect, it } from 'vitest';
import { translate } from '../i18n';
import { discountText, percentOff } from './discount';

const en = (key: Parameters<typeof translate>[1], vars?: Record<string, string | number>) => translate('en', key, vars);
const zh = (key: Parameters<typeof translate>[1], vars?: Record<string, string | number>) => translate('zh-CN', key, vars);

describe('discounts in words', () => {
  it('says "No discount" for 1 and percent off otherwise', () => {
    expect(discountText(en, '1')).toBe('No discount');
    expect(discountText(en, 1)).toBe('No discount');
    expect(discountText(en, '0.8')).toBe('20% off');
    expect(discountText(en, '0.123456')).toBe('87.6544% off');
    expect(discountText(zh, '1')).toBe('无折扣');
    expect(discountText(zh, '0.85')).toBe('8.5 折');
    expect(percentOff('1.5')).toBeNull();
  });
});
