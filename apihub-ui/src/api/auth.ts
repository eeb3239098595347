// Accounts: `/api/auth/*`.
import { queryOptions } from '@tanstack/react-query';
import { call, client, type Schemas } from './client';

export type User = Schemas['UserView'];

export const login = (body: Schemas['LoginRequest']) => call(client.POST('/api/auth/login', { body }));

export const register = (body: Schemas['RegisterRequest']) => call(client.POST('/api/auth/register', { body }));

export const changePassword = (body: Schemas['ChangePasswordRequest']) =>
  call(client.POST('/api/auth/password', { body }));

/** The logged-in user (`GET /api/auth/me`). */
export const meQuery = () =>
  queryOptions({ queryKey: ['me'], queryFn: () => call(client.GET('/api/auth/me')), staleTime: 60_000 });
