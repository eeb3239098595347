// The one HTTP client of the dashboard: openapi-fetch typed by the generated schema.
// It adds the bearer token, keeps exact decimals exact (see decimal-json.ts), turns error bodies
// into ApiError, and ends the session when the server answers 401 to a token it no longer accepts.
import createClient, { type Middleware } from 'openapi-fetch';
import { parseDecimalJson } from './decimal-json';
import { ApiError, toApiError } from './errors';
import type { components, paths } from './schema';
import { session } from './session';

export type Schemas = components['schemas'];

/** Routes whose 401 means "wrong credentials", not "session over". */
const CREDENTIAL_ROUTES = new Set(['/api/auth/login', '/api/auth/register', '/api/auth/password']);

const auth: Middleware = {
  onRequest({ request }) {
    const token = session.token();
    if (token) request.headers.set('authorization', `Bearer ${token}`);
    return request;
  },
  onResponse({ request, response }) {
    if (response.status !== 401) return undefined;
    const path = new URL(request.url).pathname;
    const sent = request.headers.get('authorization');
    // Only the token in use now: a late answer to an older session must not end a new one.
    if (!CREDENTIAL_ROUTES.has(path) && sent && sent === `Bearer ${session.token()}`) session.end('expired');
    return undefined;
  },
};

const exactDecimals: Middleware = {
  async onResponse({ response }) {
    const type = response.headers.get('content-type') ?? '';
    if (!type.includes('json') || response.status === 204 || response.status === 205) return undefined;
    const text = await response.text();
    let body = text;
    try {
      if (text) body = JSON.stringify(parseDecimalJson(text));
    } catch {
      /* not JSON after all: pass the text on */
    }
    const headers = new Headers(response.headers);
    headers.delete('content-length');
    return new Response(body, { status: response.status, statusText: response.statusText, headers });
  },
};

function origin(): string {
  return typeof window !== 'undefined' ? window.location.origin : 'http://localhost';
}

export const client = createClient<paths>({
  baseUrl: origin(),
  // Looked up per call so tests can stub the global fetch.
  fetch: (request) => globalThis.fetch(request),
});
client.use(auth, exactDecimals);

type Result<T> = { data?: T; error?: unknown; response: Response };

/** Awaits an openapi-fetch call: its data, or a thrown ApiError with the server's message. */
export async function call<T>(request: Promise<Result<T>>): Promise<T> {
  let result: Result<T>;
  try {
    result = await request;
  } catch (e) {
    throw new ApiError(0, 'network', e instanceof Error ? e.message : String(e));
  }
  if (result.error !== undefined || !result.response.ok) {
    throw toApiError(result.response.status, result.error, result.response.statusText);
  }
  return result.data as T;
}
