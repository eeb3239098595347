import { screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { session } from '../../api';
import { json, mockApi } from '../../test/api';
import { renderPage } from '../../test/render';
import { user } from '../../test/user';
import KeyUsagePage from '../key-usage';
import UserUsagePage from '../admin/user-usage';
import UsagePage from '.';

const usage = (charged: string) =>
  `"requests":4,"succeeded":3,"prompt_tokens":100,"completion_tokens":20,"total_tokens":120,"raw_cost":${charged},"charged":${charged}`;
const report = (charged: string) =>
  json(
    `{"from":"2025-06-01T00:00:00Z","to":"2025-07-01T00:00:00Z","summary":{${usage(charged)}},` +
      `"by_day":[{"date":"2025-06-14",${usage(charged)}}],"by_model":[{"model":"gpt-4o-mini",${usage(charged)}}]}`,
  );

describe('usage pages', () => {
  it('shows my usage for the chosen period, and my top keys by spend', async () => {
    session.start('tok');
    const calls = mockApi({
      'GET /api/stats/me': report('0.000123'),
      'GET /api/keys': json(
        '{"items":[{"id":1,"name":"small","key_preview":"ahg_a…1","quota_used":0.5,"calls_total":2,"status":"active"},' +
          '{"id":2,"name":"big","key_preview":"ahg_b…2","quota_used":12.25,"calls_total":9,"status":"active"},' +
          '{"id":3,"name":"idle","key_preview":"ahg_c…3","quota_used":0,"calls_total":0,"status":"active"}],"total":3,"page":1,"page_size":200}',
      ),
    });
    renderPage(<UsagePage />, { path: '/usage' });
    const summary = await screen.findByTestId('usage-summary');
    expect(within(summary).getByText('Last 30 days')).toBeInTheDocument();
    expect(await within(summary).findAllByText('0.000123')).not.toHaveLength(0);
    expect(screen.getByRole('img', { name: 'Per day' })).toBeInTheDocument();
    expect(screen.getByText('14 Jun')).toBeInTheDocument();
    const top = await screen.findByTestId('top-keys');
    await waitFor(() => expect(within(top).getAllByRole('link').map((a) => a.textContent)).toEqual(['big', 'small']));
    expect(within(top).getByRole('link', { name: 'big' })).toHaveAttribute('href', '/keys/2/usage');
    await user.click(screen.getByText('Last 7 days'));
    await waitFor(() => expect(within(screen.getByTestId('usage-summary')).getByText('Last 7 days')).toBeInTheDocument());
    expect(calls.filter((c) => c.path === '/api/stats/me').length).toBeGreaterThan(1);
  });

  it("shows one key's usage under its name", async () => {
    session.start('tok');
    mockApi({
      'GET /api/keys/5': json({ id: 5, name: 'laptop', key_preview: 'ahg_x…5' }),
      'GET /api/stats/keys/5': report('2.5'),
      'GET /api/keys/5/budgets': json(
        '{"time_zone":"UTC","budgets":[{"period":"week","credit_limit":3,"token_limit":null,"call_limit":null,' +
          '"credit_used":2.5,"tokens_used":0,"calls_used":0,"window_start":"2026-11-30T00:00:00Z","resets_at":"2026-12-07T00:00:00Z"}]}',
      ),
    });
    renderPage(<KeyUsagePage />, { path: '/keys/5/usage', pattern: '/keys/:id/usage' });
    expect(await screen.findByText('Usage of key laptop')).toBeInTheDocument();
    expect(await within(screen.getByTestId('usage-summary')).findAllByText('2.5')).not.toHaveLength(0);
    const budgets = await screen.findByTestId('key-budgets');
    expect(within(budgets).getByText('2.5 / 3')).toBeInTheDocument();
    expect(within(budgets).getByTestId('budget-week-resets')).toHaveTextContent('Resets 7 Dec 2026, 00:00 UTC');
  });

  it("shows one user's usage to an administrator, by name", async () => {
    session.start('tok');
    mockApi({
      'GET /api/admin/users/7': json({ id: 7, username: 'alice' }),
      'GET /api/stats/admin/users/7': report('1.75'),
    });
    renderPage(<UserUsagePage />, { path: '/admin/users/7/usage', pattern: '/admin/users/:id/usage' });
    expect(await screen.findByText('Usage of alice (#7)')).toBeInTheDocument();
    expect(await within(screen.getByTestId('usage-summary')).findAllByText('1.75')).not.toHaveLength(0);
    // No budgets route answered (404 here): no card, and no alarm on the page.
    expect(screen.queryByTestId('user-budgets')).toBeNull();
    expect(screen.queryByText('Could not load the data')).toBeNull();
  });
});
