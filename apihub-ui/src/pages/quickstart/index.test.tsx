import { screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { session } from '../../api';
import { json, mockApi } from '../../test/api';
import { renderPage } from '../../test/render';
import { user } from '../../test/user';
import QuickstartPage, { KEY_PLACEHOLDER, snippets } from '.';
import { anthropicSnippets, geminiSnippets } from './snippets';

describe('QuickstartPage', () => {
  it('builds curl, Python and JS snippets on /v1 with a key placeholder', () => {
    const [curl, python, js] = snippets('https://hub.example', 'm1');
    expect(curl.code).toContain('https://hub.example/v1/chat/completions');
    expect(curl.code).toContain(`Bearer ${KEY_PLACEHOLDER}`);
    expect(python.code).toContain('base_url="https://hub.example/v1"');
    expect(js.code).toContain("baseURL: 'https://hub.example/v1'");
    expect(js.code).toContain("model: 'm1'");
  });

  it("shows this origin's base URL and a priced model", async () => {
    session.start('tok');
    mockApi({ 'GET /api/prices': json([{ model: 'gpt-4o-mini', input_price: 0.15, output_price: 0.6 }]) });
    renderPage(<QuickstartPage />, { path: '/quickstart' });
    expect(await screen.findByTestId('base-url')).toHaveTextContent(`${window.location.origin}/v1`);
    expect(await screen.findByText(/"model": "gpt-4o-mini"/)).toBeInTheDocument();
  });

  it('builds Anthropic and Gemini snippets with their own headers and paths', () => {
    const [curl, python] = anthropicSnippets('https://hub.example', 'claude-x');
    expect(curl.code).toContain('https://hub.example/v1/messages');
    expect(curl.code).toContain(`x-api-key: ${KEY_PLACEHOLDER}`);
    expect(python.code).toContain('base_url="https://hub.example"');
    const [gcurl, gpython] = geminiSnippets('https://hub.example', 'gemini-x');
    expect(gcurl.code).toContain('https://hub.example/v1beta/models/gemini-x:generateContent');
    expect(gcurl.code).toContain(`x-goog-api-key: ${KEY_PLACEHOLDER}`);
    expect(gpython.code).toContain('base_url="https://hub.example"');
  });

  it('switches dialects', async () => {
    session.start('tok');
    mockApi({ 'GET /api/prices': json([{ model: 'gpt-4o-mini', input_price: 0.15, output_price: 0.6 }]) });
    renderPage(<QuickstartPage />, { path: '/quickstart' });
    await screen.findByText(/"model": "gpt-4o-mini"/);
    await user.click(screen.getByText('Anthropic'));
    expect(await screen.findByTestId('base-url')).toHaveTextContent(new RegExp(`^${window.location.origin}$`));
    expect(await screen.findByText(/anthropic-version/)).toBeInTheDocument();
  });
});
