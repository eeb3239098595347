// /admin/users: search users; their balance and discount; credit operations; budgets; disable / enable.
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { App, Button, Card, Empty, Input, Popconfirm, Select, Space, Table, Tag } from 'antd';
import type { ColumnsType } from 'antd/es/table';
import { useState } from 'react';
import { Link } from 'react-router';
import { usersApi } from '../../../api';
import type { User } from '../../../api/auth';
import { ErrorAlert } from '../../../components/ErrorAlert';
import { Money } from '../../../components/Money';
import { PageContainer } from '../../../components/PageContainer';
import { useI18n, type Locale, type Translate } from '../../../i18n';
import { formatDateTime } from '../../../lib/format';
import { columnFraction } from '../../../lib/money';
import { tableWidth, unpinned, usePhone } from '../../../components/tableLayout';
import { UserBudgetsModal } from './components/BudgetsModal';
import { CreditModal } from './components/CreditModal';
import { DiscountModal } from './components/DiscountModal';
import { useErrorText } from '../../../i18n/errors';
import { DiscountRate } from '../../../components/DiscountRate';

function StatusToggle({ user }: { user: User }) {
  const { t } = useI18n();
  const errorText = useErrorText();
  const { message } = App.useApp();
  const queryClient = useQueryClient();
  const mutation = useMutation({
    mutationFn: () => (user.status === 'active' ? usersApi.disableUser(user.id) : usersApi.enableUser(user.id)),
    onSuccess: () => {
      message.success(t('common.saved'));
      queryClient.invalidateQueries({ queryKey: ['users'] });
    },
    // A statement, not the toast's promise: the mutation must not wait for the toast to close.
    onError: (e) => {
      message.error(errorText(e));
    },
  });
  if (user.status === 'active') {
    return (
      <Popconfirm title={t('users.confirmDisable', { user: user.username })} okButtonProps={{ danger: true }} onConfirm={() => mutation.mutate()}>
        <Button type="link" size="small" danger loading={mutation.isPending}>
          {t('users.disable')}
        </Button>
      </Popconfirm>
    );
  }
  return (
    <Button type="link" size="small" loading={mutation.isPending} onClick={() => mutation.mutate()}>
      {t('users.enable')}
    </Button>
  );
}

interface Handlers {
  onCredit: (u: User) => void;
  onDiscount: (u: User) => void;
  onBudgets: (u: User) => void;
}

export const userColumns = (t: Translate, locale: Locale, h: Handlers, users: User[] = []): ColumnsType<User> => {
  const fraction = (field: 'token_balance' | 'total_recharged' | 'total_consumed') => columnFraction(users.map((u) => u[field]));
  return [
  { title: 'ID', dataIndex: 'id', key: 'id', width: 70 },
  {
    title: t('auth.username'),
    dataIndex: 'username',
    key: 'username',
    width: 160,
    ellipsis: true,
    render: (v: string, u) => <Link to={`/admin/users/${u.id}/usage`}>{v}</Link>,
  },
  { title: t('users.email'), dataIndex: 'email', key: 'email', width: 200, ellipsis: true, render: (v: string | null) => v || '—' },
  {
    title: t('users.role'),
    dataIndex: 'role',
    key: 'role',
    width: 90,
    render: (v: string) => <Tag color={v === 'admin' ? 'gold' : undefined}>{v === 'admin' ? t('role.admin') : t('role.user')}</Tag>,
  },
  {
    title: t('users.status'),
    dataIndex: 'status',
    key: 'status',
    width: 90,
    render: (v: string) => <Tag color={v === 'active' ? 'green' : 'red'}>{v === 'active' ? t('status.active') : t('status.disabled')}</Tag>,
  },
  { title: t('users.balance'), dataIndex: 'token_balance', key: 'token_balance', align: 'right', width: 150, render: (v: string) => <Money value={v} strong fraction={fraction('token_balance')} /> },
  { title: t('users.recharged'), dataIndex: 'total_recharged', key: 'total_recharged', align: 'right', width: 150, render: (v: string) => <Money value={v} fraction={fraction('total_recharged')} /> },
  { title: t('users.consumed'), dataIndex: 'total_consumed', key: 'total_consumed', align: 'right', width: 150, render: (v: string) => <Money value={v} fraction={fraction('total_consumed')} /> },
  { title: t('users.discount'), dataIndex: 'discount_rate', key: 'discount_rate', width: 150, render: (v: string) => <DiscountRate value={v} /> },
  { title: t('common.createdAt'), dataIndex: 'created_at', key: 'created_at', width: 220, render: (v: string) => <span style={{ whiteSpace: 'nowrap' }}>{formatDateTime(v, locale)}</span> },
  {
    title: t('common.actions'),
    key: 'actions',
    fixed: 'right',
    width: 350,
    render: (_, u) => (
      <Space size={0}>
        <Button type="link" size="small" onClick={() => h.onCredit(u)}>
          {t('users.credit')}
        </Button>
        <Button type="link" size="small" onClick={() => h.onDiscount(u)}>
          {t('users.setDiscount')}
        </Button>
        <Button type="link" size="small" onClick={() => h.onBudgets(u)}>
          {t('budgets.action')}
        </Button>
        <Link to={`/admin/keys?user_id=${u.id}`}>
          <Button type="link" size="small">{t('users.keys')}</Button>
        </Link>
        <StatusToggle user={u} />
      </Space>
    ),
  },
  ];
};

