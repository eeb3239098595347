// Upstream channels, for administrators: `/api/admin/channels` and `/api/admin/channels/{channel_id}`.
import { queryOptions } from '@tanstack/react-query';
import { call, client, type Schemas } from './client';

export type Channel = Schemas['ChannelView'];
export type ChannelRequest = Schemas['ChannelRequest'];
export type ChannelHealth = Schemas['ChannelHealth'];
export type Dialect = Schemas['DialectName'];
/** A cost price: what the operator pays a channel for a model (the shape of a model's price). */
export type CostPrice = Schemas['PriceRequest'];

export const channelsQuery = () =>
  queryOptions({ queryKey: ['channels'], queryFn: () => call(client.GET('/api/admin/channels')) });

export const createChannel = (body: ChannelRequest) => call(client.POST('/api/admin/channels', { body }));

export const updateChannel = (id: number, body: ChannelRequest) =>
  call(client.PUT('/api/admin/channels/{channel_id}', { params: { path: { channel_id: id } }, body }));

export const deleteChannel = (id: number) =>
  call(client.DELETE('/api/admin/channels/{channel_id}', { params: { path: { channel_id: id } } }));
