import { screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { session } from '../../../api';
import { json, mockApi } from '../../../test/api';
import { renderPage } from '../../../test/render';
import { user } from '../../../test/user';
import AdminStatsPage from '.';

const usage = '"requests":3,"succeeded":3,"prompt_tokens":10,"completion_tokens":20,"total_tokens":30,"raw_cost":0.5,"charged":0.4';
const now = new Date();
const day = (offset: number) => new Date(now.getTime() - offset * 86_400_000).toISOString();

function overview(from: string) {
  return json(
    `{"from":"${from}","to":"${new Date(now.getTime() + 86_400_000).toISOString()}","summary":{${usage}},"today":{${usage}},` +
      `"by_day":[{"date":"${day(1).slice(0, 10)}",${usage}}],"by_model":[{"model":"gpt-4o-mini",${usage}}],` +
      `"top_users":[{"user_id":7,"username":"alice",${usage}}],"revenue":130.25}`,
  );
}

const margin = (revenue: string, cost: string, marginValue: string) =>
  `"requests":2,"revenue":${revenue},"cost":${cost},"margin":${marginValue},"uncosted_requests":0,"uncosted_revenue":0`;
const margins = json(
  `{"from":"${day(30)}","to":"${now.toISOString()}","total":{${margin('12.000001', '10.5', '1.500001')},"uncosted_requests":1,"uncosted_revenue":0.25},` +
    `"by_model":[{"model":"gpt-4o",${margin('9', '7.25', '1.75')}},{"model":"o3-mini",${margin('3.000001', '3.25', '-0.249999')}}],` +
    `"by_channel":[{"channel":"cheap",${margin('11.75', '10.5', '1.25')}},{"channel":null,${margin('0.25', '0', '0.25')}}]}`,
);

const order = (id: number, amount: string, money: string, paidDaysAgo: number) => ({
  id,
  out_trade_no: `epay-${id}`,
  user_id: 7,
  amount,
  money,
  payment_type: 'alipay',
  status: 'paid',
  trade_no: `T${id}`,
  created_at: day(paidDaysAgo),
  paid_at: day(paidDaysAgo),
  completed_by: null,
  note: null,
});

describe('AdminStatsPage', () => {
  it('titles the cards with the chosen period and splits the credit added', async () => {
    session.start('tok');
    const calls = mockApi({
      'GET /api/stats/admin/overview': (c) => overview(`${c.query.get('from')}T00:00:00Z`),
      'GET /api/stats/admin/margins': margins,
      'GET /api/admin/recharge-orders': json(
        `{"items":[${JSON.stringify(order(2, '20', '146.00', 1))},${JSON.stringify(order(1, '10.25', '74.83', 2))},` +
          `${JSON.stringify(order(0, '5', '36.50', 60))}],"total":3,"page":1,"page_size":200}`,
      ),
    });
    renderPage(<AdminStatsPage />, { path: '/admin/stats' });
    const card = await screen.findByTestId('range-card');
    expect(within(card).getByText('Last 30 days')).toBeInTheDocument();
    const revenue = await within(card).findByTestId('revenue');
    expect(within(revenue).getByText('130.25')).toBeInTheDocument();
    // Two orders paid in the last 30 days: 30.25 credits bought for ¥220.83; the rest was granted.
    expect(await within(revenue).findByText('30.25')).toBeInTheDocument();
    expect(within(revenue).getByText('220.83')).toBeInTheDocument();
    expect(within(revenue).getByText('100')).toBeInTheDocument();
    expect(calls.find((c) => c.path === '/api/admin/recharge-orders')!.query.get('status')).toBe('paid');

    await user.click(screen.getByText('Last 7 days'));
    await waitFor(() => expect(within(screen.getByTestId('range-card')).getByText('Last 7 days')).toBeInTheDocument());
    const from = calls.filter((c) => c.path === '/api/stats/admin/overview').at(-1)!.query.get('from')!;
    expect(Math.round((Date.parse(now.toISOString().slice(0, 10)) - Date.parse(from)) / 86_400_000)).toBe(6);
    expect(within(screen.getByTestId('range-card')).queryByText('Last 30 days')).toBeNull();
  });

  it('shows revenue, cost and margin in all, per model and per channel, exactly', async () => {
    session.start('tok');
    const calls = mockApi({
      'GET /api/stats/admin/overview': (c) => overview(`${c.query.get('from')}T00:00:00Z`),
      'GET /api/stats/admin/margins': margins,
      'GET /api/admin/recharge-orders': json('{"items":[],"total":0,"page":1,"page_size":200}'),
    });
    renderPage(<AdminStatsPage />, { path: '/admin/stats' });
    const card = await screen.findByTestId('margins');
    expect(await within(card).findByText('12.000001')).toBeInTheDocument();
    expect(within(card).getByText('1.500001')).toBeInTheDocument();
    const row = (name: string) => within(card).getByText(name).closest('tr')!;
    expect(within(row('o3-mini')).getByText('-0.249999')).toBeInTheDocument();
    expect(within(row('gpt-4o')).getByText('1.75')).toBeInTheDocument();
    expect(within(row('cheap')).getByText('10.5')).toBeInTheDocument();
    expect(within(row('(no channel)')).getAllByText('0.25')).toHaveLength(2);
    const from = calls.find((c) => c.path === '/api/stats/admin/margins')!.query.get('from');
    expect(from).toBe(calls.find((c) => c.path === '/api/stats/admin/overview')!.query.get('from'));
  });

  it('speaks Chinese on the margins card', async () => {
    session.start('tok');
    mockApi({
      'GET /api/stats/admin/overview': (c) => overview(`${c.query.get('from')}T00:00:00Z`),
      'GET /api/stats/admin/margins': margins,
      'GET /api/admin/recharge-orders': json('{"items":[],"total":0,"page":1,"page_size":200}'),
    });
    renderPage(<AdminStatsPage />, { path: '/admin/stats', locale: 'zh-CN' });
    const card = await screen.findByTestId('margins');
    expect(await within(card).findByText('按渠道的毛利')).toBeInTheDocument();
    expect(within(card).getByText('（无渠道）')).toBeInTheDocument();
  });
});
