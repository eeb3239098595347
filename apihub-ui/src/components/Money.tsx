// An exact amount of credits, as the server sent it.
import { Typography } from 'antd';
import { formatMoney, signOf, type Decimal, type FormatOptions } from '../lib/money';

interface Props extends FormatOptions {
  value: Decimal | number | null | undefined;
  /** Colour positive green and negative red (ledger amounts). */
  colored?: boolean;
  strong?: boolean;
  /**
   * The column's widest fraction (see `columnFraction`): shorter fractions get invisible room up to
   * it, so decimal points line up down a right-aligned column while the text stays the exact figure.
   */
  fraction?: number;
}

export function Money({ value, colored, strong, fraction, ...options }: Props) {
  const text = formatMoney(value, options);
  const sign = signOf(value);
  const type = colored ? (sign > 0 ? 'success' : sign < 0 ? 'danger' : undefined) : undefined;
  const point = text.indexOf('.');
  const shown = point < 0 ? 0 : text.length - point - 1;
  // Drawn by CSS (`.money-pad::after`), so it is not part of the text that is read or copied.
  const pad = fraction && fraction > shown && text !== '—' ? `${point < 0 ? '.' : ''}${'0'.repeat(fraction - shown)}` : '';
  return (
    <Typography.Text className="money" type={type} strong={strong} title={value == null ? undefined : String(value)}>
      {text}
      {pad ? <span className="money-pad" data-pad={pad} aria-hidden /> : null}
    </Typography.Text>
  );
}
