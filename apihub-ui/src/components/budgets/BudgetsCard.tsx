// A card of an owner's budgets (used / limit, reset time), shown only when there are any:
// the dashboard (the user's own) and the key and user usage pages.
import { Card, Typography } from 'antd';
import type { CSSProperties } from 'react';
import type { BudgetList } from '../../api/budgets';
import { BudgetUsage } from './BudgetUsage';

interface Props {
  list: BudgetList | undefined;
  title: string;
  /** Under the title: what the budgets cap and the windows' zone. */
  hint: string;
  testId?: string;
  style?: CSSProperties;
}

export function BudgetsCard({ list, title, hint, testId, style }: Props) {
  if (!list?.budgets.length) return null;
  return (
    <Card title={title} data-testid={testId} style={style}>
      <Typography.Paragraph type="secondary" style={{ fontSize: 12 }}>
        {hint}
      </Typography.Paragraph>
      <BudgetUsage list={list} />
    </Card>
  );
}
