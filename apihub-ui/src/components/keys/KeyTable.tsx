// A page of keys with row actions, the edit modal and the budgets modal. Used by /keys and /admin/keys.
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { App, Empty, Table } from 'antd';
import { useState } from 'react';
import { keysApi } from '../../api';
import type { Key } from '../../api/keys';
import { useI18n } from '../../i18n';
import { tableWidth, unpinned, usePhone } from '../tableLayout';
import { useUsernames } from '../useUsernames';
import { keyColumns } from './columns';
import { KeyActions } from './KeyActions';
import { KeyBudgetsModal } from './KeyBudgetsModal';
import { KeyFormModal } from './KeyFormModal';
import { toKeyPatch, type KeyFormValues } from './keyForm';

interface Props {
  admin: boolean;
  keys: Key[];
  total: number;
  page: number;
  pageSize: number;
  loading: boolean;
  onPage: (page: number, pageSize: number) => void;
  emptyText: string;
}

export function KeyTable({ admin, keys, total, page, pageSize, loading, onPage, emptyText }: Props) {
  const { t, locale } = useI18n();
  const { message } = App.useApp();
  const queryClient = useQueryClient();
  const [editing, setEditing] = useState<Key | null>(null);
  const [budgeting, setBudgeting] = useState<Key | null>(null);
  const update = useMutation({
    mutationFn: (values: KeyFormValues) => keysApi.updateKey(editing!.id, toKeyPatch(values, admin)),
    onSuccess: () => {
      message.success(t('keys.saved'));
      setEditing(null);
      queryClient.invalidateQueries({ queryKey: ['keys'] });
    },
  });
  const phone = usePhone();
  const owner = useUsernames(admin);
  const columns = unpinned(
    keyColumns({ t, locale, admin, owner, actions: (k) => <KeyActions keyView={k} onEdit={setEditing} onBudgets={setBudgeting} /> }),
    phone,
  );
  return (
    <>
      <Table<Key>
        rowKey="id"
        size="middle"
        columns={columns}
        dataSource={keys}
        loading={loading}
        scroll={{ x: tableWidth(columns) }}
        locale={{ emptyText: <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={emptyText} /> }}
        pagination={{
          current: page,
          pageSize,
          total,
          showSizeChanger: true,
          pageSizeOptions: [10, 20, 50, 100],
          onChange: onPage,
          showTotal: (n) => t('common.total', { n }),
        }}
      />
      <KeyFormModal
        open={!!editing}
        mode="edit"
        admin={admin}
        editing={editing}
        submitting={update.isPending}
        error={update.error}
        onSubmit={(v) => update.mutate(v)}
        onClose={() => {
          setEditing(null);
          update.reset();
        }}
      />
      <KeyBudgetsModal keyView={budgeting} onClose={() => setBudgeting(null)} />
    </>
  );
}
