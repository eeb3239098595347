// Usage against a limit: a bar where a limit exists, the plain figure where it does not.
import { Progress, Typography } from 'antd';
import type { ReactNode } from 'react';
import { ratio, type Decimal } from '../lib/money';

interface Props {
  used: Decimal | number;
  limit: Decimal | number | null | undefined;
  /** How to show a figure (exact money or a count). */
  render: (value: Decimal | number) => ReactNode;
}

export function UsageBar({ used, limit, render }: Props) {
  if (limit === null || limit === undefined) {
    return <Typography.Text>{render(used)}</Typography.Text>;
  }
  const share = ratio(used, limit);
  return (
    <div style={{ minWidth: 140 }}>
      <Typography.Text style={{ fontSize: 12 }}>
        {render(used)} / {render(limit)}
      </Typography.Text>
      <Progress
        percent={Math.round(share * 1000) / 10}
        size="small"
        showInfo={false}
        status={share >= 1 ? 'exception' : 'normal'}
        strokeColor={share >= 0.9 && share < 1 ? '#faad14' : undefined}
      />
    </div>
  );
}
