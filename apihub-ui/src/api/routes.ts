// Metered routes, for administrators: `/api/admin/routes` and `/api/admin/routes/{route_id}`.
import { queryOptions } from '@tanstack/react-query';
import { call, client, type Schemas } from './client';

export type MeteredRoute = Schemas['RouteView'];
export type RouteRequest = Schemas['RouteRequest'];

export const routesQuery = () =>
  queryOptions({ queryKey: ['routes'], queryFn: () => call(client.GET('/api/admin/routes')) });

export const createRoute = (body: RouteRequest) => call(client.POST('/api/admin/routes', { body }));

export const updateRoute = (id: number, body: RouteRequest) =>
  call(client.PUT('/api/admin/routes/{route_id}', { params: { path: { route_id: id } }, body }));

export const deleteRoute = (id: number) =>
  call(client.DELETE('/api/admin/routes/{route_id}', { params: { path: { route_id: id } } }));
