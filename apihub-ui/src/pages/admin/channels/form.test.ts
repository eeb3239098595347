import { describe, expect, it } from 'vitest';
import type { Channel } from '../../../api/channels';
import { formatAliases, formatCostPrices, NEW_CHANNEL, parseAliases, parseCostPrices, toChannelRequest, toValues, type ChannelValues } from './form';

const CHANNEL: Channel = {
  id: 3,
  name: 'cliproxy-1',
  base_url: 'http://127.0.0.1:8317',
  api_key_preview: '…abcd',
  dialects: ['openai', 'anthropic'],
  models: ['gpt-4o', 'claude-3'],
  aliases: { 'gpt-4o': 'gpt-4o-2024-11-20', 'claude-3': 'claude-3-5-sonnet' },
  priority: 10,
  weight: 3,
  enabled: true,
  timeout_secs: null,
  cost_prices: { 'gpt-4o': { input_price: '1.2', output_price: '4.8', cache_read_price: null, per_request_price: '0.001' } },
  default_cost_price: { input_price: '0.5', output_price: '2' },
  health: { state: 'closed', consecutive_failures: 0, answered: 12, failed: 1 },
  created_at: '2026-12-03T00:00:00Z',
  updated_at: '2026-12-03T00:00:00Z',
};

describe('aliases as lines', () => {
  it('reads public=upstream lines, trimmed, blank lines skipped, split at the first =', () => {
    expect(parseAliases(' gpt-4o = gpt-4o-2024-11-20 \r\n\n  \nodd=a=b\n')).toEqual({
      aliases: { 'gpt-4o': 'gpt-4o-2024-11-20', odd: 'a=b' },
    });
    expect(parseAliases(undefined)).toEqual({ aliases: {} });
    expect(parseAliases('')).toEqual({ aliases: {} });
  });

  it('names the first bad line', () => {
    expect(parseAliases('a=b\n\nno-equals')).toEqual({ problem: { line: 3, kind: 'syntax' } });
    expect(parseAliases('=b')).toEqual({ problem: { line: 1, kind: 'syntax' } });
    expect(parseAliases('a= ')).toEqual({ problem: { line: 1, kind: 'syntax' } });
    expect(parseAliases('a=b\na=c')).toEqual({ problem: { line: 2, kind: 'duplicate' } });
    expect(parseAliases(`a=${'x'.repeat(201)}`)).toEqual({ problem: { line: 1, kind: 'tooLong' } });
    const many = Array.from({ length: 501 }, (_, i) => `m${i}=u${i}`).join('\n');
    expect(parseAliases(many)).toEqual({ problem: { line: 501, kind: 'tooMany' } });
  });

  it('does not treat inherited names as duplicates', () => {
    expect(parseAliases('constructor=x\ntoString=y')).toEqual({ aliases: { constructor: 'x', toString: 'y' } });
    const proto = parseAliases('__proto__=x');
    expect('aliases' in proto && JSON.stringify(proto.aliases)).toBe('{"__proto__":"x"}');
  });

  it('writes a map back as the same lines', () => {
    const text = formatAliases(CHANNEL.aliases);
    expect(text).toBe('gpt-4o=gpt-4o-2024-11-20\nclaude-3=claude-3-5-sonnet');
    expect(parseAliases(text)).toEqual({ aliases: CHANNEL.aliases });
  });
});

describe('cost prices as lines', () => {
  it('reads model=input,output lines with optional cache, request and image prices, * as the default', () => {
    expect(parseCostPrices(' gpt-4o = 2.5 , 10 \n\no3=2,8,0.5,,0.001\n*=1,4\n')).toEqual({
      cost_prices: {
        'gpt-4o': { input_price: '2.5', output_price: '10' },
        o3: { input_price: '2', output_price: '8', cache_read_price: '0.5', per_request_price: '0.001' },
      },
      default_cost_price: { input_price: '1', output_price: '4' },
    });
    expect(parseCostPrices(undefined)).toEqual({ cost_prices: {}, default_cost_price: null });
  });

  it('names the first bad line', () => {
    expect(parseCostPrices('a=1,2\nb=1')).toEqual({ problem: { line: 2, kind: 'syntax' } });
    expect(parseCostPrices('a')).toEqual({ problem: { line: 1, kind: 'syntax' } });
    expect(parseCostPrices('a=1,2,3,4,5,6,7')).toEqual({ problem: { line: 1, kind: 'syntax' } });
    expect(parseCostPrices('two words=1,2')).toEqual({ problem: { line: 1, kind: 'model' } });
    expect(parseCostPrices('a=-1,2')).toEqual({ problem: { line: 1, kind: 'amount' } });
    expect(parseCostPrices('a=0.0000001,2')).toEqual({ problem: { line: 1, kind: 'amount' } });
    expect(parseCostPrices('a=1,2,x')).toEqual({ problem: { line: 1, kind: 'amount' } });
    expect(parseCostPrices('a=1,2\na=3,4')).toEqual({ problem: { line: 2, kind: 'duplicate' } });
    expect(parseCostPrices('*=1,2\n*=3,4')).toEqual({ problem: { line: 2, kind: 'duplicate' } });
    const many = Array.from({ length: 501 }, (_, i) => `m${i}=1,2`).join('\n');
    expect(parseCostPrices(many)).toEqual({ problem: { line: 501, kind: 'tooMany' } });
  });

  it('writes a channel\'s cost prices back as the same lines, the default last', () => {
    const text = formatCostPrices(CHANNEL);
    expect(text).toBe('gpt-4o=1.2,4.8,,,0.001\n*=0.5,2');
    expect(parseCostPrices(text)).toEqual({
      cost_prices: { 'gpt-4o': { input_price: '1.2', output_price: '4.8', per_request_price: '0.001' } },
      default_cost_price: CHANNEL.default_cost_price,
    });
  });
});

