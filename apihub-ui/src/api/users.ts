// Administrators: `/api/admin/users/*`.
import { queryOptions } from '@tanstack/react-query';
import { call, client } from './client';
import type { Paging } from './keys';

export interface UserFilter extends Paging {
  search?: string;
  role?: string;
  status?: string;
}

export const usersQuery = (filter: UserFilter) =>
  queryOptions({
    queryKey: ['users', filter],
    queryFn: () => call(client.GET('/api/admin/users', { params: {
          // The filter's selects offer only the documented values.
          query: {
            ...filter,
            role: filter.role as 'user' | 'admin' | undefined,
            status: filter.status as 'active' | 'disabled' | undefined,
          },
        },
      })),
  });

export const disableUser = (id: number) =>
  call(client.POST('/api/admin/users/{user_id}/disable', { params: { path: { user_id: id } } }));

export const enableUser = (id: number) =>
  call(client.POST('/api/admin/users/{user_id}/enable', { params: { path: { user_id: id } } }));

/** One user (administrators). */
export const userQuery = (id: number) =>
  queryOptions({
    queryKey: ['users', 'one', id],
    queryFn: () => call(client.GET('/api/admin/users/{user_id}', { params: { path: { user_id: id } } })),
  });
