// A fake gateway for component tests: routes like `GET /api/keys` answer with raw JSON text,
// so tests can send exact decimals the way the server writes them.
import { vi } from 'vitest';

export interface Call {
  method: string;
  path: string;
  query: URLSearchParams;
  body: unknown;
  headers: Headers;
}

type Reply = Response | { status?: number; body?: string | object | null };
type Handler = (call: Call) => Reply | Promise<Reply>;

/** A JSON response from raw text (kept as written) or a value. */
export function json(body: string | object | null, status = 200): Response {
  const text = body === null ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  return new Response(status === 204 ? null : text, {
    status,
    headers: { 'content-type': 'application/json' },
  });
}

export function apiError(status: number, code: string, message: string): Response {
  return json({ error: { code, message } }, status);
}

/** Stubs fetch with `routes` (`"METHOD /path"`); returns every call made. Unknown routes answer 404. */
export function mockApi(routes: Record<string, Handler | Reply>): Call[] {
  const calls: Call[] = [];
  vi.stubGlobal(
    'fetch',
    vi.fn(async (input: Request | string, init?: RequestInit) => {
      const request = typeof input === 'string' ? new Request(input, init) : input;
      const url = new URL(request.url);
      const text = request.method === 'GET' || request.method === 'HEAD' ? '' : await request.text();
      const call: Call = {
        method: request.method,
        path: url.pathname,
        query: url.searchParams,
        body: text ? JSON.parse(text) : undefined,
        headers: request.headers,
      };
      calls.push(call);
      const route = routes[`${call.method} ${call.path}`];
      if (!route) return apiError(404, 'not_found', `no mock for ${call.method} ${call.path}`);
      const reply = typeof route === 'function' ? await route(call) : route;
      if (reply instanceof Response) return reply.clone();
      return json(reply.body ?? null, reply.status ?? 200);
    }),
  );
  return calls;
}