describe('channel form mapping', () => {
  it('starts a new channel from the server defaults, with no key', () => {
    expect(NEW_CHANNEL).toMatchObject({ priority: 0, weight: 1, enabled: true });
    const body = toChannelRequest({ ...NEW_CHANNEL, name: ' a ', base_url: ' http://10.0.0.1:8317 ', api_key: '  ' } as ChannelValues);
    expect(body).toEqual({
      name: 'a',
      base_url: 'http://10.0.0.1:8317',
      dialects: [],
      models: [],
      aliases: {},
      cost_prices: {},
      default_cost_price: null,
      priority: 0,
      weight: 1,
      timeout_secs: null,
      enabled: true,
    });
    expect(body).not.toHaveProperty('api_key');
  });

  it('keeps the stored key when the field is left empty (no api_key at all)', () => {
    const values = toValues(CHANNEL);
    expect(values.api_key).toBeUndefined();
    expect(values.remove_key).toBe(false);
    const body = toChannelRequest(values);
    expect(body).not.toHaveProperty('api_key');
    expect(body).toEqual({
      name: 'cliproxy-1',
      base_url: 'http://127.0.0.1:8317',
      dialects: ['openai', 'anthropic'],
      models: ['gpt-4o', 'claude-3'],
      aliases: CHANNEL.aliases,
      cost_prices: { 'gpt-4o': { input_price: '1.2', output_price: '4.8', per_request_price: '0.001' } },
      default_cost_price: { input_price: '0.5', output_price: '2' },
      priority: 10,
      weight: 3,
      timeout_secs: null,
      enabled: true,
    });
  });

  it('sends a typed key trimmed, and null to remove the key (removal wins)', () => {
    const values = toValues(CHANNEL);
    expect(toChannelRequest({ ...values, api_key: ' sk-new ' }).api_key).toBe('sk-new');
    const removed = toChannelRequest({ ...values, remove_key: true, api_key: 'sk-ignored' });
    expect(removed).toHaveProperty('api_key', null);
  });

  it('cleans models and dialects, and sends a timeout', () => {
    const values: ChannelValues = {
      name: 'gem',
      base_url: 'http://10.0.0.2:9000',
      dialects: ['Gemini', 'gemini', 'bogus'],
      models: [' gemini-2.0-flash ', '', 'gemini-2.0-flash', 'gemini-pro'],
      aliases: 'gemini-pro = gemini-1.5-pro-002',
      priority: -5,
      weight: null,
      timeout_secs: 120,
      enabled: false,
    };
    expect(toChannelRequest(values)).toEqual({
      name: 'gem',
      base_url: 'http://10.0.0.2:9000',
      dialects: ['gemini'],
      models: ['gemini-2.0-flash', 'gemini-pro'],
      aliases: { 'gemini-pro': 'gemini-1.5-pro-002' },
      cost_prices: {},
      default_cost_price: null,
      priority: -5,
      weight: 1,
      timeout_secs: 120,
      enabled: false,
    });
  });

  it('refuses aliases and cost prices the form would refuse', () => {
    expect(() => toChannelRequest({ ...toValues(CHANNEL), aliases: 'broken' })).toThrow(/line 1/);
    expect(() => toChannelRequest({ ...toValues(CHANNEL), cost_prices: 'a=1,-2' })).toThrow(/cost prices: line 1/);
  });
});
