// The session token, kept in localStorage, and who wants to know when it changes.

const STORAGE_KEY = 'apihub.token';

/** Why the session ended: the user logged out, or the server refused the token (401). */
export type SessionEnd = 'logout' | 'expired';

type Listener = (token: string | null, reason?: SessionEnd) => void;

const listeners = new Set<Listener>();

function read(): string | null {
  try {
    return localStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

export const session = {
  /** The current bearer token, or null when logged out. */
  token(): string | null {
    return read();
  },
  /** Starts a session with a token from `POST /api/auth/login`. */
  start(token: string) {
    localStorage.setItem(STORAGE_KEY, token);
    listeners.forEach((l) => l(token));
  },
  /** Ends the session; `expired` when the server refused the token. */
  end(reason: SessionEnd = 'logout') {
    if (read() === null) return;
    localStorage.removeItem(STORAGE_KEY);
    listeners.forEach((l) => l(null, reason));
  },
  /** Calls `listener` on every change; returns the unsubscribe function. */
  subscribe(listener: Listener): () => void {
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
};
