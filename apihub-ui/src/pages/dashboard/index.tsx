// /: the balance (and what requests in flight hold of it), today's calls and spend, the user's own
// budgets (when an administrator has set any), and the last 30 days per day and per model.
import { useQuery } from '@tanstack/react-query';
import { Card, Col, Empty, Row, Skeleton, Statistic, Table, Typography } from 'antd';
import { useMemo, useState } from 'react';
import { Link } from 'react-router';
import { budgetsApi, creditApi, statsApi } from '../../api';
import type { ModelUsage } from '../../api/stats';
import { BarChart } from '../../components/BarChart';
import { BudgetsCard } from '../../components/budgets/BudgetsCard';
import { ErrorAlert } from '../../components/ErrorAlert';
import { Money } from '../../components/Money';
import { PageContainer } from '../../components/PageContainer';
import { EMPTY_USAGE, MetricSwitch, metricOf, modelColumns, type Metric } from '../../components/stats/usage';
import { useI18n } from '../../i18n';
import { discountText } from '../../lib/discount';
import { formatCount, formatDay, utcToday } from '../../lib/format';
import { formatMoney } from '../../lib/money';

export default function DashboardPage() {
  const { t, locale } = useI18n();
  const balance = useQuery(creditApi.balanceQuery());
  const stats = useQuery(statsApi.myStatsQuery());
  const budgets = useQuery(budgetsApi.myBudgetsQuery());
  const [metric, setMetric] = useState<Metric>('charged');

  const today = useMemo(() => {
    const date = utcToday();
    return stats.data?.by_day.find((d) => d.date === date) ?? EMPTY_USAGE;
  }, [stats.data]);
  const bars = useMemo(
    () => (stats.data?.by_day ?? []).map((d) => ({ label: formatDay(d.date, locale), ...metricOf(d, metric, locale) })),
    [stats.data, metric, locale],
  );
  const maxCharged = Math.max(0, ...(stats.data?.by_model ?? []).map((m) => Number(m.charged)));

  return (
    <PageContainer title={t('dashboard.title')}>
      {balance.isError ? <ErrorAlert error={balance.error} onRetry={() => balance.refetch()} /> : null}
      {stats.isError ? <ErrorAlert error={stats.error} onRetry={() => stats.refetch()} /> : null}
      {budgets.isError ? <ErrorAlert error={budgets.error} onRetry={() => budgets.refetch()} /> : null}
      <Row gutter={[16, 16]}>
        <Col xs={24} sm={12} lg={6}>
          <Card loading={balance.isPending} data-testid="balance-card">
            <Statistic
              title={t('dashboard.balance')}
              valueRender={() => (
                <span data-testid="balance-amount">
                  <Money value={balance.data?.token_balance} strong />
                </span>
              )}
            />
            <Typography.Text type="secondary" style={{ fontSize: 12 }}>
              {t('dashboard.recharged')} <Money value={balance.data?.total_recharged} /> · {t('dashboard.consumed')}{' '}
              <Money value={balance.data?.total_consumed} />
            </Typography.Text>
            <Typography.Text type="secondary" style={{ fontSize: 12, display: 'block' }} data-testid="balance-held">
              {t('dashboard.held')} <Money value={balance.data?.reserved} /> · {t('dashboard.available')}{' '}
              <Money value={balance.data?.available} />
            </Typography.Text>
          </Card>
        </Col>
        <Col xs={24} sm={12} lg={6}>
          <Card loading={stats.isPending} data-testid="today-calls">
            <Statistic title={t('dashboard.todayCalls')} value={formatCount(today.requests, locale)} />
            <Typography.Text type="secondary" style={{ fontSize: 12 }}>
              {t('dashboard.succeeded')} {formatCount(today.succeeded, locale)}
            </Typography.Text>
          </Card>
        </Col>
        <Col xs={24} sm={12} lg={6}>
          <Card loading={stats.isPending} data-testid="today-spend">
            <Statistic title={t('dashboard.todaySpend')} valueRender={() => <Money value={today.charged} strong />} />
            <Typography.Text type="secondary" style={{ fontSize: 12 }}>
              {t('dashboard.beforeDiscount')} <Money value={today.raw_cost} />
            </Typography.Text>
          </Card>
        </Col>
        <Col xs={24} sm={12} lg={6}>
          <Card loading={stats.isPending} data-testid="today-tokens">
            <Statistic title={t('dashboard.todayTokens')} value={formatCount(today.total_tokens, locale)} />
            <Typography.Text type="secondary" style={{ fontSize: 12 }}>
              {t('dashboard.discount')}{' '}
              <span data-testid="discount">{balance.data ? discountText(t, balance.data.discount_rate) : '—'}</span>
            </Typography.Text>
          </Card>
        </Col>
        {budgets.data?.budgets.length ? (
          <Col xs={24}>
            <BudgetsCard
              list={budgets.data}
              title={t('budgets.mine')}
              hint={t('budgets.mineHint', { zone: budgets.data.time_zone })}
              testId="my-budgets"
            />
          </Col>
        ) : null}
        <Col xs={24} xl={14}>
          <Card
            title={t('dashboard.perDay')}
            extra={<MetricSwitch value={metric} onChange={setMetric} />}
          >
            {stats.isPending ? <Skeleton active /> : <BarChart data={bars} emptyText={t('dashboard.noUsage')} ariaLabel={t('dashboard.perDay')} />}
            <Typography.Text type="secondary" style={{ fontSize: 12 }}>
              {t('dashboard.utcNote')} <Link to="/usage">{t('nav.usage')} →</Link>
            </Typography.Text>
          </Card>
        </Col>
        <Col xs={24} xl={10}>
          <Card title={t('dashboard.perModel')}>
            <Table<ModelUsage>
              size="small"
              rowKey="model"
              loading={stats.isPending}
              pagination={false}
              scroll={{ x: 420 }}
              columns={modelColumns(t, locale, maxCharged)}
              dataSource={stats.data?.by_model ?? []}
              locale={{ emptyText: <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={t('dashboard.noUsage')} /> }}
            />
            {stats.data ? (
              <Typography.Text type="secondary" style={{ fontSize: 12 }} data-testid="period-total">
                {t('dashboard.periodTotal', {
                  calls: formatCount(stats.data.summary.requests, locale),
                  tokens: formatCount(stats.data.summary.total_tokens, locale),
                  spend: formatMoney(stats.data.summary.charged),
                })}
              </Typography.Text>
            ) : null}
          </Card>
        </Col>
      </Row>
    </PageContainer>
  );
}
