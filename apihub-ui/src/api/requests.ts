// The per-request log: `/api/usage/requests` (the caller's) and `/api/admin/usage/requests`
// (everyone's), a keyset page at a time, and their CSV / NDJSON exports.
import { infiniteQueryOptions } from '@tanstack/react-query';
import { call, client, type Schemas } from './client';
import { ApiError, toApiError } from './errors';

export type RequestItem = Schemas['RequestItem'];
export type RequestPage = Schemas['RequestPage'];
/** What an export is written as. */
export type ExportFormat = 'csv' | 'ndjson';

/** The filters both listings and both exports take; `user_id` only for administrators. */
export interface RequestFilters {
  user_id?: number;
  key_id?: number;
  model?: string;
  /** `ok`, `error`, or a three-digit status. */
  status?: string;
  /** `YYYY-MM-DD` (or RFC 3339). */
  from?: string;
  to?: string;
}

const PAGE = 50;

/** The log, newest first, one page after another (`fetchNextPage` follows `next_cursor`). */
export const requestsQuery = (admin: boolean, filters: RequestFilters) =>
  infiniteQueryOptions({
    queryKey: ['requests', admin ? 'all' : 'mine', filters],
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last: RequestPage) => last.next_cursor ?? undefined,
    queryFn: ({ pageParam }) => {
      const paging = { limit: PAGE, ...(pageParam ? { cursor: pageParam } : {}) };
      if (admin) {
        return call(client.GET('/api/admin/usage/requests', { params: { query: { ...filters, ...paging } } }));
      }
      const { user_id: _ignored, ...own } = filters;
      return call(client.GET('/api/usage/requests', { params: { query: { ...own, ...paging } } }));
    },
  });

/** Every row the filters select, as a file's content. */
export async function exportRequests(admin: boolean, filters: RequestFilters, format: ExportFormat): Promise<Blob> {
  let result;
  try {
    if (admin) {
      result = await client.GET('/api/admin/usage/requests/export', {
        params: { query: { ...filters, format } },
        parseAs: 'blob',
      });
    } else {
      const { user_id: _ignored, ...own } = filters;
      result = await client.GET('/api/usage/requests/export', { params: { query: { ...own, format } }, parseAs: 'blob' });
    }
  } catch (e) {
    throw new ApiError(0, 'network', e instanceof Error ? e.message : String(e));
  }
  if (!result.response.ok || result.data === undefined) {
    throw toApiError(result.response.status, result.error, result.response.statusText);
  }
  return result.data as Blob;
}
