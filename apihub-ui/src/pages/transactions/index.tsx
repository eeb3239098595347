// /transactions: the caller's ledger, a page at a time, filtered by type.
import { useQuery } from '@tanstack/react-query';
import { Card, Empty, Select, Space, Table, Tag, Typography } from 'antd';
import type { ColumnsType } from 'antd/es/table';
import { useState } from 'react';
import { creditApi } from '../../api';
import { TX_TYPES, type Transaction, type TxType } from '../../api/credit';
import { ErrorAlert } from '../../components/ErrorAlert';
import { Money } from '../../components/Money';
import { PageContainer } from '../../components/PageContainer';
import { useI18n, type Locale, type Translate } from '../../i18n';
import { formatDateTime } from '../../lib/format';

const TX_COLORS: Record<string, string> = { recharge: 'green', consume: 'blue', refund: 'purple', adjust: 'orange' };

export function TxTypeTag({ type, t }: { type: string; t: Translate }) {
  const known = (TX_TYPES as readonly string[]).includes(type);
  return <Tag color={TX_COLORS[type]}>{known ? t(`tx.${type as TxType}`) : type}</Tag>;
}

export const transactionColumns = (t: Translate, locale: Locale): ColumnsType<Transaction> => [
  { title: t('tx.id'), dataIndex: 'id', key: 'id', width: 80 },
  {
    title: t('tx.time'),
    dataIndex: 'created_at',
    key: 'created_at',
    render: (v: string) => <span style={{ whiteSpace: 'nowrap' }}>{formatDateTime(v, locale)}</span>,
  },
  { title: t('tx.type'), dataIndex: 'tx_type', key: 'tx_type', render: (v: string) => <TxTypeTag type={v} t={t} /> },
  {
    title: t('tx.amount'),
    dataIndex: 'amount',
    key: 'amount',
    align: 'right',
    render: (v: string) => <Money value={v} signed colored />,
  },
  {
    title: t('tx.balanceBefore'),
    dataIndex: 'balance_before',
    key: 'balance_before',
    align: 'right',
    render: (v: string) => <Money value={v} />,
  },
  {
    title: t('tx.balanceAfter'),
    dataIndex: 'balance_after',
    key: 'balance_after',
    align: 'right',
    render: (v: string) => <Money value={v} strong />,
  },
  {
    title: t('tx.orderNo'),
    dataIndex: 'order_no',
    key: 'order_no',
    render: (v: string | null) =>
      v ? (
        <Typography.Text code ellipsis={{ tooltip: v }} style={{ maxWidth: 200 }}>
          {v}
        </Typography.Text>
      ) : (
        '—'
      ),
  },
  {
    title: t('tx.description'),
    dataIndex: 'description',
    key: 'description',
    ellipsis: true,
    render: (v: string | null) => v || '—',
  },
];

export default function TransactionsPage() {
  const { t, locale } = useI18n();
  const [txType, setTxType] = useState<TxType | undefined>();
  const [paging, setPaging] = useState({ page: 1, page_size: 20 });
  const txs = useQuery(creditApi.transactionsQuery({ ...paging, tx_type: txType }));
  return (
    <PageContainer title={t('tx.title')} subTitle={t('tx.subtitle')}>
      {txs.isError ? <ErrorAlert error={txs.error} onRetry={() => txs.refetch()} /> : null}
      <Card>
        <Space style={{ marginBottom: 16 }}>
          <Typography.Text>{t('tx.type')}</Typography.Text>
          <Select<TxType>
            allowClear
            placeholder={t('tx.allTypes')}
            style={{ width: 180 }}
            value={txType}
            onChange={(v) => {
              setTxType(v);
              setPaging((p) => ({ ...p, page: 1 }));
            }}
            options={TX_TYPES.map((type) => ({ value: type, label: t(`tx.${type}`) }))}
            aria-label={t('tx.type')}
          />
        </Space>
        <Table<Transaction>
          rowKey="id"
          size="middle"
          columns={transactionColumns(t, locale)}
          dataSource={txs.data?.items ?? []}
          loading={txs.isPending}
          scroll={{ x: 1100 }}
          locale={{ emptyText: <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={t('tx.empty')} /> }}
          pagination={{
            current: paging.page,
            pageSize: paging.page_size,
            total: txs.data?.total ?? 0,
            showSizeChanger: true,
            pageSizeOptions: [10, 20, 50, 100],
            onChange: (page, page_size) => setPaging({ page, page_size }),
            showTotal: (n) => t('common.total', { n }),
          }}
        />
      </Card>
    </PageContainer>
  );
}
