// One usage report (`/api/stats/me`, a key's, a user's): totals, per day and per model.
import { Card, Col, Empty, Row, Statistic, Table, Typography } from 'antd';
import { useMemo, useState } from 'react';
import type { ModelUsage, UsageReport } from '../../api/stats';
import { useI18n } from '../../i18n';
import { formatCount, formatDay } from '../../lib/format';
import { BarChart } from '../BarChart';
import { Money } from '../Money';
import { MetricSwitch, metricOf, modelColumns, type Metric } from './usage';

export function UsageReportView({ report, loading, title }: { report?: UsageReport; loading: boolean; title: string }) {
  const { t, locale } = useI18n();
  const [metric, setMetric] = useState<Metric>('charged');
  const bars = useMemo(
    () => (report?.by_day ?? []).map((d) => ({ label: formatDay(d.date, locale), ...metricOf(d, metric, locale) })),
    [report, metric, locale],
  );
  const maxCharged = Math.max(0, ...(report?.by_model ?? []).map((m) => Number(m.charged)));
  const s = report?.summary;
  return (
    <Row gutter={[16, 16]}>
      <Col span={24}>
        <Card title={title} loading={loading} data-testid="usage-summary">
          {s ? (
            <Row gutter={[16, 16]}>
              <Col xs={12} md={6}>
                <Statistic title={t('stats.requests')} value={formatCount(s.requests, locale)} />
              </Col>
              <Col xs={12} md={6}>
                <Statistic title={t('stats.succeeded')} value={formatCount(s.succeeded, locale)} />
              </Col>
              <Col xs={12} md={6}>
                <Statistic title={t('stats.tokens')} value={formatCount(s.total_tokens, locale)} />
              </Col>
              <Col xs={12} md={6}>
                <Statistic title={t('stats.charged')} valueRender={() => <Money value={s.charged} strong />} />
                <Typography.Text type="secondary" style={{ fontSize: 12 }}>
                  {t('stats.rawCost')} <Money value={s.raw_cost} />
                </Typography.Text>
              </Col>
            </Row>
          ) : null}
        </Card>
      </Col>
      <Col xs={24} xl={14}>
        <Card title={t('usage.perDay')} extra={<MetricSwitch value={metric} onChange={setMetric} />} loading={loading}>
          <BarChart data={bars} emptyText={t('dashboard.noUsage')} ariaLabel={t('usage.perDay')} />
          <Typography.Text type="secondary" style={{ fontSize: 12 }}>
            {t('dashboard.utcNote')} {t('usage.byDayModelNote')}
          </Typography.Text>
        </Card>
      </Col>
      <Col xs={24} xl={10}>
        <Card title={t('usage.perModelShare')} loading={loading}>
          <Table<ModelUsage>
            size="small"
            rowKey="model"
            pagination={false}
            columns={modelColumns(t, locale, maxCharged)}
            dataSource={report?.by_model ?? []}
            scroll={{ x: 420 }}
            locale={{ emptyText: <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={t('dashboard.noUsage')} /> }}
          />
        </Card>
      </Col>
    </Row>
  );
}
