// Display helpers for what is not money: counts, tokens, times and dates.
// Every time is shown one way per language, with the viewer's zone written after it (`UTC+8`);
// dates of the statistics are UTC days and are shown as dates, never shifted.
import type { Locale } from '../i18n';

/** An integer count with the locale's grouping (counts are exact integers, never money). */
export function formatCount(value: number | null | undefined, locale: Locale = 'en'): string {
  if (value === null || value === undefined) return '—';
  return value.toLocaleString(locale);
}

/** The Intl locale for a dashboard locale: day-month-year English rather than US month-first. */
const intlLocale = (locale: Locale) => (locale === 'zh-CN' ? 'zh-CN' : 'en-GB');

/** `UTC`, `UTC+8` or `UTC-5:30`: the zone of `date` on this machine. */
export function zoneLabel(date: Date = new Date()): string {
  const offset = -date.getTimezoneOffset();
  if (offset === 0) return 'UTC';
  const abs = Math.abs(offset);
  const minutes = abs % 60;
  return `UTC${offset > 0 ? '+' : '-'}${Math.floor(abs / 60)}${minutes ? `:${String(minutes).padStart(2, '0')}` : ''}`;
}

/** A timestamp in the viewer's time zone, with the zone: `14 Jun 2025, 13:20:05 UTC+8`. */
export function formatDateTime(iso: string | null | undefined, locale: Locale = 'en'): string {
  if (!iso) return '—';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const text = new Intl.DateTimeFormat(intlLocale(locale), {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
  }).format(date);
  return `${text} ${zoneLabel(date)}`;
}

/** A `YYYY-MM-DD` day (a UTC day of the statistics) as a short date: `14 Jun`, `6月14日`. */
export function formatDay(day: string, locale: Locale = 'en', withYear = false): string {
  const date = new Date(`${day}T00:00:00Z`);
  if (Number.isNaN(date.getTime())) return day;
  return new Intl.DateTimeFormat(intlLocale(locale), {
    month: 'short',
    day: 'numeric',
    ...(withYear ? { year: 'numeric' } : {}),
    timeZone: 'UTC',
  }).format(date);
}

/** The date pickers' format, the same way dates are written elsewhere. */
export function pickerFormat(locale: Locale, withTime = false): string {
  const date = locale === 'zh-CN' ? 'YYYY年M月D日' : 'D MMM YYYY';
  return withTime ? `${date} HH:mm` : date;
}

/** Today's UTC date as `YYYY-MM-DD` (the statistics count UTC days). */
export function utcToday(now: Date = new Date()): string {
  return now.toISOString().slice(0, 10);
}

/**
 * A timestamp in a named IANA time zone, with the zone's name: `8 Dec 2026, 00:00 Asia/Shanghai`.
 * For the budgets' windows, which follow the gateway's zone, not the viewer's. A zone this browser
 * does not know falls back to the viewer's zone (formatDateTime).
 */
export function formatDateTimeIn(iso: string | null | undefined, locale: Locale, timeZone: string): string {
  if (!iso) return '—';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  try {
    const text = new Intl.DateTimeFormat(intlLocale(locale), {
      year: 'numeric',
      month: 'short',
      day: 'numeric',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
      timeZone,
    }).format(date);
    return `${text} ${timeZone}`;
  } catch {
    return formatDateTime(iso, locale);
  }
}
