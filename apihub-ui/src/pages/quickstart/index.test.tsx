import { screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { session } from '../../api';
import { json, mockApi } from '../../test/api';
import { renderPage } from '../../test/render';
import QuickstartPage, { KEY_PLACEHOLDER, snippets } from '.';

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
});
