// /admin/keys: every key, or one user's or one batch's; keys and batches for a user, with a discount.
import { PlusOutlined, UnorderedListOutlined } from '@ant-design/icons';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { Button, Card, Form, Input, InputNumber } from 'antd';
import { useState } from 'react';
import { keysApi } from '../../../api';
import type { CreatedKey } from '../../../api/keys';
import { ErrorAlert } from '../../../components/ErrorAlert';
import { CreatedKeysModal } from '../../../components/keys/CreatedKeysModal';
import { KeyFormModal } from '../../../components/keys/KeyFormModal';
import { toBatchRequest, toKeyFields, type KeyFormValues } from '../../../components/keys/keyForm';
import { KeyTable } from '../../../components/keys/KeyTable';
import { PageContainer } from '../../../components/PageContainer';
import { UrlFilterForm, useUrlFilter } from '../../../components/UrlFilterForm';
import { useT } from '../../../i18n';

export default function AdminKeysPage() {
  const t = useT();
  const queryClient = useQueryClient();
  const [paging, setPaging] = useState({ page: 1, page_size: 20 });
  const { params, apply } = useUrlFilter(() => setPaging((p) => ({ ...p, page: 1 })));
  const userId = params.get('user_id') ? Number(params.get('user_id')) : undefined;
  const batchId = params.get('batch_id') ?? undefined;
  const keys = useQuery(keysApi.allKeysQuery({ ...paging, user_id: userId, batch_id: batchId }));
  const [mode, setMode] = useState<'create' | 'batch' | null>(null);
  const [created, setCreated] = useState<{ keys: CreatedKey[]; batchId?: string } | null>(null);

  const create = useMutation({
    mutationFn: async (values: KeyFormValues) => {
      const user = values.user_id!;
      if (mode === 'batch') {
        const batch = await keysApi.createUserBatch(user, toBatchRequest(values, true));
        return { keys: batch.keys, batchId: batch.batch_id };
      }
      return { keys: [await keysApi.createUserKey(user, toKeyFields(values, true))] };
    },
    onSuccess: (result) => {
      setMode(null);
      setCreated(result);
      queryClient.invalidateQueries({ queryKey: ['keys'] });
    },
  });

  return (
    <PageContainer
      title={t('adminKeys.title')}
      extra={
        <>
          <Button icon={<UnorderedListOutlined />} onClick={() => { create.reset(); setMode('batch'); }}>
            {t('adminKeys.batchForUser')}
          </Button>
          <Button type="primary" icon={<PlusOutlined />} onClick={() => { create.reset(); setMode('create'); }}>
            {t('adminKeys.createForUser')}
          </Button>
        </>
      }
    >
      {keys.isError ? <ErrorAlert error={keys.error} onRetry={() => keys.refetch()} /> : null}
      <Card>
        <UrlFilterForm params={params} apply={apply}>
          <Form.Item name="user_id" label={t('keys.userId')}>
            <InputNumber min={1} precision={0} style={{ width: 120 }} />
          </Form.Item>
          <Form.Item name="batch_id" label={t('keys.batchId')}>
            <Input allowClear style={{ width: 240 }} />
          </Form.Item>
        </UrlFilterForm>
        <KeyTable
          admin
          keys={keys.data?.items ?? []}
          total={keys.data?.total ?? 0}
          page={paging.page}
          pageSize={paging.page_size}
          loading={keys.isPending}
          onPage={(page, page_size) => setPaging({ page, page_size })}
          emptyText={t('adminKeys.empty')}
        />
      </Card>
      <KeyFormModal
        open={mode !== null}
        mode={mode ?? 'create'}
        admin
        forUser
        initialUserId={userId}
        submitting={create.isPending}
        error={create.error}
        onSubmit={(v) => create.mutate(v)}
        onClose={() => setMode(null)}
      />
      <CreatedKeysModal keys={created?.keys ?? null} batchId={created?.batchId} onClose={() => setCreated(null)} />
    </PageContainer>
  );
}
