// An administrator's view of a discount rate: the rate they set, and what it means.
import { Typography } from 'antd';
import { useT } from '../i18n';
import { discountText, percentOff } from '../lib/discount';
import { formatMoney, type Decimal } from '../lib/money';

export function DiscountRate({ value }: { value: Decimal | number | null | undefined }) {
  const t = useT();
  if (value == null) return <>—</>;
  if (percentOff(value) === '0') return <Typography.Text type="secondary">{t('dashboard.noDiscount')}</Typography.Text>;
  return (
    <span style={{ whiteSpace: 'nowrap' }}>
      <span className="num">{formatMoney(value)}</span>{' '}
      <Typography.Text type="secondary" style={{ fontSize: 12 }}>
        {discountText(t, value)}
      </Typography.Text>
    </span>
  );
}
