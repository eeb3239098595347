import { screen, waitFor } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { session } from '../../api';
import { json, mockApi, type Call } from '../../test/api';
import { renderPage } from '../../test/render';
import { fillIn, findButton, user } from '../../test/user';
import { matchesPreview } from './KeyPicker';
import PlaygroundPage from '.';

const KEY = { id: 3, name: 'laptop', key_preview: 'ahg_pub123_…9f2a', status: 'active', discount_rate: 0.5 };

function sse(chunks: object[]): Response {
  const text = chunks.map((c) => `data: ${JSON.stringify(c)}\n\n`).join('') + 'data: [DONE]\n\n';
  return new Response(text, { status: 200, headers: { 'content-type': 'text/event-stream' } });
}

const delta = (content: string) => ({ choices: [{ index: 0, delta: { content } }] });

function gateway(reply: (call: Call) => Response) {
  return mockApi({
    'GET /api/keys': json({ items: [KEY], total: 1, page: 1, page_size: 200 }),
    'GET /api/prices': json('[{"model":"gpt-4o-mini","input_price":3,"output_price":6}]'),
    'GET /api/tokens/balance': json('{"user_id":2,"token_balance":10,"available":10,"reserved":0,"total_recharged":10,"total_consumed":0,"discount_rate":0.8}'),
    'POST /v1/chat/completions': reply,
  });
}

describe('PlaygroundPage', () => {
  it('streams a reply through the chosen key and shows its tokens and cost', async () => {
    session.start('tok');
    const calls = gateway(() =>
      sse([delta('Hel'), delta('lo!'), { choices: [], usage: { prompt_tokens: 1200, completion_tokens: 300, total_tokens: 1500 } }]),
    );
    renderPage(<PlaygroundPage />, { path: '/playground' });
    await screen.findByText('laptop · ahg_pub123_…9f2a');
    await fillIn(await screen.findByLabelText('The whole key'), 'ahg_pub123_secretsecret9f2a');
    await fillIn(screen.getByLabelText(/Type a message/), 'Hi there');
    await user.click(await findButton('Send'));
    expect(await screen.findByText('Hello!')).toBeInTheDocument();
    // (1200 × 3 + 300 × 6) / 1,000,000 = 0.0054 at full price; × 0.8 (user) × 0.5 (key) = 0.00216.
    const usage = await screen.findByTestId('reply-usage');
    expect(usage).toHaveTextContent('1,200 in + 300 out = 1,500 tokens · cost 0.00216 credits (0.0054 before discounts)');
    const call = calls.find((c) => c.path === '/v1/chat/completions')!;
    expect(call.headers.get('authorization')).toBe('Bearer ahg_pub123_secretsecret9f2a');
    expect(call.body).toEqual({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Hi there' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(sessionStorage.getItem('apihub.playground.key.3')).toBe('ahg_pub123_secretsecret9f2a');
  });

  it("shows the gateway's refusal under the reply and lets you send again", async () => {
    session.start('tok');
    gateway(() => json({ error: { message: 'insufficient balance', type: 'insufficient_quota' } }, 402));
    renderPage(<PlaygroundPage />, { path: '/playground' });
    await screen.findByText('laptop · ahg_pub123_…9f2a');
    await fillIn(await screen.findByLabelText('The whole key'), 'ahg_pub123_secretsecret9f2a');
    await fillIn(screen.getByLabelText(/Type a message/), 'Hi');
    await user.click(await findButton('Send'));
    expect(await screen.findByText('The call failed: insufficient balance')).toBeInTheDocument();
    await fillIn(screen.getByLabelText(/Type a message/), 'again');
    await waitFor(async () => expect(await findButton('Send')).not.toBeDisabled());
  });

  it('checks a pasted key against the preview', () => {
    expect(matchesPreview('ahg_pub123_secret9f2a', 'ahg_pub123_…9f2a')).toBe(true);
    expect(matchesPreview('ahg_other_secret9f2a', 'ahg_pub123_…9f2a')).toBe(false);
  });
});
