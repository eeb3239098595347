// A budget's current window: used against each limit it sets (bars, exact money) and when it resets,
// in the gateway's time zone. Used by the budgets dialogs and the dashboard.
import { Col, Empty, Row, Space, Typography } from 'antd';
import type { ReactNode } from 'react';
import type { Budget, BudgetList } from '../../api/budgets';
import { useI18n, type MessageKey } from '../../i18n';
import { formatCount, formatDateTimeIn } from '../../lib/format';
import { formatMoney } from '../../lib/money';
import { UsageBar } from '../UsageBar';

/** One budget: a bar per limit it sets, and the reset time. */
export function BudgetWindow({ budget, timeZone, title }: { budget: Budget; timeZone: string; title?: ReactNode }) {
  const { t, locale } = useI18n();
  const count = (v: string | number) => formatCount(Number(v), locale);
  const money = (v: string | number) => formatMoney(v);
  const limits: { label: MessageKey; used: string | number; limit: string | number; render: (v: string | number) => string }[] = [];
  if (budget.credit_limit != null) limits.push({ label: 'budgets.credits', used: budget.credit_used, limit: budget.credit_limit, render: money });
  if (budget.token_limit != null) limits.push({ label: 'budgets.tokens', used: budget.tokens_used, limit: budget.token_limit, render: count });
  if (budget.call_limit != null) limits.push({ label: 'budgets.calls', used: budget.calls_used, limit: budget.call_limit, render: count });
  return (
    <div data-testid={`budget-${budget.period}`}>
      <Space wrap size={[8, 0]} style={{ marginBottom: 4 }}>
        {title}
        <Typography.Text type="secondary" style={{ fontSize: 12 }} data-testid={`budget-${budget.period}-resets`}>
          {t('budgets.resets', { at: formatDateTimeIn(budget.resets_at, locale, timeZone) })}
        </Typography.Text>
      </Space>
      <Row gutter={[16, 8]}>
        {limits.map((l) => (
          <Col xs={24} sm={8} key={l.label}>
            <Typography.Text type="secondary" style={{ fontSize: 12, display: 'block' }}>
              {t(l.label)}
            </Typography.Text>
            <UsageBar used={l.used} limit={l.limit} render={l.render} />
          </Col>
        ))}
      </Row>
    </div>
  );
}

const PERIOD_LABEL = { day: 'budgets.day', week: 'budgets.week', month: 'budgets.month' } as const satisfies Record<string, MessageKey>;

/** The label of a period as the server names it (`day`, `week`, `month`); an unknown one as sent. */
export function usePeriodLabel(): (period: string) => string {
  const { t } = useI18n();
  return (period) => (period in PERIOD_LABEL ? t(PERIOD_LABEL[period as keyof typeof PERIOD_LABEL]) : period);
}

/** Every budget of a list, each under its period's name; an empty list says so. */
export function BudgetUsage({ list }: { list: BudgetList }) {
  const { t } = useI18n();
  const label = usePeriodLabel();
  if (!list.budgets.length) {
    return <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={t('budgets.none')} />;
  }
  return (
    <Space direction="vertical" size={16} style={{ width: '100%' }}>
      {list.budgets.map((b) => (
        <BudgetWindow key={b.period} budget={b} timeZone={list.time_zone} title={<Typography.Text strong>{label(b.period)}</Typography.Text>} />
      ))}
    </Space>
  );
}
