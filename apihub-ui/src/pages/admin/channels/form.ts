// The channel form: its fields as data, the aliases as `public=upstream` lines, the cost prices as
// `model=input,output` lines, and the request body it makes.
import type { Channel, ChannelRequest, CostPrice, Dialect } from '../../../api/channels';
import type { FieldDef } from '../../../components/FormFields';
import { decimalProblem } from '../../../lib/money';
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
  /** One `model=input,output[,cache read,cache write,per request,per image]` a line; `*`: any other model. */
  cost_prices?: string;
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

/** The model name of the cost price for any model a channel's list does not name. */
export const ANY_MODEL = '*';
/** A price's amounts in the order a cost line lists them. */
const PRICE_FIELDS = ['input_price', 'output_price', 'cache_read_price', 'cache_write_price', 'per_request_price', 'per_image_price'] as const;

export type CostProblem = { line: number; kind: 'syntax' | 'model' | 'amount' | 'duplicate' | 'tooMany' };
export type CostPrices = { cost_prices: Record<string, CostPrice>; default_cost_price: CostPrice | null };

/**
 * `model=input,output[,cache read,cache write,per request,per image]` lines (credits per million
 * tokens, per call, per image; an empty amount after the first two: none) as cost prices, `*`
 * naming the channel's default. Model names as a price's: 1 to 128 printable ASCII characters.
 * Amounts are checked as the server checks them (exact decimals, never negative) and kept as text.
 */
export function parseCostPrices(text: string | undefined): CostPrices | { problem: CostProblem } {
  const prices = new Map<string, CostPrice>();
  let fallback: CostPrice | null = null;
  const lines = (text ?? '').split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    const problem = (kind: CostProblem['kind']) => ({ problem: { line: i + 1, kind } });
    const at = line.indexOf('=');
    if (at < 0) return problem('syntax');
    const model = line.slice(0, at).trim();
    const amounts = line.slice(at + 1).split(',').map((a) => a.trim());
    if (amounts.length < 2 || amounts.length > PRICE_FIELDS.length || !amounts[0] || !amounts[1]) return problem('syntax');
    if (!/^[\x21-\x7e]{1,128}$/.test(model)) return problem('model');
    if (amounts.some((a) => a !== '' && decimalProblem(a, { allowZero: true }) !== null)) return problem('amount');
    const price = { input_price: amounts[0], output_price: amounts[1] } as CostPrice;
    amounts.forEach((amount, n) => {
      if (n >= 2 && amount !== '') price[PRICE_FIELDS[n]] = amount;
    });
    if (model === ANY_MODEL ? fallback !== null : prices.has(model)) return problem('duplicate');
    if (model === ANY_MODEL) {
      fallback = price;
      continue;
    }
    if (prices.size >= MAX_MODELS) return problem('tooMany');
    prices.set(model, price);
  }
  return { cost_prices: Object.fromEntries(prices), default_cost_price: fallback };
}

/** One price as the amounts of a cost line (trailing empty amounts left out). */
function costLine(model: string, price: CostPrice): string {
  const amounts = PRICE_FIELDS.map((field) => price[field] ?? '');
  while (amounts.length > 2 && amounts[amounts.length - 1] === '') amounts.pop();
  return `${model}=${amounts.join(',')}`;
}

/** A channel's cost prices as the form's lines, its default last. */
export function formatCostPrices(channel: Pick<Channel, 'cost_prices' | 'default_cost_price'>): string {
  const lines = Object.entries(channel.cost_prices).map(([model, price]) => costLine(model, price));
  if (channel.default_cost_price) lines.push(costLine(ANY_MODEL, channel.default_cost_price));
  return lines.join('\n');
}

const costPricesValid: Validator = (t) => ({
  validator: (_, value?: string) => {
    const parsed = parseCostPrices(value);
    if (!('problem' in parsed)) return Promise.resolve();
    const { line, kind } = parsed.problem;
    return Promise.reject(new Error(t(`channels.costPrices.${kind}`, { line, max: MAX_MODELS })));
  },
});

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
  {
    name: 'cost_prices',
    label: 'channels.costPrices',
    kind: 'textarea',
    rows: 4,
    help: 'channels.costPricesHelp',
    placeholder: 'channels.costPricesPlaceholder',
    validators: [costPricesValid],
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
  cost_prices: '',
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
    cost_prices: formatCostPrices(channel),
    priority: channel.priority,
    weight: channel.weight,
    timeout_secs: channel.timeout_secs ?? null,
    enabled: channel.enabled,
  };
}

/**
 * The request body (a whole definition): `api_key` absent unless typed (the stored key is kept),
 * `null` when the key is to be removed; an empty timeout is `null` (the gateway's default).
 * Throws on aliases or cost prices the form's validators would have refused.
 */
export function toChannelRequest(v: ChannelValues): ChannelRequest {
  const parsed = parseAliases(v.aliases);
  if (!('aliases' in parsed)) throw new Error(`aliases: line ${parsed.problem.line}: ${parsed.problem.kind}`);
  const costs = parseCostPrices(v.cost_prices);
  if ('problem' in costs) throw new Error(`cost prices: line ${costs.problem.line}: ${costs.problem.kind}`);
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
    cost_prices: costs.cost_prices,
    default_cost_price: costs.default_cost_price,
    priority: v.priority ?? 0,
    weight: v.weight ?? 1,
    timeout_secs: v.timeout_secs ?? null,
    enabled: v.enabled,
  };
  if (v.remove_key) return { ...body, api_key: null };
  const key = v.api_key?.trim();
  return key ? { ...body, api_key: key } : body;
}
