// The key form as data: its fields per mode, and the mapping between form values and the API.
// Create omits empty limits (absent = unlimited); edit sends null for an empty limit (clears it).
import dayjs, { type Dayjs } from 'dayjs';
import type { BatchRequest, Key, KeyFields, KeyPatch } from '../../api/keys';
import * as v from '../../lib/validation';
import type { FieldDef } from '../FormFields';

export type KeyFormMode = 'create' | 'batch' | 'edit';

export interface KeyFormValues {
  user_id?: number | null;
  count?: number | null;
  name_prefix?: string;
  name?: string;
  status?: string;
  expires_at?: Dayjs | null;
  rate_limit?: number | null;
  rate_limit_day?: number | null;
  token_limit?: number | null;
  quota_limit?: string;
  remaining_calls?: number | null;
  allowed_models?: string[];
  discount_rate?: string;
}

const INT32 = 2_147_483_647;

export interface KeyFieldOptions {
  mode: KeyFormMode;
  /** Administrators see the key's discount rate (and, creating for a user, the user id). */
  admin: boolean;
  /** Creating on behalf of a user: ask which. */
  forUser?: boolean;
  /** Known model names for the allowed-models picker. */
  models: string[];
}

export function keyFields({ mode, admin, forUser = false, models }: KeyFieldOptions): FieldDef[] {
  return [
    {
      name: 'user_id',
      label: 'keys.userId',
      kind: 'integer',
      min: 1,
      hidden: !forUser,
      validators: [v.required, v.integer(1)],
    },
    {
      name: 'count',
      label: 'keys.count',
      kind: 'integer',
      min: 1,
      max: 1000,
      hidden: mode !== 'batch',
      validators: [v.required, v.integer(1, 1000)],
    },
    {
      name: 'name_prefix',
      label: 'keys.namePrefix',
      kind: 'text',
      help: 'keys.namePrefixHelp',
      hidden: mode !== 'batch',
      validators: [v.maxLength(90)],
    },
    { name: 'name', label: 'keys.name', kind: 'text', hidden: mode === 'batch', validators: [v.maxLength(v.MAX_KEY_NAME)] },
    {
      name: 'status',
      label: 'keys.status',
      kind: 'select',
      hidden: mode !== 'edit',
      options: [
        { value: 'active', labelKey: 'status.active' },
        { value: 'disabled', labelKey: 'status.disabled' },
      ],
    },
    { name: 'expires_at', label: 'keys.expiresAt', kind: 'datetime', help: 'keys.emptyUnlimited', validators: [v.future] },
    { name: 'rate_limit', label: 'keys.rateLimit', kind: 'integer', min: 0, help: 'keys.perMinute', validators: [v.integer(0, INT32)] },
    { name: 'rate_limit_day', label: 'keys.rateLimitDay', kind: 'integer', min: 0, help: 'keys.perDay', validators: [v.integer(0, INT32)] },
    { name: 'token_limit', label: 'keys.tokenLimit', kind: 'integer', min: 0, help: 'keys.lifetimeTokens', validators: [v.integer(0)] },
    {
      name: 'quota_limit',
      label: 'keys.quotaLimit',
      kind: 'decimal',
      help: 'keys.lifetimeCredits',
      validators: [v.decimal({ allowZero: true })],
    },
    {
      name: 'remaining_calls',
      label: 'keys.remainingCalls',
      kind: 'integer',
      min: 0,
      help: 'keys.successfulCalls',
      validators: [v.integer(0)],
    },
    {
      name: 'allowed_models',
      label: 'keys.allowedModels',
      kind: 'tags',
      help: 'keys.allModelsHelp',
      options: models.map((m) => ({ value: m })),
    },
    { name: 'discount_rate', label: 'keys.discountRate', kind: 'decimal', help: 'keys.discountHelp', hidden: !admin, validators: [v.discountRate] },
  ];
}

const blank = (x: unknown) => x === undefined || x === null || (typeof x === 'string' && x.trim() === '');

/** The limits of a new key: only what was filled in. */
export function toKeyFields(values: KeyFormValues, admin: boolean): KeyFields {
  const fields: KeyFields = {};
  if (!blank(values.name)) fields.name = values.name!.trim();
  if (values.expires_at) fields.expires_at = values.expires_at.toISOString();
  if (!blank(values.rate_limit)) fields.rate_limit = values.rate_limit!;
  if (!blank(values.rate_limit_day)) fields.rate_limit_day = values.rate_limit_day!;
  if (!blank(values.token_limit)) fields.token_limit = values.token_limit!;
  if (!blank(values.quota_limit)) fields.quota_limit = values.quota_limit!.trim();
  if (!blank(values.remaining_calls)) fields.remaining_calls = values.remaining_calls!;
  if (values.allowed_models?.length) fields.allowed_models = values.allowed_models;
  if (admin && !blank(values.discount_rate)) fields.discount_rate = values.discount_rate!.trim();
  return fields;
}

export function toBatchRequest(values: KeyFormValues, admin: boolean): BatchRequest {
  const { name: _name, ...fields } = toKeyFields(values, admin);
  void _name;
  return {
    ...fields,
    count: values.count ?? 1,
    name_prefix: blank(values.name_prefix) ? null : values.name_prefix!.trim(),
  };
}

/** An edit: every limit is sent, an empty one as null, which clears it. */
export function toKeyPatch(values: KeyFormValues, admin: boolean): KeyPatch {
  const orNull = <T,>(x: T | null | undefined): T | null => (blank(x) ? null : (x as T));
  const patch: KeyPatch = {
    name: values.name?.trim() ?? '',
    expires_at: values.expires_at ? values.expires_at.toISOString() : null,
    rate_limit: orNull(values.rate_limit),
    rate_limit_day: orNull(values.rate_limit_day),
    token_limit: orNull(values.token_limit),
    quota_limit: blank(values.quota_limit) ? null : values.quota_limit!.trim(),
    remaining_calls: orNull(values.remaining_calls),
    allowed_models: values.allowed_models ?? [],
  };
  if (values.status === 'active' || values.status === 'disabled') patch.status = values.status;
  if (admin && !blank(values.discount_rate)) patch.discount_rate = values.discount_rate!.trim();
  return patch;
}

/** A key's current settings as form values, for editing. */
export function fromKey(key: Key): KeyFormValues {
  return {
    name: key.name,
    status: key.status,
    expires_at: key.expires_at ? dayjs(key.expires_at) : null,
    rate_limit: key.rate_limit ?? null,
    rate_limit_day: key.rate_limit_day ?? null,
    token_limit: key.token_limit ?? null,
    quota_limit: key.quota_limit ?? '',
    remaining_calls: key.remaining_calls ?? null,
    allowed_models: key.allowed_models,
    discount_rate: key.discount_rate,
  };
}

/** Whether a key can no longer be used because its time is up. */
export function isExpired(key: Pick<Key, 'expires_at'>, now = Date.now()): boolean {
  return !!key.expires_at && new Date(key.expires_at).getTime() <= now;
}
