// /admin/redemption-codes: generate batches of codes (shown once, to copy or download), list them
// filtered by status, batch and whether redeemed, and disable one.
import { PlusOutlined } from '@ant-design/icons';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { App, Button, Card, Empty, Form, Input, Popconfirm, Select, Table, Tag, Typography } from 'antd';
import type { ColumnsType } from 'antd/es/table';
import { useState } from 'react';
import { redemptionApi } from '../../../api';
import type { CodeFilter, CreatedCodes, RedemptionCode } from '../../../api/redemption';
import { ErrorAlert } from '../../../components/ErrorAlert';
import { Money } from '../../../components/Money';
import { PageContainer } from '../../../components/PageContainer';
import { tablePagination } from '../../../components/tablePagination';
import { UrlFilterForm, useUrlFilter } from '../../../components/UrlFilterForm';
import { useI18n, useT, type Locale, type Translate } from '../../../i18n';
import { formatDateTime } from '../../../lib/format';
import { CreatedCodesModal } from './components/CreatedCodesModal';
import { GenerateCodesModal } from './components/GenerateCodesModal';
import { useErrorText } from '../../../i18n/errors';
import { unpinned, usePhone } from '../../../components/tableLayout';
import { useUsernames } from '../../../components/useUsernames';

export type CodeState = 'redeemed' | 'disabled' | 'expired' | 'active';

const STATE_COLORS: Record<CodeState, string> = { active: 'green', redeemed: 'blue', disabled: 'red', expired: 'default' };

/** What a code is now: redeemed wins, then disabled, then past its expiry. */
export function codeState(code: RedemptionCode, now = Date.now()): CodeState {
  if (code.redeemed_at) return 'redeemed';
  if (code.status !== 'active') return 'disabled';
  if (code.expires_at && new Date(code.expires_at).getTime() <= now) return 'expired';
  return 'active';
}

function DisableCode({ code }: { code: RedemptionCode }) {
  const t = useT();
  const errorText = useErrorText();
  const { message } = App.useApp();
  const queryClient = useQueryClient();
  const mutation = useMutation({
    mutationFn: () => redemptionApi.disableCode(code.id),
    onSuccess: () => {
      message.success(t('codes.disabled'));
      queryClient.invalidateQueries({ queryKey: ['redemption-codes'] });
    },
    // A statement, not the toast's promise: the mutation must not wait for the toast to close.
    onError: (e) => {
      message.error(errorText(e));
    },
  });
  return (
    <Popconfirm title={t('codes.confirmDisable')} okButtonProps={{ danger: true }} onConfirm={() => mutation.mutate()}>
      <Button type="link" size="small" danger loading={mutation.isPending}>
        {t('codes.disable')}
      </Button>
    </Popconfirm>
  );
}

const codeColumns = (
  t: Translate,
  locale: Locale,
  onBatch: (batchId: string) => void,
  userName: (id: number | null | undefined) => string = (id) => (id == null ? '—' : `#${id}`),
): ColumnsType<RedemptionCode> => [
  { title: 'ID', dataIndex: 'id', key: 'id', width: 70 },
  {
    title: t('codes.code'),
    dataIndex: 'code',
    key: 'code',
    width: 360,
    render: (v: string) => (
      <Typography.Text code copyable style={{ whiteSpace: 'nowrap' }}>
        {v}
      </Typography.Text>
    ),
  },
  { title: t('codes.amount'), dataIndex: 'amount', key: 'amount', align: 'right', render: (v: string) => <Money value={v} strong /> },
  { title: t('codes.name'), dataIndex: 'name', key: 'name', ellipsis: true },
  {
    title: t('codes.batch'),
    dataIndex: 'batch_id',
    key: 'batch_id',
    render: (v: string) => (
      <Button type="link" size="small" onClick={() => onBatch(v)} style={{ padding: 0 }}>
        {v}
      </Button>
    ),
  },
  {
    title: t('codes.state'),
    key: 'state',
    render: (_, c) => {
      const state = codeState(c);
      return <Tag color={STATE_COLORS[state]}>{t(`codes.state.${state}`)}</Tag>;
    },
  },
  {
    title: t('codes.expiresAt'),
    dataIndex: 'expires_at',
    key: 'expires_at',
    render: (v: string | null) => (v ? formatDateTime(v, locale) : t('codes.never')),
  },
  { title: t('codes.redeemedBy'), dataIndex: 'redeemed_by', key: 'redeemed_by', ellipsis: true, render: (v: number | null) => userName(v) },
  { title: t('codes.redeemedAt'), dataIndex: 'redeemed_at', key: 'redeemed_at', render: (v: string | null) => formatDateTime(v, locale) },
  { title: t('common.createdAt'), dataIndex: 'created_at', key: 'created_at', render: (v: string) => formatDateTime(v, locale) },
  {
    title: t('common.actions'),
    key: 'actions',
    fixed: 'right',
    width: 100,
    render: (_, c) => (c.status === 'active' && !c.redeemed_at ? <DisableCode code={c} /> : null),
  },
];

