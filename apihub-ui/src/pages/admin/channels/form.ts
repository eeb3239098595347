// The channel form: its fields as data, the aliases as `public=upstream` lines, and the request
// body it makes.
import type { Channel, ChannelRequest, Dialect } from '../../../api/channels';
import type { FieldDef } from '../../../components/FormFields';
import { integer, maxLength, required, type Validator } from '../../../lib/validation';

export type ChannelValues = {
  name: string;
  base_url: string;
  api_key?: string;
  /** Editing only: send `api_key: null`, so the channel sends no key upstream. */
  remove_key?: boolean;
  dialects?: string[];
  models?: string[];
  /** One `public=upstream` pair a line. */
  aliases?: string;
  priority?: number | null;
  weight?: number | null;
  timeout_secs?: number | null;
  enabled: boolean;
};

export const DIALECTS: Dialect[] = ['openai', 'anthropic', 'gemini'];
export const MAX_MODELS = 500;

export type AliasProblem = { line: number; kind: 'syntax' | 'duplicate' | 'tooMany' | 'tooLong' };

/**
 * `public=upstream` lines as a map: blank lines are skipped, both sides trimmed, the first `=`
 * splits (an upstream name may hold one). The first problem found, by line (1-based), otherwise.
 */
export function parseAliases(text: string | undefined): { aliases: Record<string, string> } | { problem: AliasProblem } {
  // A Map, then own properties: a public name like `__proto__` stays an ordinary key.
  const aliases = new Map<string, string>();
  const lines = (text ?? '').split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    const at = line.indexOf('=');
    const from = at < 0 ? '' : line.slice(0, at).trim();
    const to = at < 0 ? '' : line.slice(at + 1).trim();
    if (!from || !to) return { problem: { line: i + 1, kind: 'syntax' } };
    if (from.length > 200 || to.length > 200) return { problem: { line: i + 1, kind: 'tooLong' } };
    if (aliases.has(from)) return { problem: { line: i + 1, kind: 'duplicate' } };
    if (aliases.size >= MAX_MODELS) return { problem: { line: i + 1, kind: 'tooMany' } };
    aliases.set(from, to);
  }
  return { aliases: Object.fromEntries(aliases) };
}

/** A map of aliases as the form's lines. */
export function formatAliases(aliases: Record<string, string>): string {
  return Object.entries(aliases)
    .map(([from, to]) => `${from}=${to}`)
    .join('\n');
}

const aliasesValid: Validator = (t) => ({
  validator: (_, value?: string) => {
    const parsed = parseAliases(value);
    if ('aliases' in parsed) return Promise.resolve();
    const { line, kind } = parsed.problem;
    return Promise.reject(new Error(t(`channels.aliases.${kind}`, { line, max: MAX_MODELS })));
  },
});

const fewModels: Validator = (t) => ({
  validator: (_, value?: string[]) =>
    !value || value.length <= MAX_MODELS ? Promise.resolve() : Promise.reject(new Error(t('channels.tooManyModels', { max: MAX_MODELS }))),
});

/** The fields; `editing` says whether a stored channel is edited, `hasKey` whether it has a key. */
export const channelFields = (editing: boolean, hasKey: boolean): FieldDef[] => [
  { name: 'name', label: 'channels.name', kind: 'text', placeholder: 'channels.namePlaceholder', validators: [required, maxLength(64)] },
  { name: 'base_url', label: 'channels.baseUrl', kind: 'text', help: 'channels.baseUrlHelp', placeholder: 'channels.baseUrlPlaceholder', validators: [required, maxLength(200)] },
  {
    name: 'api_key',
    label: 'channels.apiKey',
    kind: 'password',
    help: editing ? (hasKey ? 'channels.apiKeyKeep' : 'channels.apiKeyNone') : 'channels.apiKeyHelp',
    autoComplete: 'new-password',
    validators: [maxLength(512)],
  },
  { name: 'remove_key', label: 'channels.removeKey', kind: 'switch', help: 'channels.removeKeyHelp', hidden: !editing || !hasKey },
  {
    name: 'dialects',
    label: 'channels.dialects',
    kind: 'multiselect',
    help: 'channels.dialectsHelp',
    options: DIALECTS.map((value) => ({ value, labelKey: `channels.dialect.${value}` as const })),
  },
  { name: 'models', label: 'channels.models', kind: 'tags', help: 'channels.modelsHelp', validators: [fewModels] },
  {
    name: 'aliases',
    label: 'channels.aliases',
    kind: 'textarea',
    rows: 4,
    help: 'channels.aliasesHelp',
    placeholder: 'channels.aliasesPlaceholder',
    validators: [aliasesValid],
  },
  { name: 'priority', label: 'channels.priority', kind: 'integer', help: 'channels.priorityHelp', validators: [integer(-1000, 1000)] },
  { name: 'weight', label: 'channels.weight', kind: 'integer', help: 'channels.weightHelp', validators: [integer(1, 1000)] },
  { name: 'timeout_secs', label: 'channels.timeout', kind: 'integer', help: 'channels.timeoutHelp', validators: [integer(1, 3600)] },
  { name: 'enabled', label: 'channels.enabled', kind: 'switch' },
];

/** A new channel's starting values (the server's defaults). */
export const NEW_CHANNEL: Partial<ChannelValues> = {
  base_url: 'http://',
  dialects: [],
  models: [],
  aliases: '',
  priority: 0,
  weight: 1,
  enabled: true,
};

/** A stored channel as form values (its key is never sent back: empty keeps it). */
export function toValues(channel: Channel): ChannelValues {
  return {
    name: channel.name,
    base_url: channel.base_url,
    remove_key: false,
    dialects: [...channel.dialects],
    models: [...channel.models],
    aliases: formatAliases(channel.aliases),
    priority: channel.priority,
    weight: channel.weight,
    timeout_secs: channel.timeout_secs ?? null,
    enabled: channel.enabled,
  };
}

/**
 * The request body (a whole definition): `api_key` absent unless typed (the stored key is kept),
 * `null` when the key is to be removed; an empty timeout is `null` (the gateway's default).
 * Throws on aliases the form's validator would have refused.
 */
export function toChannelRequest(v: ChannelValues): ChannelRequest {
  const parsed = parseAliases(v.aliases);
  if (!('aliases' in parsed)) throw new Error(`aliases: line ${parsed.problem.line}: ${parsed.problem.kind}`);
  const models = [...new Set((v.models ?? []).map((m) => m.trim()).filter(Boolean))];
  const dialects = [...new Set((v.dialects ?? []).map((d) => d.trim().toLowerCase()))].filter((d): d is Dialect =>
    (DIALECTS as string[]).includes(d),
  );
  const body: ChannelRequest = {
    name: v.name.trim(),
    base_url: v.base_url.trim(),
    dialects,
    models,
    aliases: parsed.aliases,
    priority: v.priority ?? 0,
    weight: v.weight ?? 1,
    timeout_secs: v.timeout_secs ?? null,
    enabled: v.enabled,
  };
  if (v.remove_key) return { ...body, api_key: null };
  const key = v.api_key?.trim();
  return key ? { ...body, api_key: key } : body;
}
