// Usage statistics: `/api/stats/*`. Days are UTC days.
import { queryOptions } from '@tanstack/react-query';
import { call, client, type Schemas } from './client';

export type UsageReport = Schemas['UsageReport'];
export type UsageSummary = Schemas['UsageSummary'];
export type DayUsage = Schemas['DayUsage'];
export type ModelUsage = Schemas['ModelUsage'];
export type Overview = Schemas['Overview'];
export type MarginsReport = Schemas['MarginsReport'];
export type ModelMargins = Schemas['ModelMargins'];
export type ChannelMargins = Schemas['ChannelMargins'];

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

/** Administrators: revenue, the operator's cost and the margin, per model and per channel. */
export const marginsQuery = (range: Range = {}) =>
  queryOptions({
    queryKey: ['stats', 'margins', range],
    queryFn: () => call(client.GET('/api/stats/admin/margins', { params: { query: range } })),
  });

/** One key's usage: the caller's own key, or any key for an administrator. */
export const keyStatsQuery = (keyId: number, range: Range = {}) =>
  queryOptions({
    queryKey: ['stats', 'key', keyId, range],
    queryFn: () => call(client.GET('/api/stats/keys/{key_id}', { params: { path: { key_id: keyId }, query: range } })),
  });

/** Administrators: one user's usage. */
export const userStatsQuery = (userId: number, range: Range = {}) =>
  queryOptions({
    queryKey: ['stats', 'user', userId, range],
    queryFn: () => call(client.GET('/api/stats/admin/users/{user_id}', { params: { path: { user_id: userId }, query: range } })),
  });
