import { describe, expect, it } from 'vitest';
import type { MeteredRoute } from '../../../api/routes';
import { NEW_ROUTE, toRouteRequest, toValues, type RouteValues } from './form';

const ROUTE: MeteredRoute = {
  id: 4,
  name: 'images',
  path: '/api/generate',
  prefix: false,
  methods: ['POST'],
  upstream_url: 'http://10.0.0.5:7860/api/generate',
  upstream_key_preview: '…abcd',
  upstream_key_header: 'authorization',
  price_per_call: '0.01',
  price_per_unit: '0.05',
  units_pointer: '/batch_size',
  max_units: 8,
  key_field: 'apiKey',
  model_pointer: null,
  success_statuses: [200],
  timeout_secs: 60,
  allow_stream: false,
  enabled: true,
  created_at: '2026-12-03T00:00:00Z',
  updated_at: '2026-12-03T00:00:00Z',
};

describe('route form mapping', () => {
  it('starts a new route from the second seed', () => {
    expect(NEW_ROUTE).toMatchObject({ path: '/api/generate', methods: ['POST'], key_field: 'apiKey' });
  });

  it('keeps the stored upstream key when the field is left empty', () => {
    const values = toValues(ROUTE);
    expect(values.success_statuses).toEqual(['200']);
    const body = toRouteRequest(values);
    expect(body).not.toHaveProperty('upstream_key');
    expect(body).toMatchObject({ price_per_call: '0.01', price_per_unit: '0.05', success_statuses: [200], model_pointer: undefined });
  });

  it('sends exact decimals and trims what was typed', () => {
    const values: RouteValues = {
      name: ' images ',
      path: ' /v1/audio/ ',
      methods: ['post'],
      upstream_url: 'http://10.0.0.5:9000/audio/',
      upstream_key: ' sk-new ',
      price_per_call: '0.000001',
      price_per_unit: '',
      allow_stream: true,
      enabled: false,
    };
    expect(toRouteRequest(values)).toMatchObject({
      name: 'images',
      path: '/v1/audio/',
      methods: ['POST'],
      upstream_key: 'sk-new',
      price_per_call: '0.000001',
      price_per_unit: undefined,
      allow_stream: true,
      enabled: false,
    });
  });
});
