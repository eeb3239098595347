// Usage statistics: `/api/stats/*`. Days are UTC days.
import { queryOptions } from '@tanstack/react-query';
import { call, client, type Schemas } from './client';

export type UsageReport = Schemas['UsageReport'];
export type UsageSummary = Schemas['UsageSummary'];
export type DayUsage = Schemas['DayUsage'];
export type ModelUsage = Schemas['ModelUsage'];
export type Overview = Schemas['Overview'];

/** `from` / `to`: RFC 3339 times or `YYYY-MM-DD` dates; absent = the last 30 days. */
export interface Range {
  from?: string;
  to?: string;
}

export const myStatsQuery = (range: Range = {}) =>
  queryOptions({
    queryKey: ['stats', 'me', range],
    queryFn: () => call(client.GET('/api/stats/me', { params: { query: range } })),
  });

export const overviewQuery = (range: Range = {}) =>
  queryOptions({
    queryKey: ['stats', 'overview', range],
    queryFn: () => call(client.GET('/api/stats/admin/overview', { params: { query: range } })),
  });
