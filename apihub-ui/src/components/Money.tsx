// An exact amount of credits, as the server sent it.
import { Typography } from 'antd';
import { formatMoney, signOf, type Decimal, type FormatOptions } from '../lib/money';

interface Props extends FormatOptions {
  value: Decimal | number | null | undefined;
  /** Colour positive green and negative red (ledger amounts). */
  colored?: boolean;
  strong?: boolean;
}

export function Money({ value, colored, strong, ...options }: Props) {
  const text = formatMoney(value, options);
  const sign = signOf(value);
  const type = colored ? (sign > 0 ? 'success' : sign < 0 ? 'danger' : undefined) : undefined;
  return (
    <Typography.Text className="money" type={type} strong={strong} title={value == null ? undefined : String(value)}>
      {text}
    </Typography.Text>
  );
}
