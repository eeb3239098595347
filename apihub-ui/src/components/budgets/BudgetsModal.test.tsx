import { screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import { session } from '../../api';
import type { Key } from '../../api/keys';
import { apiError, json, mockApi } from '../../test/api';
import { renderPage } from '../../test/render';
import { fillIn, findButton, findDialog, user } from '../../test/user';
import { KeyBudgetsModal } from '../keys/KeyBudgetsModal';

const KEY = { id: 3, name: 'laptop', key_preview: 'ahg_pub123_…9f2a' } as Key;

// Written the way the server writes them: the largest credit limit, to the last millionth.
const LIST =
  '{"time_zone":"Asia/Shanghai","budgets":[{"period":"day","credit_limit":999999999.999999,"token_limit":null,' +
  '"call_limit":100,"credit_used":0.000001,"tokens_used":0,"calls_used":7,' +
  '"window_start":"2026-12-03T16:00:00Z","resets_at":"2026-12-04T16:00:00Z"}]}';

const open = (onClose = vi.fn()) => {
  renderPage(<KeyBudgetsModal keyView={KEY} onClose={onClose} />);
  return findDialog('Budgets of key laptop');
};

describe('BudgetsModal (a key)', () => {
  it('shows each budget used against its limit and when it resets, in the gateway time zone', async () => {
    session.start('tok');
    mockApi({ 'GET /api/keys/3/budgets': json(LIST) });
    const dialog = await open();
    const day = await within(dialog).findByTestId('budget-day');
    expect(within(day).getByText('0.000001 / 999,999,999.999999')).toBeInTheDocument();
    expect(within(day).getByText('7 / 100')).toBeInTheDocument();
    expect(within(day).getAllByRole('progressbar')).toHaveLength(2);
    expect(within(day).getByTestId('budget-day-resets')).toHaveTextContent('Resets 5 Dec 2026, 00:00 Asia/Shanghai');
    expect(within(dialog).getByText(/Windows follow the time zone Asia\/Shanghai/)).toBeInTheDocument();
    expect(within(dialog).getByLabelText('Credits per day')).toHaveValue('999999999.999999');
    expect(within(dialog).getByLabelText('Daily budget')).toHaveAttribute('aria-checked', 'true');
    expect(within(dialog).getByLabelText('Weekly budget')).toHaveAttribute('aria-checked', 'false');
    expect(within(dialog).queryByLabelText('Credits per week')).toBeNull();
  });

  it('refuses a period without a limit, negative numbers and money past 6 decimals, then sends the PUT', async () => {
    session.start('tok');
    const onClose = vi.fn();
    const calls = mockApi({
      'GET /api/keys/3/budgets': json(LIST),
      'PUT /api/keys/3/budgets': json(LIST),
    });
    const dialog = await open(onClose);
    await waitFor(() => expect(within(dialog).getByLabelText('Credits per day')).toHaveValue('999999999.999999'));

    // A period switched on with no limit.
    await user.click(within(dialog).getByLabelText('Weekly budget'));
    await user.click(await findButton('Save', dialog));
    expect(await within(dialog).findByText('Set at least one limit: credits, tokens or calls')).toBeInTheDocument();

    // A negative count and an amount with 7 decimals.
    await fillIn(within(dialog).getByLabelText('Tokens per week'), '-5');
    await fillIn(within(dialog).getByLabelText('Credits per week'), '1.1234567');
    await user.click(await findButton('Save', dialog));
    expect(await within(dialog).findByText(/A whole number from 0 to/)).toBeInTheDocument();
    expect(await within(dialog).findByText('At most 6 digits after the decimal point')).toBeInTheDocument();
    await waitFor(() => expect(within(dialog).queryByText('Set at least one limit: credits, tokens or calls')).toBeNull());
    expect(calls.some((c) => c.method === 'PUT')).toBe(false);

    // A negative amount.
    await user.clear(within(dialog).getByLabelText('Credits per week'));
    await fillIn(within(dialog).getByLabelText('Credits per week'), '-1');
    await user.click(await findButton('Save', dialog));
    expect(await within(dialog).findByText('Must not be negative')).toBeInTheDocument();

    await user.clear(within(dialog).getByLabelText('Credits per week'));
    await fillIn(within(dialog).getByLabelText('Credits per week'), '0.123456');
    await user.clear(within(dialog).getByLabelText('Tokens per week'));
    await fillIn(within(dialog).getByLabelText('Tokens per week'), '0');
    await user.click(await findButton('Save', dialog));
    await waitFor(() => expect(calls.some((c) => c.method === 'PUT')).toBe(true));
    expect(calls.find((c) => c.method === 'PUT')!.body).toEqual({
      budgets: [
        { period: 'day', credit_limit: '999999999.999999', token_limit: null, call_limit: 100 },
        { period: 'week', credit_limit: '0.123456', token_limit: 0, call_limit: null },
      ],
    });
    expect(await screen.findByText('Budgets saved')).toBeInTheDocument();
    expect(onClose).toHaveBeenCalled();
  });

  it('removes every budget with an empty list, and shows a refusal in Chinese', async () => {
    session.start('tok');
    const calls = mockApi({
      'GET /api/keys/3/budgets': json(LIST),
      'PUT /api/keys/3/budgets': apiError(422, 'validation_error', 'the `day` budget sets no limit: give credit_limit, token_limit or call_limit'),
    });
    renderPage(<KeyBudgetsModal keyView={KEY} onClose={vi.fn()} />, { locale: 'zh-CN' });
    const dialog = await findDialog('密钥 laptop 的预算');
    await waitFor(() => expect(within(dialog).getByLabelText('每日预算')).toHaveAttribute('aria-checked', 'true'));
    await user.click(within(dialog).getByLabelText('每日预算'));
    await user.click(await findButton(/保\s*存/, dialog));
    await waitFor(() => expect(calls.some((c) => c.method === 'PUT')).toBe(true));
    expect(calls.find((c) => c.method === 'PUT')!.body).toEqual({ budgets: [] });
    expect(await within(dialog).findByText('至少设置一项限额：额度、Token 或调用次数')).toBeInTheDocument();
  });
});
