// /keys: the caller's API keys: list with limits and usage, create, batch create, edit, and the
// rest of a key's life (deactivate, reset usage, delete).
import { PlusOutlined, UnorderedListOutlined } from '@ant-design/icons';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { Button, Card } from 'antd';
import { useState } from 'react';
import { keysApi } from '../../api';
import type { CreatedKey } from '../../api/keys';
import { ErrorAlert } from '../../components/ErrorAlert';
import { CreatedKeysModal } from '../../components/keys/CreatedKeysModal';
import { KeyFormModal } from '../../components/keys/KeyFormModal';
import { toBatchRequest, toKeyFields, type KeyFormMode, type KeyFormValues } from '../../components/keys/keyForm';
import { KeyTable } from '../../components/keys/KeyTable';
import { PageContainer } from '../../components/PageContainer';
import { useT } from '../../i18n';

export default function KeysPage() {
  const t = useT();
  const queryClient = useQueryClient();
  const [paging, setPaging] = useState({ page: 1, page_size: 20 });
  const keys = useQuery(keysApi.keysQuery(paging));
  const [mode, setMode] = useState<Exclude<KeyFormMode, 'edit'> | null>(null);
  const [created, setCreated] = useState<{ keys: CreatedKey[]; batchId?: string } | null>(null);

  const create = useMutation({
    mutationFn: async (values: KeyFormValues) => {
      if (mode === 'batch') {
        const batch = await keysApi.createBatch(toBatchRequest(values, false));
        return { keys: batch.keys, batchId: batch.batch_id };
      }
      return { keys: [await keysApi.createKey(toKeyFields(values, false))] };
    },
    onSuccess: (result) => {
      setMode(null);
      setCreated(result);
      queryClient.invalidateQueries({ queryKey: ['keys'] });
    },
  });
  const open = (m: Exclude<KeyFormMode, 'edit'>) => {
    create.reset();
    setMode(m);
  };

  return (
    <PageContainer
      title={t('keys.title')}
      subTitle={t('keys.subtitle')}
      extra={
        <>
          <Button icon={<UnorderedListOutlined />} onClick={() => open('batch')}>
            {t('keys.batchCreate')}
          </Button>
          <Button type="primary" icon={<PlusOutlined />} onClick={() => open('create')}>
            {t('keys.create')}
          </Button>
        </>
      }
    >
      {keys.isError ? <ErrorAlert error={keys.error} onRetry={() => keys.refetch()} /> : null}
      <Card>
        <KeyTable
          admin={false}
          keys={keys.data?.items ?? []}
          total={keys.data?.total ?? 0}
          page={paging.page}
          pageSize={paging.page_size}
          loading={keys.isPending}
          onPage={(page, page_size) => setPaging({ page, page_size })}
          emptyText={t('keys.empty')}
        />
      </Card>
      <KeyFormModal
        open={mode !== null}
        mode={mode ?? 'create'}
        admin={false}
        submitting={create.isPending}
        error={create.error}
        onSubmit={(v) => create.mutate(v)}
        onClose={() => setMode(null)}
      />
      <CreatedKeysModal keys={created?.keys ?? null} batchId={created?.batchId} onClose={() => setCreated(null)} />
    </PageContainer>
  );
}
