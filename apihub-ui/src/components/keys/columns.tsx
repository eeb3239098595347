// The key table, declared as columns: status, limits and usage (bars where a limit exists).
import { Space, Tag, Tooltip, Typography } from 'antd';
import type { ColumnsType } from 'antd/es/table';
import type { ReactNode } from 'react';
import { Link } from 'react-router';
import type { Key } from '../../api/keys';
import type { Locale, Translate } from '../../i18n';
import { formatCount, formatDateTime } from '../../lib/format';
import { formatMoney } from '../../lib/money';
import { UsageBar } from '../UsageBar';
import { isExpired } from './keyForm';
import { DiscountRate } from '../DiscountRate';

export function KeyStatusTag({ keyView, t }: { keyView: Key; t: Translate }) {
  if (keyView.status !== 'active') return <Tag>{t('status.disabled')}</Tag>;
  if (isExpired(keyView)) return <Tag color="orange">{t('status.expired')}</Tag>;
  return <Tag color="green">{t('status.active')}</Tag>;
}

function Limits({ k, t, locale }: { k: Key; t: Translate; locale: Locale }) {
  const items: ReactNode[] = [];
  if (k.rate_limit != null) items.push(t('keys.perMinuteShort', { n: formatCount(k.rate_limit, locale) }));
  if (k.rate_limit_day != null) items.push(t('keys.perDayShort', { n: formatCount(k.rate_limit_day, locale) }));
  if (k.remaining_calls != null) items.push(t('keys.callsLeft', { n: formatCount(k.remaining_calls, locale) }));
  if (k.expires_at) items.push(t('keys.expires', { at: formatDateTime(k.expires_at, locale) }));
  return (
    <Space direction="vertical" size={2}>
      {items.length ? items.map((x, i) => <Typography.Text key={i} style={{ fontSize: 12 }}>{x}</Typography.Text>) : (
        <Typography.Text type="secondary" style={{ fontSize: 12 }}>{t('keys.noLimits')}</Typography.Text>
      )}
      <span>
        {k.allowed_models.length ? (
          k.allowed_models.map((m) => <Tag key={m} style={{ fontSize: 11 }}>{m}</Tag>)
        ) : (
          <Typography.Text type="secondary" style={{ fontSize: 12 }}>{t('keys.allModels')}</Typography.Text>
        )}
      </span>
    </Space>
  );
}

export interface KeyColumnOptions {
  t: Translate;
  locale: Locale;
  /** Administrators: the owner and the key's discount. */
  admin?: boolean;
  actions: (key: Key) => ReactNode;
  /** Administrators: the owner's name for a user id, where it is known. */
  owner?: (userId: number) => string;
}

export function keyColumns({ t, locale, admin = false, actions, owner }: KeyColumnOptions): ColumnsType<Key> {
  const count = (v: string | number) => formatCount(Number(v), locale);
  const columns: ColumnsType<Key> = [
    {
      title: t('keys.name'),
      key: 'name',
      width: 230,
      render: (_, k) => (
        <Space direction="vertical" size={0} style={{ maxWidth: 214 }}>
          <Link to={`/keys/${k.id}/usage`} title={t('usage.details')} style={{ maxWidth: 214 }}>
            <Typography.Text strong ellipsis={{ tooltip: k.name }} style={{ color: 'inherit' }}>
              {k.name || '—'}
            </Typography.Text>
          </Link>
          <Space size={4}>
            <Typography.Text code ellipsis={{ tooltip: k.key_preview }} style={{ fontSize: 12, maxWidth: 214 }}>
              {k.key_preview}
            </Typography.Text>
            {k.imported ? <Tag title={t('keys.importedHelp')}>{t('keys.imported')}</Tag> : null}
          </Space>
        </Space>
      ),
    },
    ...(admin
      ? [
          {
            title: t('keys.userId'),
            dataIndex: 'user_id',
            key: 'user_id',
            width: 150,
            ellipsis: true,
            render: (v: number) => (owner ? owner(v) : `#${v}`),
          },
          {
            title: t('keys.discountRate'),
            dataIndex: 'discount_rate',
            key: 'discount_rate',
            width: 150,
            render: (v: string) => <DiscountRate value={v} />,
          },
        ]
      : []),
    { title: t('keys.status'), key: 'status', width: 90, render: (_, k) => <KeyStatusTag keyView={k} t={t} /> },
    { title: t('keys.limits'), key: 'limits', width: 210, render: (_, k) => <Limits k={k} t={t} locale={locale} /> },
    {
      title: t('keys.tokensUsed'),
      key: 'tokens',
      width: 170,
      render: (_, k) => <UsageBar used={k.tokens_used} limit={k.token_limit} render={count} />,
    },
    {
      title: t('keys.quotaUsed'),
      key: 'quota',
      width: 170,
      render: (_, k) => <UsageBar used={k.quota_used} limit={k.quota_limit} render={(v) => formatMoney(v)} />,
    },
    {
      title: t('keys.calls'),
      key: 'calls',
      width: 110,
      render: (_, k) => (
        <Tooltip title={t('keys.callsTooltip')}>
          <span className="num">
            {formatCount(k.calls_succeeded, locale)} / {formatCount(k.calls_total, locale)}
          </span>
        </Tooltip>
      ),
    },
    {
      title: t('common.createdAt'),
      dataIndex: 'created_at',
      key: 'created_at',
      width: 210,
      render: (v: string) => <span style={{ fontSize: 12, whiteSpace: 'nowrap' }}>{formatDateTime(v, locale)}</span>,
    },
    { title: t('common.actions'), key: 'actions', fixed: 'right', width: 370, render: (_, k) => actions(k) },
  ];
  return columns;
}
