// /admin/stats: the whole site's usage over a range: totals, today, per day, top users and
// models, and revenue (credit recharged).
import { useQuery } from '@tanstack/react-query';
import { Card, Col, DatePicker, Empty, Row, Skeleton, Statistic, Table, Typography } from 'antd';
import type { ColumnsType } from 'antd/es/table';
import dayjs, { type Dayjs } from 'dayjs';
import { useMemo, useState } from 'react';
import { statsApi } from '../../../api';
import type { UsageSummary } from '../../../api/stats';
import type { Schemas } from '../../../api/client';
import { BarChart } from '../../../components/BarChart';
import { ErrorAlert } from '../../../components/ErrorAlert';
import { Money } from '../../../components/Money';
import { PageContainer } from '../../../components/PageContainer';
import { useI18n, type Locale, type Translate } from '../../../i18n';
import { formatCount } from '../../../lib/format';
import { formatMoney } from '../../../lib/money';
import { MetricSwitch, metricOf, modelColumns, type Metric } from '../../../components/stats/usage';

type UserUsage = Schemas['UserUsage'];

export const topUserColumns = (t: Translate, locale: Locale): ColumnsType<UserUsage> => [
  { title: t('auth.username'), dataIndex: 'username', key: 'username', render: (v: string, r) => `${v} (#${r.user_id})` },
  { title: t('stats.requests'), dataIndex: 'requests', key: 'requests', align: 'right', render: (v: number) => formatCount(v, locale) },
  { title: t('stats.tokens'), dataIndex: 'total_tokens', key: 'total_tokens', align: 'right', render: (v: number) => formatCount(v, locale) },
  { title: t('stats.rawCost'), dataIndex: 'raw_cost', key: 'raw_cost', align: 'right', render: (v: string) => <Money value={v} /> },
  { title: t('stats.charged'), dataIndex: 'charged', key: 'charged', align: 'right', render: (v: string) => <Money value={v} strong /> },
];

function SummaryCards({ summary, t, locale, prefix }: { summary: UsageSummary; t: Translate; locale: Locale; prefix: string }) {
  return (
    <Row gutter={[16, 16]}>
      <Col xs={12} md={6}>
        <Statistic title={`${prefix}${t('stats.requests')}`} value={formatCount(summary.requests, locale)} />
      </Col>
      <Col xs={12} md={6}>
        <Statistic title={`${prefix}${t('stats.succeeded')}`} value={formatCount(summary.succeeded, locale)} />
      </Col>
      <Col xs={12} md={6}>
        <Statistic title={`${prefix}${t('stats.tokens')}`} value={formatCount(summary.total_tokens, locale)} />
      </Col>
      <Col xs={12} md={6}>
        <Statistic title={`${prefix}${t('stats.charged')}`} valueRender={() => <Money value={summary.charged} strong />} />
      </Col>
    </Row>
  );
}

export default function AdminStatsPage() {
  const { t, locale } = useI18n();
  const [range, setRange] = useState<[Dayjs, Dayjs]>(() => [dayjs().subtract(29, 'day'), dayjs()]);
  const [metric, setMetric] = useState<Metric>('charged');
  const query = { from: range[0].format('YYYY-MM-DD'), to: range[1].format('YYYY-MM-DD') };
  const overview = useQuery(statsApi.overviewQuery(query));
  const data = overview.data;
  const bars = useMemo(
    () => (data?.by_day ?? []).map((d) => ({ label: d.date.slice(5), ...metricOf(d, metric, locale) })),
    [data, metric, locale],
  );
  const maxCharged = Math.max(0, ...(data?.by_model ?? []).map((m) => Number(m.charged)));
  return (
    <PageContainer
      title={t('adminStats.title')}
      extra={
        <DatePicker.RangePicker
          value={range}
          allowClear={false}
          onChange={(v) => v && v[0] && v[1] && setRange([v[0], v[1]])}
          disabledDate={(d) => d.isAfter(dayjs(), 'day')}
        />
      }
    >
      {overview.isError ? <ErrorAlert error={overview.error} onRetry={() => overview.refetch()} /> : null}
      <Row gutter={[16, 16]}>
        <Col xs={24} lg={16}>
          <Card title={t('adminStats.range')} loading={overview.isPending}>
            {data ? <SummaryCards summary={data.summary} t={t} locale={locale} prefix="" /> : null}
            {data ? (
              <Row gutter={16} style={{ marginTop: 16 }}>
                <Col xs={12} md={6}>
                  <Statistic title={t('stats.rawCost')} valueRender={() => <Money value={data.summary.raw_cost} />} />
                </Col>
                <Col xs={12} md={6}>
                  <Statistic title={t('adminStats.revenue')} valueRender={() => <Money value={data.revenue} strong />} />
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
          <Card
            title={t('dashboard.perDay')}
            extra={<MetricSwitch value={metric} onChange={setMetric} />}
          >
            {overview.isPending ? <Skeleton active /> : <BarChart data={bars} emptyText={t('dashboard.noUsage')} ariaLabel={t('dashboard.perDay')} />}
            <Typography.Text type="secondary" style={{ fontSize: 12 }}>
              {t('dashboard.utcNote')}
            </Typography.Text>
          </Card>
        </Col>
        <Col xs={24} xl={12}>
          <Card title={t('adminStats.topUsers')}>
            <Table<UserUsage>
              size="small"
              rowKey="user_id"
              loading={overview.isPending}
              pagination={false}
              columns={topUserColumns(t, locale)}
              dataSource={data?.top_users ?? []}
              locale={{ emptyText: <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={t('dashboard.noUsage')} /> }}
            />
          </Card>
        </Col>
        <Col xs={24} xl={12}>
          <Card title={t('dashboard.perModel')}>
            <Table
              size="small"
              rowKey="model"
              loading={overview.isPending}
              pagination={false}
              columns={modelColumns(t, locale, maxCharged)}
              dataSource={data?.by_model ?? []}
              locale={{ emptyText: <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={t('dashboard.noUsage')} /> }}
            />
          </Card>
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
