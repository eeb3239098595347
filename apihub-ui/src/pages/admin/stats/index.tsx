// /admin/stats: the whole site's usage over a chosen period (its title says which): totals,
// today, per day, top users and models, the credit added, split into what was bought online
// (with the money received) and what administrators and redemption codes granted, and the revenue,
// cost and margin per model and per channel.
import { useQuery } from '@tanstack/react-query';
import { Card, Col, Empty, Row, Statistic, Table, Typography } from 'antd';
import type { ColumnsType } from 'antd/es/table';
import { useMemo, useState } from 'react';
import { Link } from 'react-router';
import { statsApi } from '../../../api';
import type { Schemas } from '../../../api/client';
import type { UsageSummary } from '../../../api/stats';
import { BarChart } from '../../../components/BarChart';
import { ErrorAlert } from '../../../components/ErrorAlert';
import { Money } from '../../../components/Money';
import { PageContainer } from '../../../components/PageContainer';
import { Payment } from '../../../components/recharge/orders';
import { RangeSelect, rangeQuery, rangeTitle, useDayRange } from '../../../components/stats/range';
import { MetricSwitch, metricOf, modelColumns, type Metric } from '../../../components/stats/usage';
import { useI18n, type Locale, type Translate } from '../../../i18n';
import { formatCount, formatDay } from '../../../lib/format';
import { columnFraction, formatMoney } from '../../../lib/money';
import { MarginsCard } from './margins';
import { remainder, useOnlineRevenue } from './revenue';

type UserUsage = Schemas['UserUsage'];
type RouteUsage = Schemas['RouteUsage'];

export const topUserColumns = (t: Translate, locale: Locale, users: UserUsage[] = []): ColumnsType<UserUsage> => [
  {
    title: t('auth.username'),
    dataIndex: 'username',
    key: 'username',
    ellipsis: true,
    render: (v: string, r) => <Link to={`/admin/users/${r.user_id}/usage`}>{`${v} (#${r.user_id})`}</Link>,
  },
  { title: t('stats.requests'), dataIndex: 'requests', key: 'requests', align: 'right', width: 90, render: (v: number) => <span className="num">{formatCount(v, locale)}</span> },
  { title: t('stats.tokens'), dataIndex: 'total_tokens', key: 'total_tokens', align: 'right', width: 110, render: (v: number) => <span className="num">{formatCount(v, locale)}</span> },
  { title: t('stats.rawCost'), dataIndex: 'raw_cost', key: 'raw_cost', align: 'right', width: 130, render: (v: string) => <Money value={v} fraction={columnFraction(users.map((u) => u.raw_cost))} /> },
  { title: t('stats.charged'), dataIndex: 'charged', key: 'charged', align: 'right', width: 130, render: (v: string) => <Money value={v} strong fraction={columnFraction(users.map((u) => u.charged))} /> },
];

export const routeColumns = (t: Translate, locale: Locale, routes: RouteUsage[] = []): ColumnsType<RouteUsage> => [
  { title: t('adminStats.route'), dataIndex: 'name', key: 'name', ellipsis: true, render: (v: string, r) => `${v || '—'} (#${r.route_id})` },
  { title: t('adminStats.calls'), dataIndex: 'requests', key: 'requests', align: 'right', width: 90, render: (v: number) => <span className="num">{formatCount(v, locale)}</span> },
  { title: t('adminStats.succeeded'), dataIndex: 'succeeded', key: 'succeeded', align: 'right', width: 90, render: (v: number) => <span className="num">{formatCount(v, locale)}</span> },
  { title: t('stats.charged'), dataIndex: 'charged', key: 'charged', align: 'right', width: 130, render: (v: string) => <Money value={v} strong fraction={columnFraction(routes.map((r) => r.charged))} /> },
];

function SummaryCards({ summary, t, locale }: { summary: UsageSummary; t: Translate; locale: Locale }) {
  return (
    <Row gutter={[16, 16]}>
      <Col xs={12} md={6}>
        <Statistic title={t('stats.requests')} value={formatCount(summary.requests, locale)} />
      </Col>
      <Col xs={12} md={6}>
        <Statistic title={t('stats.succeeded')} value={formatCount(summary.succeeded, locale)} />
      </Col>
      <Col xs={12} md={6}>
        <Statistic title={t('stats.tokens')} value={formatCount(summary.total_tokens, locale)} />
      </Col>
      <Col xs={12} md={6}>
        <Statistic title={t('stats.charged')} valueRender={() => <Money value={summary.charged} strong />} />
      </Col>
    </Row>
  );
}