export default function AdminUsersPage() {
  const { t, locale } = useI18n();
  const [filter, setFilter] = useState<{ search?: string; role?: string; status?: string }>({});
  const [paging, setPaging] = useState({ page: 1, page_size: 20 });
  const users = useQuery(usersApi.usersQuery({ ...filter, ...paging }));
  const [crediting, setCrediting] = useState<User | null>(null);
  const [discounting, setDiscounting] = useState<User | null>(null);
  const [budgeting, setBudgeting] = useState<User | null>(null);
  const phone = usePhone();
  const columns = unpinned(
    userColumns(t, locale, { onCredit: setCrediting, onDiscount: setDiscounting, onBudgets: setBudgeting }, users.data?.items ?? []),
    phone,
  );
  const update = (next: Partial<typeof filter>) => {
    setFilter((f) => ({ ...f, ...next }));
    setPaging((p) => ({ ...p, page: 1 }));
  };
  return (
    <PageContainer title={t('users.title')}>
      {users.isError ? <ErrorAlert error={users.error} onRetry={() => users.refetch()} /> : null}
      <Card>
        <Space wrap style={{ marginBottom: 16 }}>
          <Input.Search
            allowClear
            placeholder={t('users.search')}
            onSearch={(v) => update({ search: v.trim() || undefined })}
            style={{ width: 260 }}
            aria-label={t('users.search')}
          />
          <Select
            allowClear
            placeholder={t('users.role')}
            style={{ width: 140 }}
            onChange={(v?: string) => update({ role: v })}
            options={[
              { value: 'user', label: t('role.user') },
              { value: 'admin', label: t('role.admin') },
            ]}
          />
          <Select
            allowClear
            placeholder={t('users.status')}
            style={{ width: 140 }}
            onChange={(v?: string) => update({ status: v })}
            options={[
              { value: 'active', label: t('status.active') },
              { value: 'disabled', label: t('status.disabled') },
            ]}
          />
        </Space>
        <Table<User>
          rowKey="id"
          size="middle"
          columns={columns}
          dataSource={users.data?.items ?? []}
          loading={users.isPending}
          scroll={{ x: tableWidth(columns) }}
          locale={{ emptyText: <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={t('users.empty')} /> }}
          pagination={{
            current: paging.page,
            pageSize: paging.page_size,
            total: users.data?.total ?? 0,
            showSizeChanger: true,
            onChange: (page, page_size) => setPaging({ page, page_size }),
            showTotal: (n) => t('common.total', { n }),
          }}
        />
      </Card>
      <CreditModal user={crediting} onClose={() => setCrediting(null)} />
      <DiscountModal user={discounting} onClose={() => setDiscounting(null)} />
      <UserBudgetsModal user={budgeting} onClose={() => setBudgeting(null)} />
    </PageContainer>
  );
}
