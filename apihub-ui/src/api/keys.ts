// API keys: `/api/keys/*`, the caller's and (for administrators) anyone's.
import { queryOptions } from '@tanstack/react-query';
import { call, client, type Schemas } from './client';

export type Key = Schemas['KeyView'];
export type CreatedKey = Schemas['CreatedKey'];
export type KeyFields = Schemas['KeyFields'];
export type KeyPatch = Schemas['UpdateKeyRequest'];
export type BatchRequest = Schemas['BatchCreateRequest'];
export type BatchCreated = Schemas['BatchCreated'];

export interface Paging {
  page: number;
  page_size: number;
}

/** The caller's keys, a page at a time. */
export const keysQuery = (paging: Paging) =>
  queryOptions({
    queryKey: ['keys', 'mine', paging],
    queryFn: () => call(client.GET('/api/keys', { params: { query: paging } })),
  });

export interface AdminKeyFilter extends Paging {
  user_id?: number;
  batch_id?: string;
}

/** Every key (administrators), optionally of one user or one batch. */
export const allKeysQuery = (filter: AdminKeyFilter) =>
  queryOptions({
    queryKey: ['keys', 'all', filter],
    queryFn: () => call(client.GET('/api/keys/admin/all', { params: { query: filter } })),
  });

export const createKey = (body: KeyFields) => call(client.POST('/api/keys', { body }));

export const createBatch = (body: BatchRequest) => call(client.POST('/api/keys/batch', { body }));

export const updateKey = (id: number, body: KeyPatch) =>
  call(client.PUT('/api/keys/{key_id}', { params: { path: { key_id: id } }, body }));

export const deleteKey = (id: number) =>
  call(client.DELETE('/api/keys/{key_id}', { params: { path: { key_id: id } } }));

export const deactivateKey = (id: number) =>
  call(client.POST('/api/keys/{key_id}/deactivate', { params: { path: { key_id: id } } }));

export const resetKeyUsage = (id: number) =>
  call(client.POST('/api/keys/{key_id}/reset-usage', { params: { path: { key_id: id } } }));

/** Administrators: a key for another user. */
export const createUserKey = (userId: number, body: KeyFields) =>
  call(client.POST('/api/keys/admin/user/{user_id}', { params: { path: { user_id: userId } }, body }));

/** Administrators: a batch of keys for another user. */
export const createUserBatch = (userId: number, body: BatchRequest) =>
  call(client.POST('/api/keys/admin/user/{user_id}/batch', { params: { path: { user_id: userId } }, body }));

/** One of the caller's keys. */
export const keyQuery = (id: number) =>
  queryOptions({
    queryKey: ['keys', 'one', id],
    queryFn: () => call(client.GET('/api/keys/{key_id}', { params: { path: { key_id: id } } })),
  });