/** The listing's filter from the query string: `?status=&batch_id=&redeemed=`. */
function filterFrom(params: URLSearchParams): Omit<CodeFilter, 'page' | 'page_size'> {
  const status = params.get('status');
  const redeemed = params.get('redeemed');
  return {
    status: status === 'active' || status === 'disabled' ? status : undefined,
    batch_id: params.get('batch_id') || undefined,
    redeemed: redeemed === 'true' ? true : redeemed === 'false' ? false : undefined,
  };
}

export default function AdminRedemptionCodesPage() {
  const { t, locale } = useI18n();
  const [paging, setPaging] = useState({ page: 1, page_size: 20 });
  const { params, apply } = useUrlFilter(() => setPaging((p) => ({ ...p, page: 1 })));
  const codes = useQuery(redemptionApi.codesQuery({ ...filterFrom(params), ...paging }));
  const [generating, setGenerating] = useState(false);
  const phone = usePhone();
  const userName = useUsernames();
  const [created, setCreated] = useState<CreatedCodes | null>(null);
  const showBatch = (batchId: string) => apply({ ...Object.fromEntries(params), batch_id: batchId });

  return (
    <PageContainer
      title={t('codes.title')}
      subTitle={t('codes.subtitle')}
      extra={
        <Button type="primary" icon={<PlusOutlined />} onClick={() => setGenerating(true)}>
          {t('codes.generate')}
        </Button>
      }
    >
      {codes.isError ? <ErrorAlert error={codes.error} onRetry={() => codes.refetch()} /> : null}
      <Card>
        <UrlFilterForm params={params} apply={apply}>
          <Form.Item name="status" label={t('codes.status')}>
            <Select
              allowClear
              style={{ width: 130 }}
              options={[
                { value: 'active', label: t('status.active') },
                { value: 'disabled', label: t('status.disabled') },
              ]}
            />
          </Form.Item>
          <Form.Item name="redeemed" label={t('codes.redeemed')}>
            <Select
              allowClear
              style={{ width: 150 }}
              options={[
                { value: 'true', label: t('codes.redeemed') },
                { value: 'false', label: t('codes.notRedeemed') },
              ]}
            />
          </Form.Item>
          <Form.Item name="batch_id" label={t('codes.batch')}>
            <Input allowClear style={{ width: 200 }} />
          </Form.Item>
        </UrlFilterForm>
        <Table<RedemptionCode>
          rowKey="id"
          size="middle"
          columns={unpinned(codeColumns(t, locale, showBatch, userName), phone)}
          dataSource={codes.data?.items ?? []}
          loading={codes.isPending}
          scroll={{ x: 1600 }}
          locale={{ emptyText: <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={t('codes.empty')} /> }}
          pagination={tablePagination(t, paging, codes.data?.total ?? 0, setPaging)}
        />
      </Card>
      <GenerateCodesModal
        open={generating}
        onClose={() => setGenerating(false)}
        onCreated={(batch) => {
          setGenerating(false);
          setCreated(batch);
          apply({ batch_id: batch.batch_id });
        }}
      />
      <CreatedCodesModal batch={created} onClose={() => setCreated(null)} />
    </PageContainer>
  );
}
