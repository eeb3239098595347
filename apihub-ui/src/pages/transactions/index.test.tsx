import { screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { session } from '../../api';
import { json, mockApi } from '../../test/api';
import { renderPage } from '../../test/render';
import { user } from '../../test/user';
import TransactionsPage from '.';

const PAGE =
  '{"items":[' +
  '{"id":2,"user_id":2,"tx_type":"consume","amount":-0.000123,"balance_before":100.5,"balance_after":100.499877,' +
  '"order_no":null,"description":"gpt-4o-mini","created_at":"2025-01-02T00:00:00Z"},' +
  '{"id":1,"user_id":2,"tx_type":"recharge","amount":100.5,"balance_before":0,"balance_after":100.5,' +
  '"order_no":"ORDER-1001","description":null,"created_at":"2025-01-01T00:00:00Z"}' +
  '],"total":2,"page":1,"page_size":20}';

describe('TransactionsPage', () => {
  it('shows amounts and balances before and after exactly', async () => {
    session.start('tok');
    mockApi({ 'GET /api/tokens/transactions': json(PAGE) });
    renderPage(<TransactionsPage />, { path: '/transactions' });
    const consume = (await screen.findByText('gpt-4o-mini')).closest('tr')!;
    expect(within(consume).getByText('-0.000123')).toBeInTheDocument();
    expect(within(consume).getByText('100.5')).toBeInTheDocument();
    expect(within(consume).getByText('100.499877')).toBeInTheDocument();
    const recharge = screen.getByText('ORDER-1001').closest('tr')!;
    expect(within(recharge).getByText('+100.5')).toBeInTheDocument();
    expect(within(recharge).getByText('Recharge')).toBeInTheDocument();
  });

  it('filters by type', async () => {
    session.start('tok');
    const calls = mockApi({ 'GET /api/tokens/transactions': json('{"items":[],"total":0,"page":1,"page_size":20}') });
    renderPage(<TransactionsPage />, { path: '/transactions' });
    expect(await screen.findByText('No transactions')).toBeInTheDocument();
    await user.click(screen.getByRole('combobox', { name: 'Type' }));
    await user.click(await screen.findByTitle('Refund'));
    await waitFor(() => expect(calls.at(-1)!.query.get('tx_type')).toBe('refund'));
    expect(calls.at(-1)!.query.get('page')).toBe('1');
  });

  it('names the key in a call\'s description, in Chinese too, and lines up decimals', async () => {
    session.start('tok');
    const page =
      '{"items":[{"id":3,"user_id":2,"tx_type":"consume","amount":-0.000123,"balance_before":100.5,' +
      '"balance_after":100.499877,"order_no":null,"description":"gpt-4o-mini via key 7","created_at":"2025-01-02T00:00:00Z"},' +
      '{"id":1,"user_id":2,"tx_type":"recharge","amount":100.5,"balance_before":0,"balance_after":100.5,' +
      '"order_no":null,"description":"redemption code (spring)","created_at":"2025-01-01T00:00:00Z"}],"total":2,"page":1,"page_size":20}';
    mockApi({
      'GET /api/tokens/transactions': json(page),
      'GET /api/keys': json({ items: [{ id: 7, name: '笔记本', key_preview: 'ahg_x…1' }], total: 1, page: 1, page_size: 200 }),
    });
    renderPage(<TransactionsPage />, { path: '/transactions', locale: 'zh-CN' });
    expect(await screen.findByText('gpt-4o-mini，密钥 笔记本')).toBeInTheDocument();
    const recharge = screen.getByText('兑换码（spring）').closest('tr')!;
    // "+100.5" keeps its text; invisible room for five more digits lines it up with -0.000123.
    const amount = within(recharge).getByText('+100.5');
    expect(amount.querySelector('.money-pad')).toHaveAttribute('data-pad', '00000');
  });
});
