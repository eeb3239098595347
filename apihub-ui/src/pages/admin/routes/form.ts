// The route form: its fields as data, and the request body it makes.
import type { MeteredRoute, RouteRequest } from '../../../api/routes';
import type { FieldDef } from '../../../components/FormFields';
import { decimal, integer, maxLength, required } from '../../../lib/validation';

export type RouteValues = {
  name: string;
  path: string;
  methods: string[];
  upstream_url: string;
  upstream_key?: string;
  upstream_key_header?: string;
  price_per_call: string;
  price_per_unit?: string;
  units_pointer?: string;
  max_units?: number | null;
  key_field?: string;
  model_pointer?: string;
  success_statuses?: string[];
  timeout_secs?: number | null;
  allow_stream: boolean;
  enabled: boolean;
};

const price = decimal({ allowZero: true });
const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];

export const routeFields = (editing: boolean): FieldDef[] => [
  { name: 'name', label: 'routes.name', kind: 'text', validators: [required, maxLength(64)] },
  { name: 'path', label: 'routes.path', kind: 'text', help: 'routes.pathHelp', validators: [required, maxLength(200)] },
  { name: 'methods', label: 'routes.methods', kind: 'tags', options: METHODS.map((value) => ({ value })), validators: [required] },
  { name: 'upstream_url', label: 'routes.upstreamUrl', kind: 'text', help: 'routes.upstreamUrlHelp', validators: [required, maxLength(200)] },
  {
    name: 'upstream_key',
    label: 'routes.upstreamKey',
    kind: 'password',
    help: editing ? 'routes.upstreamKeyKeep' : 'routes.upstreamKeyHelp',
    autoComplete: 'new-password',
    validators: [maxLength(512)],
  },
  { name: 'upstream_key_header', label: 'routes.upstreamKeyHeader', kind: 'text', placeholder: 'routes.authorization', validators: [maxLength(64)] },
  { name: 'price_per_call', label: 'routes.pricePerCall', kind: 'decimal', help: 'routes.pricePerCallHelp', validators: [required, price] },
  { name: 'price_per_unit', label: 'routes.pricePerUnit', kind: 'decimal', validators: [price] },
  { name: 'units_pointer', label: 'routes.unitsPointer', kind: 'text', help: 'routes.unitsPointerHelp', validators: [maxLength(100)] },
  { name: 'max_units', label: 'routes.maxUnits', kind: 'integer', validators: [integer(1, 10000)] },
  { name: 'key_field', label: 'routes.keyField', kind: 'text', help: 'routes.keyFieldHelp', validators: [maxLength(64)] },
  { name: 'model_pointer', label: 'routes.modelPointer', kind: 'text', help: 'routes.modelPointerHelp', validators: [maxLength(100)] },
  { name: 'success_statuses', label: 'routes.successStatuses', kind: 'tags', help: 'routes.successStatusesHelp' },
  { name: 'timeout_secs', label: 'routes.timeout', kind: 'integer', validators: [integer(1, 3600)] },
  { name: 'allow_stream', label: 'routes.allowStream', kind: 'switch' },
  { name: 'enabled', label: 'routes.enabled', kind: 'switch' },
];

/** A new route's starting values: the second seed's image API. */
export const NEW_ROUTE: Partial<RouteValues> = {
  path: '/api/generate',
  methods: ['POST'],
  key_field: 'apiKey',
  max_units: 100,
  timeout_secs: 60,
  allow_stream: false,
  enabled: true,
};

/** A stored route as form values (the upstream key is never sent back: empty keeps it). */
export function toValues(route: MeteredRoute): RouteValues {
  return {
    name: route.name,
    path: route.path,
    methods: route.methods,
    upstream_url: route.upstream_url,
    upstream_key_header: route.upstream_key_header,
    price_per_call: route.price_per_call,
    price_per_unit: route.price_per_unit ?? undefined,
    units_pointer: route.units_pointer ?? undefined,
    max_units: route.max_units,
    key_field: route.key_field ?? undefined,
    model_pointer: route.model_pointer ?? undefined,
    success_statuses: route.success_statuses.map(String),
    timeout_secs: route.timeout_secs,
    allow_stream: route.allow_stream,
    enabled: route.enabled,
  };
}

/** The request body: empty optional fields absent (the server's defaults), an empty key kept. */
export function toRouteRequest(v: RouteValues): RouteRequest {
  const opt = (x?: string) => (x && x.trim() ? x.trim() : undefined);
  const body: RouteRequest = {
    name: v.name.trim(),
    path: v.path.trim(),
    methods: v.methods.map((m) => m.trim().toUpperCase()) as RouteRequest['methods'],
    upstream_url: v.upstream_url.trim(),
    upstream_key_header: opt(v.upstream_key_header),
    price_per_call: v.price_per_call.trim(),
    price_per_unit: opt(v.price_per_unit),
    units_pointer: opt(v.units_pointer),
    max_units: v.max_units ?? undefined,
    key_field: opt(v.key_field),
    model_pointer: opt(v.model_pointer),
    success_statuses: (v.success_statuses ?? []).map(Number),
    timeout_secs: v.timeout_secs ?? undefined,
    allow_stream: v.allow_stream,
    enabled: v.enabled,
  };
  const key = opt(v.upstream_key);
  return key ? { ...body, upstream_key: key } : body;
}
