// Renders a page inside the app's providers and a memory router.
import { QueryClient } from '@tanstack/react-query';
import { render } from '@testing-library/react';
import type { ReactElement } from 'react';
import { MemoryRouter, Route, Routes } from 'react-router';
import { Providers } from '../app/Providers';
import type { Locale } from '../i18n';

export function renderPage(
  page: ReactElement,
  {
    path = '/',
    pattern,
    locale = 'en',
    routes = {},
  }: { path?: string; pattern?: string; locale?: Locale; routes?: Record<string, ReactElement> } = {},
) {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false }, mutations: { retry: false } } });
  return render(
    <Providers client={client} locale={locale}>
      <MemoryRouter initialEntries={[path]}>
        <Routes>
          <Route path={pattern ?? path.split('?')[0]} element={page} />
          {Object.entries(routes).map(([p, el]) => (
            <Route key={p} path={p} element={el} />
          ))}
        </Routes>
      </MemoryRouter>
    </Providers>,
  );
}
