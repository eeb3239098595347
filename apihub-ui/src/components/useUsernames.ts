// Administrators' tables name users rather than number them: the first 200 users (the server's
// largest page) are looked up once; anyone beyond them is shown as `#id`.
import { useQuery } from '@tanstack/react-query';
import { useMemo } from 'react';
import { usersApi } from '../api';

/** `name(id)`: `alice (#7)` when known, `#7` otherwise. */
export function useUsernames(enabled = true): (id: number | null | undefined) => string {
  const users = useQuery({ ...usersApi.usersQuery({ page: 1, page_size: 200 }), enabled, staleTime: 60_000 });
  const names = useMemo(() => new Map((users.data?.items ?? []).map((u) => [u.id, u.username])), [users.data]);
  return (id) => {
    if (id === null || id === undefined) return '—';
    const name = names.get(id);
    return name ? `${name} (#${id})` : `#${id}`;
  };
}
