import { screen, waitFor } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { session } from '../../api';
import { json, mockApi } from '../../test/api';
import { renderPage } from '../../test/render';
import { fillIn } from '../../test/user';
import ModelsPage from '.';

const PRICES = '[{"model":"gpt-4o-mini","input_price":0.15,"output_price":0.6},{"model":"claude-x","input_price":3,"output_price":15}]';

describe('ModelsPage', () => {
  it('searches models, offers to copy each name, and prices them in money where credit is sold', async () => {
    session.start('tok');
    mockApi({
      'GET /api/prices': json(PRICES),
      'GET /api/tokens/recharge/options': json('{"enabled":true,"min_amount":1,"max_amount":1000,"price":7.3,"payment_types":["alipay"]}'),
    });
    renderPage(<ModelsPage />, { path: '/models' });
    expect(await screen.findByText('claude-x')).toBeInTheDocument();
    expect(screen.getAllByLabelText('Copy the model name')).toHaveLength(2);
    // 3 × 7.3 = 21.9 and 15 × 7.3 = 109.5 per million tokens.
    await waitFor(() => expect(screen.getAllByTestId('price-money')[1]).toHaveTextContent('¥21.90 / ¥109.50'));
    expect(screen.getByText(/1 credit = ¥7.3/)).toBeInTheDocument();
    await fillIn(screen.getByLabelText('Search models'), 'GPT');
    await waitFor(() => expect(screen.queryByText('claude-x')).toBeNull());
    expect(screen.getByText('gpt-4o-mini')).toBeInTheDocument();
  });
});