export default function AdminStatsPage() {
  const { t, locale } = useI18n();
  const [range, setRange] = useDayRange(30);
  const [metric, setMetric] = useState<Metric>('charged');
  const overview = useQuery(statsApi.overviewQuery(rangeQuery(range)));
  const data = overview.data;
  const online = useOnlineRevenue(data ? { from: data.from, to: data.to } : undefined);
  const bars = useMemo(
    () => (data?.by_day ?? []).map((d) => ({ label: formatDay(d.date, locale), ...metricOf(d, metric, locale) })),
    [data, metric, locale],
  );
  const maxCharged = Math.max(0, ...(data?.by_model ?? []).map((m) => Number(m.charged)));
  const title = rangeTitle(t, locale, range);
  return (
    <PageContainer title={t('adminStats.title')} extra={<RangeSelect value={range} onChange={setRange} />}>
      {overview.isError ? <ErrorAlert error={overview.error} onRetry={() => overview.refetch()} /> : null}
      <Row gutter={[16, 16]}>
        <Col xs={24} lg={16}>
          <Card title={title} loading={overview.isPending} data-testid="range-card">
            {data ? <SummaryCards summary={data.summary} t={t} locale={locale} /> : null}
            {data ? (
              <Row gutter={[16, 16]} style={{ marginTop: 16 }} data-testid="revenue">
                <Col xs={12} md={6}>
                  <Statistic title={t('stats.rawCost')} valueRender={() => <Money value={data.summary.raw_cost} />} />
                </Col>
                <Col xs={12} md={6}>
                  <Statistic title={t('adminStats.creditAdded')} valueRender={() => <Money value={data.revenue} strong />} />
                </Col>
                <Col xs={12} md={6}>
                  <Statistic
                    title={t('adminStats.paidOnline')}
                    loading={online.isPending}
                    valueRender={() => (online.data ? <Money value={online.data.credits} /> : <span>—</span>)}
                  />
                  {online.data ? (
                    <Typography.Text type="secondary" style={{ fontSize: 12 }}>
                      {t('adminStats.moneyReceived')} <Payment value={online.data.money} />
                    </Typography.Text>
                  ) : null}
                </Col>
                <Col xs={12} md={6}>
                  <Statistic
                    title={t('adminStats.grants')}
                    loading={online.isPending}
                    valueRender={() => (online.data ? <Money value={remainder(data.revenue, online.data.credits)} /> : <span>—</span>)}
                  />
                </Col>
                <Col span={24}>
                  <Typography.Text type="secondary" style={{ fontSize: 12 }}>
                    {t('adminStats.splitNote')}
                    {online.data && !online.data.complete ? ` ${t('adminStats.splitPartial', { n: online.data.orders })}` : ''}
                  </Typography.Text>
                </Col>
              </Row>
            ) : null}
          </Card>
        </Col>
        <Col xs={24} lg={8}>
          <Card title={t('adminStats.today')} loading={overview.isPending}>
            {data ? (
              <Row gutter={[16, 16]}>
                <Col span={12}>
                  <Statistic title={t('stats.requests')} value={formatCount(data.today.requests, locale)} />
                </Col>
                <Col span={12}>
                  <Statistic title={t('stats.charged')} valueRender={() => <Money value={data.today.charged} strong />} />
                </Col>
                <Col span={12}>
                  <Statistic title={t('stats.tokens')} value={formatCount(data.today.total_tokens, locale)} />
                </Col>
                <Col span={12}>
                  <Statistic title={t('stats.succeeded')} value={formatCount(data.today.succeeded, locale)} />
                </Col>
              </Row>
            ) : null}
          </Card>
        </Col>
        <Col span={24}>
          <Card title={`${title} · ${t('usage.perDay')}`} extra={<MetricSwitch value={metric} onChange={setMetric} />} loading={overview.isPending}>
            <BarChart data={bars} emptyText={t('dashboard.noUsage')} ariaLabel={t('usage.perDay')} />
            <Typography.Text type="secondary" style={{ fontSize: 12 }}>
              {t('dashboard.utcNote')}
            </Typography.Text>
          </Card>
        </Col>
        <Col xs={24} xl={12}>
          <Card title={`${t('adminStats.topUsers')} · ${title}`}>
            <Table<UserUsage>
              size="small"
              rowKey="user_id"
              loading={overview.isPending}
              pagination={false}
              columns={topUserColumns(t, locale, data?.top_users)}
              dataSource={data?.top_users ?? []}
              scroll={{ x: 600 }}
              locale={{ emptyText: <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={t('dashboard.noUsage')} /> }}
            />
          </Card>
        </Col>
        <Col xs={24} xl={12}>
          <Card title={`${t('usage.perModelShare')} · ${title}`}>
            <Table
              size="small"
              rowKey="model"
              loading={overview.isPending}
              pagination={false}
              columns={modelColumns(t, locale, maxCharged)}
              dataSource={data?.by_model ?? []}
              scroll={{ x: 420 }}
              locale={{ emptyText: <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={t('dashboard.noUsage')} /> }}
            />
          </Card>
        </Col>
        <Col span={24}>
          <Card title={`${t('adminStats.byRoute')} · ${title}`} data-testid="by-route">
            <Table<RouteUsage>
              size="small"
              rowKey="route_id"
              loading={overview.isPending}
              pagination={false}
              columns={routeColumns(t, locale, data?.by_route)}
              dataSource={data?.by_route ?? []}
              scroll={{ x: 500 }}
              locale={{ emptyText: <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={t('dashboard.noUsage')} /> }}
            />
          </Card>
        </Col>
        <Col span={24}>
          <MarginsCard range={rangeQuery(range)} title={title} />
        </Col>
      </Row>
      {data ? (
        <Typography.Paragraph type="secondary" style={{ marginTop: 12, fontSize: 12 }}>
          {t('adminStats.rangeNote', { from: data.from.slice(0, 10), to: data.to.slice(0, 10), charged: formatMoney(data.summary.charged) })}
        </Typography.Paragraph>
      ) : null}
    </PageContainer>
  );
}
