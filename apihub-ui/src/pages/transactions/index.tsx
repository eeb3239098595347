// /transactions: the caller's ledger, a page at a time, filtered by type.
import { useQuery } from '@tanstack/react-query';
import { Card, Empty, Select, Space, Table, Tag, Typography } from 'antd';
import type { ColumnsType } from 'antd/es/table';
import { useMemo, useState } from 'react';
import { creditApi, keysApi } from '../../api';
import { TX_TYPES, type Transaction, type TxType } from '../../api/credit';
import { ErrorAlert } from '../../components/ErrorAlert';
import { Money } from '../../components/Money';
import { PageContainer } from '../../components/PageContainer';
import { useI18n, type Locale, type Translate } from '../../i18n';
import { formatDateTime } from '../../lib/format';
import { columnFraction } from '../../lib/money';
import { tableWidth } from '../../components/tableLayout';
import { describeTx } from './describe';

const TX_COLORS: Record<string, string> = { recharge: 'green', consume: 'blue', refund: 'purple', adjust: 'orange' };

export function TxTypeTag({ type, t }: { type: string; t: Translate }) {
  const known = (TX_TYPES as readonly string[]).includes(type);
  return <Tag color={TX_COLORS[type]}>{known ? t(`tx.${type as TxType}`) : type}</Tag>;
}

interface ColumnOptions {
  t: Translate;
  locale: Locale;
  /** The widest fraction of each money column on the page, so decimal points line up. */
  fractions: { amount: number; before: number; after: number };
  keyName: (id: number) => string | undefined;
}

export const transactionColumns = ({ t, locale, fractions, keyName }: ColumnOptions): ColumnsType<Transaction> => [
  { title: t('tx.id'), dataIndex: 'id', key: 'id', width: 80 },
  {
    title: t('tx.time'),
    dataIndex: 'created_at',
    key: 'created_at',
    width: 220,
    render: (v: string) => <span style={{ whiteSpace: 'nowrap' }}>{formatDateTime(v, locale)}</span>,
  },
  { title: t('tx.type'), dataIndex: 'tx_type', key: 'tx_type', width: 100, render: (v: string) => <TxTypeTag type={v} t={t} /> },
  {
    title: t('tx.amount'),
    dataIndex: 'amount',
    key: 'amount',
    align: 'right',
    width: 150,
    render: (v: string) => <Money value={v} signed colored fraction={fractions.amount} />,
  },
  {
    title: t('tx.balanceBefore'),
    dataIndex: 'balance_before',
    key: 'balance_before',
    align: 'right',
    width: 150,
    render: (v: string) => <Money value={v} fraction={fractions.before} />,
  },
  {
    title: t('tx.balanceAfter'),
    dataIndex: 'balance_after',
    key: 'balance_after',
    align: 'right',
    width: 150,
    render: (v: string) => <Money value={v} strong fraction={fractions.after} />,
  },
  {
    title: t('tx.orderNo'),
    dataIndex: 'order_no',
    key: 'order_no',
    width: 220,
    ellipsis: { showTitle: false },
    render: (v: string | null) =>
      v ? (
        <Typography.Text code ellipsis={{ tooltip: v }} style={{ maxWidth: '100%' }}>
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
    width: 300,
    ellipsis: { showTitle: false },
    render: (v: string | null) => {
      const text = describeTx(v, t, keyName);
      return (
        <Typography.Text ellipsis={{ tooltip: text }} style={{ maxWidth: '100%' }}>
          {text}
        </Typography.Text>
      );
    },
  },
];

export default function TransactionsPage() {
  const { t, locale } = useI18n();
  const [txType, setTxType] = useState<TxType | undefined>();
  const [paging, setPaging] = useState({ page: 1, page_size: 20 });
  const txs = useQuery(creditApi.transactionsQuery({ ...paging, tx_type: txType }));
  // Key names for "model via key 7"; a deleted key stays a number.
  const keys = useQuery(keysApi.keysQuery({ page: 1, page_size: 200 }));
  const names = useMemo(() => new Map((keys.data?.items ?? []).map((k) => [k.id, k.name || k.key_preview])), [keys.data]);
  const items = txs.data?.items ?? [];
  const columns = transactionColumns({
    t,
    locale,
    keyName: (id) => names.get(id),
    fractions: {
      amount: columnFraction(items.map((i) => i.amount)),
      before: columnFraction(items.map((i) => i.balance_before)),
      after: columnFraction(items.map((i) => i.balance_after)),
    },
  });
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
          columns={columns}
          dataSource={items}
          loading={txs.isPending}
          scroll={{ x: tableWidth(columns) }}
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
