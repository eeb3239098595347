// Recharge orders as table columns and tags, for the user's "My orders" and the administrators' list.
import { Empty, Table, Tag, Typography } from 'antd';
import type { ColumnsType } from 'antd/es/table';
import type { ReactNode } from 'react';
import type { Paging } from '../../api/keys';
import type { OrderPage, RechargeOrder } from '../../api/recharge';
import type { Locale, MessageKey, Translate } from '../../i18n';
import { formatDateTime } from '../../lib/format';
import { useCurrency } from '../../lib/currency';
import { formatMoney } from '../../lib/money';
import { tableWidth, unpinned, usePhone } from '../tableLayout';
import { Money } from '../Money';
import { tablePagination } from '../tablePagination';

const PAYMENT_TYPES: Record<string, MessageKey> = { alipay: 'pay.alipay', wxpay: 'pay.wxpay', qqpay: 'pay.qqpay' };

/** A payment type's name: the known ones translated, any other as the provider calls it. */
export function paymentTypeLabel(t: Translate, type: string): string {
  return PAYMENT_TYPES[type] ? t(PAYMENT_TYPES[type]) : type;
}

export function OrderStatusTag({ status, t }: { status: string; t: Translate }) {
  if (status === 'paid') return <Tag color="green">{t('orders.status.paid')}</Tag>;
  if (status === 'pending') return <Tag color="orange">{t('orders.status.pending')}</Tag>;
  return <Tag>{status}</Tag>;
}

function Time({ iso, locale }: { iso?: string | null; locale: Locale }) {
  return <span style={{ whiteSpace: 'nowrap' }}>{formatDateTime(iso, locale)}</span>;
}

/** Money to pay, always with its cents. */
export const formatPayment = (money: string | number | null | undefined) => formatMoney(money, { minFractionDigits: 2 });

/** Money to pay with the currency's symbol before it (the figure is its own element). */
export function Payment({ value }: { value: string | number | null | undefined }) {
  const currency = useCurrency();
  return (
    <span className="num" title={currency.code}>
      {value == null ? null : <span className="currency">{currency.symbol}</span>}
      <span>{formatPayment(value)}</span>
    </span>
  );
}

interface Options {
  t: Translate;
  locale: Locale;
  /** Administrators see whose order it is, the provider's trade number and manual completions. */
  admin?: boolean;
  /** Administrators: a user's name for an id. */
  userName?: (id: number | null | undefined) => string;
  actions?: (order: RechargeOrder) => ReactNode;
}

export function orderColumns({ t, locale, admin = false, actions, userName = (id) => `#${id}` }: Options): ColumnsType<RechargeOrder> {
  const columns: ColumnsType<RechargeOrder> = [
    {
      title: t('orders.outTradeNo'),
      dataIndex: 'out_trade_no',
      key: 'out_trade_no',
      width: admin ? 320 : 290,
      render: (v: string) => (
        <Typography.Text code copyable={admin} style={{ whiteSpace: 'nowrap' }}>
          {v}
        </Typography.Text>
      ),
    },
    ...(admin
      ? [{ title: t('orders.user'), dataIndex: 'user_id', key: 'user_id', width: 150, ellipsis: true, render: (v: number) => userName(v) }]
      : []),
    { title: t('orders.amount'), dataIndex: 'amount', key: 'amount', align: 'right', width: 130, render: (v: string) => <Money value={v} strong /> },
    { title: t('orders.money'), dataIndex: 'money', key: 'money', align: 'right', width: 120, render: (v: string) => <Payment value={v} /> },
    { title: t('orders.paymentType'), dataIndex: 'payment_type', key: 'payment_type', width: 110, render: (v: string) => paymentTypeLabel(t, v) },
    { title: t('orders.status'), dataIndex: 'status', key: 'status', width: 90, render: (v: string) => <OrderStatusTag status={v} t={t} /> },
    { title: t('orders.createdAt'), dataIndex: 'created_at', key: 'created_at', width: 220, render: (v: string) => <Time iso={v} locale={locale} /> },
    { title: t('orders.paidAt'), dataIndex: 'paid_at', key: 'paid_at', width: 220, render: (v?: string | null) => <Time iso={v} locale={locale} /> },
  ];
  if (admin) {
    columns.push(
      { title: t('orders.tradeNo'), dataIndex: 'trade_no', key: 'trade_no', width: 180, ellipsis: true, render: (v?: string | null) => v || '—' },
      {
        title: t('orders.completedBy'),
        key: 'completed_by',
        width: 220,
        ellipsis: true,
        render: (_, o) => (o.completed_by ? `${userName(o.completed_by)}${o.note ? `: ${o.note}` : ''}` : '—'),
      },
    );
  }
  if (actions) columns.push({ title: t('common.actions'), key: 'actions', fixed: 'right', width: admin ? 170 : 130, render: (_, o) => actions(o) });
  return columns;
}

interface TableProps extends Options {
  page: OrderPage | undefined;
  loading: boolean;
  paging: Paging;
  onPage: (paging: Paging) => void;
  emptyText: string;
}

/** A page of orders. */
export function OrderTable({ page, loading, paging, onPage, emptyText, ...options }: TableProps) {
  const phone = usePhone();
  const columns = unpinned(orderColumns(options), phone);
  return (
    <Table<RechargeOrder>
      rowKey="id"
      size="middle"
      columns={columns}
      dataSource={page?.items ?? []}
      loading={loading}
      scroll={{ x: tableWidth(columns) }}
      locale={{ emptyText: <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={emptyText} /> }}
      pagination={tablePagination(options.t, paging, page?.total ?? 0, onPage)}
    />
  );
}
