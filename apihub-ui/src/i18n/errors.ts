// Server errors in the reader's language. The server answers `{"error": {"code", "message"}}` with
// an English message; the messages a person meets (login, register, redeem, password, limits) are
// recognised here and translated, and any other falls back to a translated sentence for its code
// with the server's words after it. English shows the server's message as it is.
import { ApiError } from '../api/errors';
import type { MessageKey } from './en';
import { translate, useI18n, type Locale } from './index';

type Rule = [pattern: RegExp, key: MessageKey];

/** Server messages, matched whole; named groups fill the translation's placeholders. */
const RULES: Rule[] = [
  [/^invalid username or password$/, 'err.badLogin'],
  [/^current password is wrong$/, 'err.wrongPassword'],
  [/^this account is disabled$/, 'err.accountDisabled'],
  [/^administrators only$/, 'err.adminOnly'],
  [/^missing, invalid or expired session token$/, 'err.session'],
  [/^too many failed logins (?:for this account|from this address); try again in (?<n>\d+) s$/, 'err.loginThrottled'],
  [/^too many logins in progress; try again in a second$/, 'err.loginBusy'],
  [/^username `(?<name>.*)` is taken$/, 'err.usernameTaken'],
  [/^username must be/, 'validation.username'],
  [/^password must be at least (?<min>\d+) characters/, 'validation.password'],
  [/^email must/, 'validation.email'],
  [/^unknown redemption code$/, 'err.codeUnknown'],
  [/^this redemption code has already been redeemed$/, 'err.codeRedeemed'],
  [/^this redemption code has been disabled$/, 'err.codeDisabled'],
  [/^this redemption code has expired$/, 'err.codeExpired'],
  [/^insufficient balance: (?<available>\S+) available, (?:up to )?(?<required>\S+) required$/, 'err.insufficient'],
  [/^this key's (?<limit>.+) is exhausted$/, 'err.keyLimit'],
  [/^limits must not be negative$/, 'validation.decimal.negative'],
  [/^prices must not be negative$/, 'validation.decimal.negative'],
  [/^amount must not be negative$/, 'validation.decimal.negative'],
  [/^amount must be (?:greater than zero|positive)$/, 'err.amountPositive'],
  [/^an adjustment must not be zero$/, 'validation.decimal.zero'],
  [/^expires_at must be in the future$/, 'validation.future'],
  [/^name must not be empty$/, 'validation.required'],
  [/^amount must be between (?<min>\S+) and (?<max>\S+)$/, 'recharge.outOfRange'],
  [/^refund exceeds the amount consumed \((?<n>\S+) refundable\)$/, 'err.refundTooLarge'],
  [/^this order is already paid$/, 'err.orderPaid'],
  [/^administrators cannot disable themselves$/, 'err.disableSelf'],
  [/^online recharge is not configured/, 'err.rechargeOff'],
  [/^(?<n>\d+) unpaid orders in the last (?<minutes>\d+) minutes/, 'err.tooManyOrders'],
  [/^(?<what>user|key|order|price|batch) not found$/, 'err.notFound'],
  [/^the `(?:day|week|month)` budget sets no limit/, 'budgets.needLimit'],
  [/^the `(?:day|week|month)` budget has a negative limit$/, 'validation.decimal.negative'],
  [/^credit_limit must be at most/, 'validation.decimal.range'],
];

/** A sentence per code, for messages not recognised above. */
const CODES: Record<string, MessageKey> = {
  network: 'err.network',
  bad_request: 'err.badRequest',
  unauthorized: 'err.session',
  insufficient_balance: 'err.insufficientShort',
  forbidden: 'err.forbidden',
  not_found: 'err.notFoundShort',
  conflict: 'err.conflict',
  payload_too_large: 'err.badRequest',
  too_many_requests: 'err.tooMany',
  validation_error: 'err.validation',
  not_configured: 'err.notConfigured',
  service_unavailable: 'err.unavailable',
  internal_error: 'err.internal',
  budget_exceeded: 'budgets.exceeded',
};

const WHAT: Record<string, MessageKey> = {
  user: 'err.what.user',
  key: 'err.what.key',
  order: 'err.what.order',
  price: 'err.what.price',
  batch: 'err.what.batch',
};

/** The text to show for a thrown value, in `locale`. */
export function errorText(error: unknown, locale: Locale): string {
  const raw = error instanceof Error ? error.message : String(error);
  if (!(error instanceof ApiError)) return raw;
  if (error.code === 'network') return translate(locale, 'err.network');
  if (locale === 'en') return raw;
  for (const [pattern, key] of RULES) {
    const match = pattern.exec(raw);
    if (!match) continue;
    const vars: Record<string, string> = { ...match.groups };
    if (vars.what) vars.what = translate(locale, WHAT[vars.what]);
    return translate(locale, key, vars);
  }
  const key = CODES[error.code] ?? (error.status >= 500 ? 'err.unavailable' : undefined);
  if (!key) return raw;
  const sentence = translate(locale, key);
  // The server's own words stay visible for what no rule knows (e.g. a field-by-field validation).
  return error.status >= 500 ? sentence : `${sentence}（${raw}）`;
}

/** `errorText` in the current locale. */
export function useErrorText(): (error: unknown) => string {
  const { locale } = useI18n();
  return (error) => errorText(error, locale);
}
