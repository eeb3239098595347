// A figure with a bar showing its share of the largest in its list (per-model spend).
import { Progress, Typography } from 'antd';
import type { ReactNode } from 'react';

export function ShareBar({ share, children }: { share: number; children: ReactNode }) {
  return (
    <div style={{ minWidth: 120 }}>
      <Typography.Text style={{ fontSize: 12 }}>{children}</Typography.Text>
      <Progress percent={Math.round(Math.min(1, Math.max(0, share)) * 1000) / 10} size="small" showInfo={false} />
    </div>
  );
}
