// /requests (the caller's) and /admin/requests (everyone's): the per-request log, newest first,
// filtered through the address's query string, a page more at a time, with a detail drawer and
// CSV / NDJSON exports of whatever the filters select.
import { DownloadOutlined } from '@ant-design/icons';
import { useInfiniteQuery, useQuery } from '@tanstack/react-query';
import { App, AutoComplete, Button, Card, Empty, Flex, Form, Input, InputNumber, Select, Table, Typography } from 'antd';
import type { ColumnsType } from 'antd/es/table';
import { useMemo, useState } from 'react';
import { keysApi, requestsApi } from '../../api';
import type { ExportFormat, RequestFilters, RequestItem } from '../../api/requests';
import { ErrorAlert } from '../../components/ErrorAlert';
import { Money } from '../../components/Money';
import { PageContainer } from '../../components/PageContainer';
import { tableWidth, usePhone } from '../../components/tableLayout';
import { UrlFilterForm, useUrlFilter } from '../../components/UrlFilterForm';
import { useI18n, type Locale, type Translate } from '../../i18n';
import { useErrorText } from '../../i18n/errors';
import { downloadBlob } from '../../lib/download';
import { formatCount, formatDateTime } from '../../lib/format';
import { RequestDrawer } from './RequestDrawer';
import { StatusTag } from './StatusTag';

/** The filters in the address, as the API takes them (a malformed number is left out). */
export function filtersOf(params: URLSearchParams, admin: boolean): RequestFilters {
  const number = (name: string) => {
    const text = params.get(name);
    return text && /^\d+$/.test(text) ? Number(text) : undefined;
  };
  const text = (name: string) => params.get(name)?.trim() || undefined;
  return {
    ...(admin ? { user_id: number('user_id') } : {}),
    key_id: number('key_id'),
    model: text('model'),
    status: text('status'),
    from: text('from'),
    to: text('to'),
  };
}

const requestColumns = (t: Translate, locale: Locale, admin: boolean): ColumnsType<RequestItem> => [
  {
    title: t('requests.time'),
    dataIndex: 'created_at',
    key: 'created_at',
    width: 190,
    render: (v: string) => <span style={{ whiteSpace: 'nowrap' }}>{formatDateTime(v, locale)}</span>,
  },
  ...(admin
    ? [{ title: t('requests.user'), dataIndex: 'username', key: 'username', width: 120, ellipsis: true } as const]
    : []),
  {
    title: t('requests.key'),
    key: 'key',
    width: 140,
    ellipsis: true,
    render: (_: unknown, r: RequestItem) => r.key_name || `#${r.key_id}`,
  },
  {
    title: t('requests.model'),
    key: 'model',
    width: 200,
    ellipsis: true,
    render: (_: unknown, r: RequestItem) => (r.route_name != null ? `${r.model} · ${r.route_name || r.route_id}` : r.model),
  },
  { title: t('requests.status'), dataIndex: 'status', key: 'status', width: 80, render: (v: number) => <StatusTag status={v} /> },
  {
    title: t('requests.tokens'),
    key: 'tokens',
    width: 150,
    align: 'right',
    render: (_: unknown, r: RequestItem) => (
      <span className="num" style={{ whiteSpace: 'nowrap' }}>
        {formatCount(r.prompt_tokens, locale)} / {formatCount(r.completion_tokens, locale)}
      </span>
    ),
  },
  {
    title: t('requests.charged'),
    dataIndex: 'charged',
    key: 'charged',
    width: 120,
    align: 'right',
    render: (v: string) => <Money value={v} strong />,
  },
  {
    title: t('requests.latency'),
    dataIndex: 'upstream_latency_ms',
    key: 'latency',
    width: 100,
    align: 'right',
    render: (v: number) => <span className="num">{t('requests.ms', { n: formatCount(v, locale) })}</span>,
  },
];

function ExportButtons({ admin, filters }: { admin: boolean; filters: RequestFilters }) {
  const t = useI18n().t;
  const errorText = useErrorText();
  const { message } = App.useApp();
  const [busy, setBusy] = useState<ExportFormat | undefined>();
  const run = async (format: ExportFormat) => {
    setBusy(format);
    try {
      const blob = await requestsApi.exportRequests(admin, filters, format);
      downloadBlob(`requests.${format}`, blob);
    } catch (e) {
      message.error(errorText(e));
    } finally {
      setBusy(undefined);
    }
  };
  return (
    <>
      <Button icon={<DownloadOutlined />} loading={busy === 'csv'} onClick={() => run('csv')}>
        {t('requests.exportCsv')}
      </Button>
      <Button icon={<DownloadOutlined />} loading={busy === 'ndjson'} onClick={() => run('ndjson')}>
        {t('requests.exportNdjson')}
      </Button>
    </>
  );
}

