import { screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { session } from '../../api';
import { json, mockApi } from '../../test/api';
import { utcToday } from '../../lib/format';
import { renderPage } from '../../test/render';
import DashboardPage from '.';

const NO_BUDGETS = json('{"time_zone":"UTC","budgets":[]}');
const zero = '"requests":0,"succeeded":0,"prompt_tokens":0,"completion_tokens":0,"total_tokens":0,"raw_cost":0,"charged":0';

describe('DashboardPage', () => {
  it("shows the exact balance and today's calls, tokens and spend", async () => {
    session.start('tok');
    const today = utcToday();
    mockApi({
      'GET /api/tokens/balance': json(
        '{"user_id":2,"token_balance":9007199254740993.123456,"reserved":1,"available":9007199254740992.123456,' +
          '"total_recharged":100,"total_consumed":0.000123,"discount_rate":0.8}',
      ),
      'GET /api/budgets': NO_BUDGETS,
      'GET /api/stats/me': json(
        `{"from":"2025-01-01T00:00:00Z","to":"2025-02-01T00:00:00Z",` +
          `"summary":{"requests":3,"succeeded":3,"prompt_tokens":30,"completion_tokens":12,"total_tokens":42,"raw_cost":0.000154,"charged":0.000123},` +
          `"by_day":[{"date":"2000-01-01",${zero}},{"date":"${today}","requests":3,"succeeded":2,"prompt_tokens":30,"completion_tokens":12,"total_tokens":42,"raw_cost":0.000154,"charged":0.000123}],` +
          `"by_model":[{"model":"gpt-4o-mini","requests":3,"succeeded":3,"prompt_tokens":30,"completion_tokens":12,"total_tokens":42,"raw_cost":0.000154,"charged":0.000123}]}`,
      ),
    });
    renderPage(<DashboardPage />);
    expect(await within(await screen.findByTestId('balance-card')).findByText('9,007,199,254,740,993.123456')).toBeInTheDocument();
    expect(screen.getByTestId('balance-held')).toHaveTextContent('available 9,007,199,254,740,992.123456');
    expect(await within(screen.getByTestId('today-calls')).findByText('3')).toBeInTheDocument();
    expect(within(screen.getByTestId('today-spend')).getByText('0.000123')).toBeInTheDocument();
    expect(within(screen.getByTestId('today-tokens')).getByText('42')).toBeInTheDocument();
    expect(screen.getByText('gpt-4o-mini')).toBeInTheDocument();
    expect(screen.getByRole('img', { name: 'Last 30 days, per day' })).toBeInTheDocument();
    expect(screen.getByTestId('discount')).toHaveTextContent('20% off');
  });

  it('says "No discount" for a rate of 1', async () => {
    session.start('tok');
    mockApi({
      'GET /api/tokens/balance': json(
        '{"user_id":2,"token_balance":0,"reserved":0,"available":0,"total_recharged":0,"total_consumed":0,"discount_rate":1}',
      ),
      'GET /api/budgets': NO_BUDGETS,
      'GET /api/stats/me': json('{"from":"2025-01-01T00:00:00Z","to":"2025-02-01T00:00:00Z","summary":{' + zero + '},"by_day":[],"by_model":[]}'),
    });
    renderPage(<DashboardPage />, { locale: 'zh-CN' });
    expect(await screen.findByTestId('discount')).toHaveTextContent('无折扣');
  });

  it('shows the credit held by requests in flight and what is left available', async () => {
    session.start('tok');
    mockApi({
      'GET /api/tokens/balance': json(
        '{"user_id":2,"token_balance":10,"reserved":7.500001,"available":2.499999,"total_recharged":10,"total_consumed":0,"discount_rate":1}',
      ),
      'GET /api/budgets': NO_BUDGETS,
      'GET /api/stats/me': json(
        `{"from":"2025-01-01T00:00:00Z","to":"2025-02-01T00:00:00Z","summary":{${zero}},"by_day":[],"by_model":[]}`,
      ),
    });
    renderPage(<DashboardPage />);
    const held = await within(await screen.findByTestId('balance-card')).findByTestId('balance-held');
    await waitFor(() => expect(held).toHaveTextContent('Held by requests in flight 7.500001 · available 2.499999'));
    expect(within(screen.getByTestId('balance-card')).getByText('10', { selector: '.money' })).toBeInTheDocument();
  });

  it('shows empty states without usage', async () => {
    session.start('tok');
    mockApi({
      'GET /api/tokens/balance': json(
        '{"user_id":2,"token_balance":0,"reserved":0,"available":0,"total_recharged":0,"total_consumed":0,"discount_rate":1}',
      ),
      'GET /api/budgets': NO_BUDGETS,
      'GET /api/stats/me': json(
        `{"from":"2025-01-01T00:00:00Z","to":"2025-02-01T00:00:00Z","summary":{${zero}},"by_day":[],"by_model":[]}`,
      ),
    });
    renderPage(<DashboardPage />);
    await waitFor(() => expect(screen.getAllByText('No usage yet')).toHaveLength(2));
  });

  it("shows the user's own budgets, used against each limit and when each resets", async () => {
    session.start('tok');
    mockApi({
      'GET /api/tokens/balance': json(
        '{"user_id":2,"token_balance":10,"reserved":0,"available":10,"total_recharged":10,"total_consumed":0,"discount_rate":1}',
      ),
      'GET /api/stats/me': json(
        `{"from":"2025-01-01T00:00:00Z","to":"2025-02-01T00:00:00Z","summary":{${zero}},"by_day":[],"by_model":[]}`,
      ),
      'GET /api/budgets': json(
        '{"time_zone":"Asia/Shanghai","budgets":[' +
          '{"period":"day","credit_limit":5,"token_limit":null,"call_limit":null,"credit_used":5,"tokens_used":0,"calls_used":0,' +
          '"window_start":"2026-12-03T16:00:00Z","resets_at":"2026-12-04T16:00:00Z"},' +
          '{"period":"month","credit_limit":null,"token_limit":null,"call_limit":300,"credit_used":0.1,"tokens_used":99,"calls_used":12,' +
          '"window_start":"2026-11-30T16:00:00Z","resets_at":"2026-12-31T16:00:00Z"}]}',
      ),
    });
    renderPage(<DashboardPage />);
    const card = await screen.findByTestId('my-budgets');
    expect(within(card).getByText('Your budgets')).toBeInTheDocument();
    expect(within(card).getByText(/Windows follow the time zone Asia\/Shanghai/)).toBeInTheDocument();
    expect(within(within(card).getByTestId('budget-day')).getByText('5 / 5')).toBeInTheDocument();
    expect(within(card).getByTestId('budget-day-resets')).toHaveTextContent('Resets 5 Dec 2026, 00:00 Asia/Shanghai');
    expect(within(within(card).getByTestId('budget-month')).getByText('12 / 300')).toBeInTheDocument();
    expect(within(card).getByTestId('budget-month-resets')).toHaveTextContent('Resets 1 Jan 2027, 00:00 Asia/Shanghai');
    expect(within(card).getByText('Daily')).toBeInTheDocument();
    expect(within(card).getByText('Monthly')).toBeInTheDocument();
  });

  it('shows no budgets card when the user has none', async () => {
    session.start('tok');
    mockApi({
      'GET /api/tokens/balance': json(
        '{"user_id":2,"token_balance":0,"reserved":0,"available":0,"total_recharged":0,"total_consumed":0,"discount_rate":1}',
      ),
      'GET /api/stats/me': json(
        `{"from":"2025-01-01T00:00:00Z","to":"2025-02-01T00:00:00Z","summary":{${zero}},"by_day":[],"by_model":[]}`,
      ),
      'GET /api/budgets': NO_BUDGETS,
    });
    renderPage(<DashboardPage />);
    await waitFor(() => expect(screen.getAllByText('No usage yet')).toHaveLength(2));
    expect(screen.queryByTestId('my-budgets')).toBeNull();
    expect(screen.queryByText('Could not load the data')).toBeNull();
  });
});
