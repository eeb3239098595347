// The margins card of /admin/stats: what users were charged (revenue), what the operator pays the
// channels that answered (cost, at their cost prices) and the difference, in all, per model and
// per channel. Every amount is the server's exact text; the margin is computed by the server.
import { useQuery } from '@tanstack/react-query';
import { Card, Col, Empty, Row, Statistic, Table, Typography } from 'antd';
import type { ColumnsType } from 'antd/es/table';
import { statsApi } from '../../../api';
import type { ChannelMargins, ModelMargins, Range } from '../../../api/stats';
import { ErrorAlert } from '../../../components/ErrorAlert';
import { Money } from '../../../components/Money';
import { useI18n, type Locale, type Translate } from '../../../i18n';
import { formatCount } from '../../../lib/format';
import { columnFraction } from '../../../lib/money';

type Row = ModelMargins | ChannelMargins;

/** A name column, then requests, revenue, cost and margin (negative margins in red). */
export function marginColumns<R extends Row>(t: Translate, locale: Locale, name: ColumnsType<R>[number], rows: R[] = []): ColumnsType<R> {
  const money = (field: 'revenue' | 'cost' | 'margin', title: string, colored = false) => ({
    title,
    dataIndex: field,
    key: field,
    align: 'right' as const,
    width: 120,
    render: (v: string) => <Money value={v} strong={field === 'margin'} colored={colored} fraction={columnFraction(rows.map((r) => r[field]))} />,
  });
  return [
    name,
    { title: t('stats.requests'), dataIndex: 'requests', key: 'requests', align: 'right', width: 80, render: (v: number) => <span className="num">{formatCount(v, locale)}</span> },
    money('revenue', t('margins.revenue')),
    money('cost', t('margins.cost')),
    money('margin', t('margins.margin'), true),
  ];
}

/** One breakdown: a titled table, half the width on a wide screen, scrolling in its box on a phone. */
function MarginTable<R extends Row>({ title, rowKey, columns, rows }: { title: string; rowKey: (r: R) => string; columns: ColumnsType<R>; rows: R[] }) {
  const t = useI18n().t;
  return (
    <Col xs={24} xl={12}>
      <Typography.Title level={5}>{title}</Typography.Title>
      <Table<R>
        size="small"
        rowKey={rowKey}
        pagination={false}
        columns={columns}
        dataSource={rows}
        scroll={{ x: 520 }}
        locale={{ emptyText: <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={t('dashboard.noUsage')} /> }}
      />
    </Col>
  );
}

export function MarginsCard({ range, title }: { range: Range; title: string }) {
  const { t, locale } = useI18n();
  const margins = useQuery(statsApi.marginsQuery(range));
  const data = margins.data;
  const modelName: ColumnsType<ModelMargins>[number] = { title: t('margins.model'), dataIndex: 'model', key: 'model', ellipsis: true };
  const channelName: ColumnsType<ChannelMargins>[number] = {
    title: t('margins.channel'),
    dataIndex: 'channel',
    key: 'channel',
    ellipsis: true,
    render: (v: string | null) => v ?? <Typography.Text type="secondary">{t('margins.noChannel')}</Typography.Text>,
  };
  return (
    <Card title={`${t('margins.title')} · ${title}`} loading={margins.isPending} data-testid="margins">
      {margins.isError ? <ErrorAlert error={margins.error} onRetry={() => margins.refetch()} /> : null}
      {data ? (
        <Row gutter={[16, 16]}>
          <Col xs={12} md={6}>
            <Statistic title={t('margins.revenue')} valueRender={() => <Money value={data.total.revenue} />} />
          </Col>
          <Col xs={12} md={6}>
            <Statistic title={t('margins.cost')} valueRender={() => <Money value={data.total.cost} />} />
          </Col>
          <Col xs={12} md={6}>
            <Statistic title={t('margins.margin')} valueRender={() => <Money value={data.total.margin} strong colored />} />
          </Col>
          <Col xs={12} md={6}>
            <Statistic title={t('margins.uncosted')} valueRender={() => <Money value={data.total.uncosted_revenue} />} />
          </Col>
          <MarginTable<ModelMargins> title={t('margins.byModel')} rowKey={(r) => r.model} columns={marginColumns(t, locale, modelName, data.by_model)} rows={data.by_model} />
          <MarginTable<ChannelMargins>
            title={t('margins.byChannel')}
            rowKey={(r) => r.channel ?? ''}
            columns={marginColumns(t, locale, channelName, data.by_channel)}
            rows={data.by_channel}
          />
          <Col span={24}>
            <Typography.Text type="secondary" style={{ fontSize: 12 }}>
              {t('margins.note')}
            </Typography.Text>
          </Col>
        </Row>
      ) : null}
    </Card>
  );
}
