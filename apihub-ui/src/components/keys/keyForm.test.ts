import dayjs from 'dayjs';
import { describe, expect, it } from 'vitest';
import type { CreatedKey, Key } from '../../api/keys';
import { keysToCsv } from './csv';
import { fromKey, isExpired, keyFields, toBatchRequest, toKeyFields, toKeyPatch } from './keyForm';

const KEY: Key = {
  id: 3,
  user_id: 2,
  name: 'laptop',
  key_preview: 'ahg_x_…abcd',
  imported: false,
  status: 'active',
  allowed_models: [],
  discount_rate: '0.9',
  rate_limit: 60,
  rate_limit_day: null,
  token_limit: null,
  quota_limit: '25.5',
  remaining_calls: 10,
  expires_at: null,
  tokens_used: 0,
  quota_used: '0',
  calls_total: 0,
  calls_succeeded: 0,
  batch_id: null,
  created_at: '2025-01-01T00:00:00Z',
  updated_at: '2025-01-01T00:00:00Z',
};

describe('key form mapping', () => {
  it('creates with only what was filled in, amounts as exact text', () => {
    const at = dayjs('2030-01-02T03:04:05Z');
    expect(
      toKeyFields(
        { name: ' ci ', quota_limit: ' 0.000001 ', rate_limit: 0, token_limit: null, allowed_models: [], expires_at: at, discount_rate: '0.5' },
        false,
      ),
    ).toEqual({ name: 'ci', quota_limit: '0.000001', rate_limit: 0, expires_at: '2030-01-02T03:04:05.000Z' });
  });

  it('lets administrators set a discount', () => {
    expect(toKeyFields({ discount_rate: '0.8' }, true)).toEqual({ discount_rate: '0.8' });
  });

  it('batches with a count and a prefix, without a name', () => {
    expect(toBatchRequest({ count: 3, name_prefix: 'team', name: 'ignored', rate_limit_day: 1000 }, false)).toEqual({
      count: 3,
      name_prefix: 'team',
      rate_limit_day: 1000,
    });
  });

  it('edits by sending every limit, null where emptied', () => {
    expect(toKeyPatch({ ...fromKey(KEY), quota_limit: '', remaining_calls: null }, false)).toEqual({
      name: 'laptop',
      status: 'active',
      expires_at: null,
      rate_limit: 60,
      rate_limit_day: null,
      token_limit: null,
      quota_limit: null,
      remaining_calls: null,
      allowed_models: [],
    });
    expect(toKeyPatch(fromKey(KEY), true)).toMatchObject({ discount_rate: '0.9', quota_limit: '25.5' });
  });

  it('shows administrator fields to administrators only', () => {
    const visible = (admin: boolean, forUser = false) =>
      keyFields({ mode: 'create', admin, forUser, models: [] })
        .filter((f) => !f.hidden)
        .map((f) => f.name);
    expect(visible(false)).not.toContain('discount_rate');
    expect(visible(true)).toContain('discount_rate');
    expect(visible(true, true)).toContain('user_id');
    expect(visible(false)).toEqual(
      expect.arrayContaining(['name', 'expires_at', 'rate_limit', 'rate_limit_day', 'token_limit', 'quota_limit', 'remaining_calls', 'allowed_models']),
    );
  });

  it('knows an expired key', () => {
    expect(isExpired({ expires_at: '2000-01-01T00:00:00Z' })).toBe(true);
    expect(isExpired({ expires_at: null })).toBe(false);
  });
});

describe('keysToCsv', () => {
  it('quotes what needs quoting', () => {
    const created = { ...KEY, key: 'ahg_x_secret', name: 'a, "b"', allowed_models: ['m1', 'm2'] } as CreatedKey;
    expect(keysToCsv([created])).toBe(
      '\uFEFFid,name,key,batch_id,expires_at,quota_limit,allowed_models\r\n3,"a, ""b""",ahg_x_secret,,,25.5,m1 m2\r\n',
    );
  });

  it('starts with the UTF-8 byte order mark, so Excel reads Chinese names', () => {
    const created = { ...KEY, key: 'ahg_x_secret', name: '笔记本', allowed_models: [] } as CreatedKey;
    const bytes = new TextEncoder().encode(keysToCsv([created]));
    expect([...bytes.slice(0, 3)]).toEqual([0xef, 0xbb, 0xbf]);
    expect(keysToCsv([created])).toContain(',笔记本,');
  });
});
