// The session token as React state, and the logged-in user.
import { useQuery } from '@tanstack/react-query';
import { useSyncExternalStore } from 'react';
import { authApi, session } from '../api';

export function useToken(): string | null {
  return useSyncExternalStore(session.subscribe, session.token, session.token);
}

/** The logged-in user (`/api/auth/me`), when there is a session. */
export function useMe() {
  const token = useToken();
  return useQuery({ ...authApi.meQuery(), enabled: token !== null });
}

export function useIsAdmin(): boolean {
  return useMe().data?.role === 'admin';
}
