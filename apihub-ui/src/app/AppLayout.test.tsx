import { render, screen, waitFor } from '@testing-library/react';
import { QueryClient } from '@tanstack/react-query';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryRouter, Route, Routes } from 'react-router';
import { session } from '../api';
import { json, mockApi } from '../test/api';
import { user } from '../test/user';
import { AppLayout } from './AppLayout';
import { Providers } from './Providers';

const original = window.matchMedia;

/** matchMedia for a screen `width` px wide (antd's breakpoints ask `(min-width: …)`). */
function screenOf(width: number) {
  window.matchMedia = ((query: string) => {
    const min = /min-width:\s*(\d+)px/.exec(query);
    const max = /max-width:\s*(\d+(?:\.\d+)?)px/.exec(query);
    const matches = (!min || width >= Number(min[1])) && (!max || width <= Number(max[1]));
    return { matches, media: query, addListener() {}, removeListener() {}, addEventListener() {}, removeEventListener() {} };
  }) as unknown as typeof window.matchMedia;
}

function renderLayout() {
  session.start('tok');
  mockApi({ 'GET /api/auth/me': json({ id: 1, username: 'alice', role: 'user', status: 'active' }) });
  const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  return render(
    <Providers client={client} locale="en">
      <MemoryRouter initialEntries={['/']}>
        <Routes>
          <Route element={<AppLayout />}>
            <Route index element={<p>home page</p>} />
            <Route path="transactions" element={<p>transactions page</p>} />
          </Route>
        </Routes>
      </MemoryRouter>
    </Providers>,
  );
}

afterEach(() => {
  window.matchMedia = original;
});

describe('AppLayout', () => {
  it('on a phone, hides the side menu and opens it as a drawer', async () => {
    screenOf(390);
    const { container } = renderLayout();
    await screen.findByText('home page');
    await waitFor(() => expect(container.querySelector('.ant-layout-sider')).toBeNull());
    await user.click(await screen.findByTestId('nav-toggle'));
    const drawer = await waitFor(() => {
      const el = document.querySelector('.ant-drawer-open');
      expect(el).not.toBeNull();
      return el as HTMLElement;
    });
    await user.click(await waitFor(() => drawer.querySelector('[data-menu-id$="/transactions"]') as HTMLElement));
    expect(await screen.findByText('transactions page')).toBeInTheDocument();
    await waitFor(() => expect(document.querySelector('.ant-drawer-open')).toBeNull());
  });

  it('on a desktop, shows the side menu and no menu button', async () => {
    screenOf(1440);
    const { container } = renderLayout();
    await screen.findByText('home page');
    await waitFor(() => expect(container.querySelector('.ant-layout-sider')).not.toBeNull());
    expect(screen.queryByTestId('nav-toggle')).toBeNull();
  });
});
