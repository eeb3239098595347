import { describe, expect, it } from 'vitest';
import { compare, decimalProblem, formatMoney, multiply, ratio, signOf } from './money';

describe('formatMoney', () => {
  it('shows every digit the server sent, grouped', () => {
    expect(formatMoney('100.5')).toBe('100.5');
    expect(formatMoney('0.000001')).toBe('0.000001');
    expect(formatMoney('1234567.25')).toBe('1,234,567.25');
    expect(formatMoney('7')).toBe('7');
    expect(formatMoney('-3.25')).toBe('-3.25');
  });

  it('keeps values a double cannot hold exact', () => {
    // 18 significant digits: Number('9007199254740993.123456') would print 9007199254740992.
    expect(formatMoney('9007199254740993.123456')).toBe('9,007,199,254,740,993.123456');
    expect(formatMoney('12345678901234.999999')).toBe('12,345,678,901,234.999999');
  });

  it('does not round to three digits like toLocaleString does by default', () => {
    expect(formatMoney('0.123456')).toBe('0.123456');
    expect(formatMoney(0.123456)).toBe('0.123456');
  });

  it('rounds past six digits half away from zero, on the text', () => {
    expect(formatMoney('0.0000005')).toBe('0.000001');
    expect(formatMoney('-0.0000005')).toBe('-0.000001');
    expect(formatMoney('0.0000004')).toBe('0');
    expect(formatMoney('999.9999995')).toBe('1,000');
  });

  it('reads exponents and numbers through their text', () => {
    expect(formatMoney('1e-6')).toBe('0.000001');
    expect(formatMoney('1.5E3')).toBe('1,500');
    expect(formatMoney(1e21)).toBe('1,000,000,000,000,000,000,000');
    expect(formatMoney(0.1 + 0.2)).toBe('0.3'); // 0.30000000000000004 rounded at the sixth digit
  });

  it('pads, signs and handles empty values', () => {
    expect(formatMoney('5', { minFractionDigits: 2 })).toBe('5.00');
    expect(formatMoney('5.125', { minFractionDigits: 2 })).toBe('5.125');
    expect(formatMoney('12.5', { signed: true })).toBe('+12.5');
    expect(formatMoney('0', { signed: true })).toBe('0');
    expect(formatMoney('-0')).toBe('0');
    expect(formatMoney('007.50')).toBe('7.5');
    expect(formatMoney('1234', { grouping: false })).toBe('1234');
    expect(formatMoney(null)).toBe('—');
    expect(formatMoney(undefined)).toBe('—');
    expect(formatMoney('n/a')).toBe('n/a');
  });
});

describe('signOf', () => {
  it('reads the sign from the text', () => {
    expect(signOf('-0.000001')).toBe(-1);
    expect(signOf('0.000')).toBe(0);
    expect(signOf('3')).toBe(1);
    expect(signOf(null)).toBe(0);
  });
});

describe('decimalProblem', () => {
  it('matches the server rules for amounts', () => {
    expect(decimalProblem('100.5')).toBeNull();
    expect(decimalProblem('0.000001')).toBeNull();
    expect(decimalProblem('999999999.999999')).toBeNull();
    expect(decimalProblem('0.0000001')).toBe('precision');
    expect(decimalProblem('1000000000')).toBe('range');
    expect(decimalProblem('1e3')).toBe('format');
    expect(decimalProblem('.5')).toBe('format');
    expect(decimalProblem('5.')).toBe('format');
    expect(decimalProblem('+5')).toBe('format');
    expect(decimalProblem('1,5')).toBe('format');
    expect(decimalProblem('0')).toBe('zero');
    expect(decimalProblem('0', { allowZero: true })).toBeNull();
    expect(decimalProblem('-2')).toBe('negative');
    expect(decimalProblem('-2', { allowNegative: true })).toBeNull();
  });
});

describe('ratio', () => {
  it('is a clamped share for drawing bars', () => {
    expect(ratio('2.5', '10')).toBe(0.25);
    expect(ratio('20', '10')).toBe(1);
    expect(ratio('1', null)).toBe(0);
    expect(ratio(5, 0)).toBe(0);
  });
});

describe('multiply', () => {
  it('multiplies exactly and rounds half away from zero', () => {
    expect(multiply('2.5', '7.3', 2)).toBe('18.25');
    expect(multiply('10', '1', 2)).toBe('10.00');
    expect(multiply('0.001', '0.5', 2)).toBe('0.00');
    expect(multiply('0.01', '0.5', 2)).toBe('0.01');
    expect(multiply('-0.01', '0.5', 2)).toBe('-0.01');
    expect(multiply('999999999.999999', '7.3', 2)).toBe('7300000000.00');
    expect(multiply('0.1', 0.7, 2)).toBe('0.07');
    expect(multiply('3', '2', 0)).toBe('6');
    expect(multiply('abc', '1', 2)).toBeNull();
  });
});

describe('compare', () => {
  it('compares exactly, whatever the digits', () => {
    expect(compare('1', '1.000000')).toBe(0);
    expect(compare('0.000001', '0')).toBe(1);
    expect(compare('999999999.999999', '1000000000')).toBe(-1);
    expect(compare('-2', '1')).toBe(-1);
    expect(compare(1000, '999.5')).toBe(1);
    expect(compare('x', '1')).toBeNull();
  });
});
