// Every API error is `{"error": {"code", "message"}}`; ApiError carries it with the HTTP status.

export class ApiError extends Error {
  constructor(
    /** HTTP status; 0 when the server could not be reached. */
    readonly status: number,
    /** The server's stable code, e.g. `not_found`, or `network` / `http_<status>`. */
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** Builds an ApiError from an error body the server sent (or did not). */
export function toApiError(status: number, body: unknown, statusText = ''): ApiError {
  const detail = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  if (detail && typeof detail.code === 'string' && typeof detail.message === 'string') {
    return new ApiError(status, detail.code, detail.message);
  }
  const text = typeof body === 'string' && body.trim() ? body.trim().slice(0, 200) : statusText || `HTTP ${status}`;
  return new ApiError(status, `http_${status}`, text);
}

/** The message to show a person for any thrown value. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
