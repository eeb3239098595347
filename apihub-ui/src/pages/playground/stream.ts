// One streamed chat completion through the gateway, the way an OpenAI client makes it: the
// caller's key as a bearer token, `stream: true` with `include_usage`, so the last chunk reports
// the tokens the call is billed for.

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ChatUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Prompt tokens read from the provider's cache (billed at the cache-read price). */
  cached_tokens?: number;
}

export interface ChatResult {
  content: string;
  usage: ChatUsage | null;
}

export class ChatError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ChatError';
  }
}

interface Options {
  key: string;
  model: string;
  messages: ChatMessage[];
  signal?: AbortSignal;
  /** Each piece of the reply as it arrives. */
  onDelta?: (text: string) => void;
  baseUrl?: string;
}

/** The error an OpenAI-style body carries (`{"error": {"message"}}`), or the text itself. */
async function errorOf(response: Response): Promise<ChatError> {
  const text = await response.text();
  try {
    const body = JSON.parse(text) as { error?: { message?: string } | string };
    const message = typeof body.error === 'string' ? body.error : body.error?.message;
    if (message) return new ChatError(response.status, message);
  } catch {
    /* not JSON */
  }
  return new ChatError(response.status, text.trim().slice(0, 300) || `HTTP ${response.status}`);
}

function usageOf(raw: unknown): ChatUsage | null {
  const u = raw as (ChatUsage & { prompt_tokens_details?: { cached_tokens?: number } }) | null | undefined;
  if (!u || typeof u.prompt_tokens !== 'number') return null;
  const cached = u.prompt_tokens_details?.cached_tokens;
  return {
    prompt_tokens: u.prompt_tokens,
    completion_tokens: u.completion_tokens ?? 0,
    total_tokens: u.total_tokens ?? u.prompt_tokens + (u.completion_tokens ?? 0),
    ...(cached ? { cached_tokens: cached } : {}),
  };
}

export async function streamChat({ key, model, messages, signal, onDelta, baseUrl = window.location.origin }: Options): Promise<ChatResult> {
  const response = await fetch(`${baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ model, messages, stream: true, stream_options: { include_usage: true } }),
    signal,
  });
  if (!response.ok) throw await errorOf(response);
  let content = '';
  let usage: ChatUsage | null = null;
  const take = (line: string) => {
    if (!line.startsWith('data:')) return;
    const data = line.slice(5).trim();
    if (!data || data === '[DONE]') return;
    let chunk: { choices?: { delta?: { content?: string | null } }[]; usage?: unknown; error?: { message?: string } };
    try {
      chunk = JSON.parse(data);
    } catch {
      return;
    }
    if (chunk.error?.message) throw new ChatError(response.status, chunk.error.message);
    const piece = chunk.choices?.[0]?.delta?.content;
    if (piece) {
      content += piece;
      onDelta?.(piece);
    }
    usage = usageOf(chunk.usage) ?? usage;
  };
  if (!response.body) {
    for (const line of (await response.text()).split(/\r?\n/)) take(line);
    return { content, usage };
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { done, value } = await reader.read();
    buffer += decoder.decode(value, { stream: !done });
    const lines = buffer.split(/\r?\n/);
    buffer = done ? '' : lines.pop()!;
    for (const line of lines) take(line);
    if (done) break;
  }
  return { content, usage };
}
