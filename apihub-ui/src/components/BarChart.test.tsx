import { render, screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { BarChart } from './BarChart';

const bars = [
  { label: '1 Jun', value: 0.5, display: '0.5' },
  { label: '2 Jun', value: 12.25, display: '12.25' },
  { label: '3 Jun', value: 0, display: '0' },
];

describe('BarChart', () => {
  it('draws a value axis from 0 to the highest exact figure, and labels every bar', () => {
    render(<BarChart data={bars} ariaLabel="Spend per day" unit="credits" />);
    const chart = screen.getByRole('img', { name: 'Spend per day' });
    expect(screen.getByTestId('axis-zero')).toHaveTextContent('0');
    expect(screen.getByTestId('axis-max')).toHaveTextContent('12.25');
    expect(screen.getAllByTestId('bar-value').map((e) => e.textContent)).toEqual(['0.5', '12.25']);
    expect(chart.querySelectorAll('rect')).toHaveLength(3);
    expect(chart.querySelector('rect[data-value="12.25"] title')).toHaveTextContent('2 Jun: 12.25 credits');
    for (const label of ['1 Jun', '2 Jun', '3 Jun']) expect(screen.getByText(label)).toBeInTheDocument();
    // Drawn at its real size: text is never stretched.
    expect(chart.getAttribute('preserveAspectRatio')).toBeNull();
  });

  it('thins the date labels and drops bar figures when bars are narrow', () => {
    const many = Array.from({ length: 90 }, (_, i) => ({ label: `${i + 1} Jun`, value: i + 1, display: String(i + 1) }));
    render(<BarChart data={many} />);
    expect(screen.queryAllByTestId('bar-value')).toHaveLength(0);
    expect(screen.getByTestId('axis-max')).toHaveTextContent('90');
    const shown = many.filter((b) => screen.queryByText(b.label)).length;
    expect(shown).toBeGreaterThan(3);
    expect(shown).toBeLessThan(30);
  });

  it('says so when there is nothing to draw', () => {
    render(<BarChart data={[{ label: 'x', value: 0, display: '0' }]} emptyText="No usage yet" />);
    expect(screen.getByText('No usage yet')).toBeInTheDocument();
  });
});
