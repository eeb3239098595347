// Model prices: `GET /api/prices` for everyone, `PUT/DELETE /api/admin/prices/{model}` for administrators.
import { queryOptions } from '@tanstack/react-query';
import { call, client, type Schemas } from './client';

export type Price = Schemas['PriceView'];
export type PriceRequest = Schemas['PriceRequest'];

export const pricesQuery = () =>
  queryOptions({ queryKey: ['prices'], queryFn: () => call(client.GET('/api/prices')) });

export const setPrice = (model: string, body: PriceRequest) =>
  call(client.PUT('/api/admin/prices/{model}', { params: { path: { model } }, body }));

export const deletePrice = (model: string) =>
  call(client.DELETE('/api/admin/prices/{model}', { params: { path: { model } } }));
