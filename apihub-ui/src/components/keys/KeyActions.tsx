// A key's row actions: edit, budgets, deactivate / activate, reset usage, delete (each confirmed where it bites).
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { App, Button, Popconfirm, Space } from 'antd';
import { keysApi } from '../../api';
import type { Key } from '../../api/keys';
import { useT } from '../../i18n';
import { useErrorText } from '../../i18n/errors';

interface Props {
  keyView: Key;
  onEdit: (key: Key) => void;
  onBudgets: (key: Key) => void;
}

export function KeyActions({ keyView, onEdit, onBudgets }: Props) {
  const t = useT();
  const errorText = useErrorText();
  const { message } = App.useApp();
  const queryClient = useQueryClient();
  const done = (text: string) => () => {
    message.success(text);
    queryClient.invalidateQueries({ queryKey: ['keys'] });
  };
  // Returns nothing: a returned toast promise would keep the button loading until the toast closes.
  const fail = (e: unknown) => {
    message.error(errorText(e));
  };
  const deactivate = useMutation({ mutationFn: () => keysApi.deactivateKey(keyView.id), onSuccess: done(t('keys.deactivated')), onError: fail });
  const activate = useMutation({
    mutationFn: () => keysApi.updateKey(keyView.id, { status: 'active' }),
    onSuccess: done(t('keys.activated')),
    onError: fail,
  });
  const reset = useMutation({ mutationFn: () => keysApi.resetKeyUsage(keyView.id), onSuccess: done(t('keys.usageReset')), onError: fail });
  const remove = useMutation({ mutationFn: () => keysApi.deleteKey(keyView.id), onSuccess: done(t('keys.deleted')), onError: fail });
  return (
    <Space size={0}>
      <Button type="link" size="small" onClick={() => onEdit(keyView)}>
        {t('common.edit')}
      </Button>
      <Button type="link" size="small" onClick={() => onBudgets(keyView)}>
        {t('budgets.action')}
      </Button>
      {keyView.status === 'active' ? (
        <Popconfirm title={t('keys.confirmDeactivate')} onConfirm={() => deactivate.mutate()}>
          <Button type="link" size="small" loading={deactivate.isPending}>
            {t('keys.deactivate')}
          </Button>
        </Popconfirm>
      ) : (
        <Button type="link" size="small" loading={activate.isPending} onClick={() => activate.mutate()}>
          {t('keys.activate')}
        </Button>
      )}
      <Popconfirm title={t('keys.confirmReset')} onConfirm={() => reset.mutate()}>
        <Button type="link" size="small" loading={reset.isPending}>
          {t('keys.resetUsage')}
        </Button>
      </Popconfirm>
      <Popconfirm
        title={t('keys.confirmDelete', { name: keyView.name || keyView.key_preview })}
        okButtonProps={{ danger: true }}
        okText={t('common.delete')}
        onConfirm={() => remove.mutate()}
      >
        <Button type="link" size="small" danger loading={remove.isPending}>
          {t('common.delete')}
        </Button>
      </Popconfirm>
    </Space>
  );
}
