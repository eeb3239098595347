// Display helpers for what is not money: counts, tokens, times.
import type { Locale } from '../i18n';

/** An integer count with the locale's grouping (counts are exact integers, never money). */
export function formatCount(value: number | null | undefined, locale: Locale = 'en'): string {
  if (value === null || value === undefined) return '—';
  return value.toLocaleString(locale);
}

/** A timestamp in the viewer's time zone. */
export function formatDateTime(iso: string | null | undefined, locale: Locale = 'en'): string {
  if (!iso) return '—';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString(locale, { hour12: false });
}

/** Today's UTC date as `YYYY-MM-DD` (the statistics count UTC days). */
export function utcToday(now: Date = new Date()): string {
  return now.toISOString().slice(0, 10);
}