export default function RequestsPage({ admin = false }: { admin?: boolean }) {
  const { t, locale } = useI18n();
  const phone = usePhone();
  const { params, apply } = useUrlFilter(() => undefined);
  const filters = useMemo(() => filtersOf(params, admin), [params, admin]);
  const requests = useInfiniteQuery(requestsApi.requestsQuery(admin, filters));
  // A user picks one of their keys by name; an administrator types a key id.
  const keys = useQuery({ ...keysApi.keysQuery({ page: 1, page_size: 200 }), enabled: !admin });
  const [open, setOpen] = useState<RequestItem | undefined>();
  const items = useMemo(() => (requests.data?.pages ?? []).flatMap((p) => p.items), [requests.data]);
  const columns = requestColumns(t, locale, admin);
  const fieldWidth = phone ? '100%' : undefined;
  return (
    <PageContainer
      title={t(admin ? 'requests.adminTitle' : 'requests.title')}
      subTitle={t('requests.subtitle')}
      extra={<ExportButtons admin={admin} filters={filters} />}
    >
      {requests.isError ? <ErrorAlert error={requests.error} onRetry={() => requests.refetch()} /> : null}
      <Card>
        <UrlFilterForm params={params} apply={apply}>
          {admin ? (
            <Form.Item name="user_id" label={t('requests.userId')} style={{ width: fieldWidth }}>
              <InputNumber min={1} precision={0} style={{ width: phone ? '100%' : 110 }} />
            </Form.Item>
          ) : null}
          <Form.Item name="key_id" label={t('requests.key')} style={{ width: fieldWidth }}>
            {admin ? (
              <InputNumber min={1} precision={0} placeholder={t('requests.keyId')} style={{ width: phone ? '100%' : 110 }} />
            ) : (
              <Select
                allowClear
                style={{ width: phone ? '100%' : 160 }}
                placeholder={t('requests.allKeys')}
                options={(keys.data?.items ?? []).map((k) => ({ value: String(k.id), label: k.name || k.key_preview }))}
              />
            )}
          </Form.Item>
          <Form.Item name="model" label={t('requests.model')} style={{ width: fieldWidth }}>
            <Input allowClear maxLength={200} style={{ width: phone ? '100%' : 160 }} />
          </Form.Item>
          <Form.Item
            name="status"
            label={t('requests.status')}
            style={{ width: fieldWidth }}
            rules={[{ pattern: /^(\d{3}|ok|error)$/, message: t('requests.statusHelp') }]}
          >
            <AutoComplete
              allowClear
              style={{ width: phone ? '100%' : 120 }}
              placeholder={t('requests.anyStatus')}
              options={[
                { value: 'ok', label: t('requests.ok') },
                { value: 'error', label: t('requests.error') },
              ]}
            />
          </Form.Item>
          <Form.Item name="from" label={t('requests.from')} style={{ width: fieldWidth }}>
            <Input type="date" style={{ width: phone ? '100%' : 150 }} />
          </Form.Item>
          <Form.Item name="to" label={t('requests.to')} style={{ width: fieldWidth }}>
            <Input type="date" style={{ width: phone ? '100%' : 150 }} />
          </Form.Item>
        </UrlFilterForm>
        <Table<RequestItem>
          rowKey="id"
          size="middle"
          columns={columns}
          dataSource={items}
          loading={requests.isPending}
          scroll={{ x: tableWidth(columns) }}
          pagination={false}
          onRow={(record) => ({ onClick: () => setOpen(record), style: { cursor: 'pointer' } })}
          locale={{ emptyText: <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={t('requests.empty')} /> }}
        />
        <Flex justify="center" align="center" gap={12} style={{ marginTop: 16 }}>
          <Typography.Text type="secondary">{t('requests.shown', { n: items.length })}</Typography.Text>
          {requests.hasNextPage ? (
            <Button onClick={() => requests.fetchNextPage()} loading={requests.isFetchingNextPage}>
              {t('requests.loadMore')}
            </Button>
          ) : null}
        </Flex>
      </Card>
      <RequestDrawer item={open} admin={admin} onClose={() => setOpen(undefined)} />
    </PageContainer>
  );
}
