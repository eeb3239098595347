// /admin/prices: the price list, with set (create or replace) and delete.
import { PlusOutlined } from '@ant-design/icons';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { App, Button, Card, Empty, Form, Table } from 'antd';
import { useEffect, useState } from 'react';
import { pricesApi } from '../../../api';
import type { Price, PriceRequest } from '../../../api/prices';
import { ErrorAlert } from '../../../components/ErrorAlert';
import { EditDeleteActions, FormModal } from '../../../components/EditableList';
import type { FieldDef } from '../../../components/FormFields';
import { PageContainer } from '../../../components/PageContainer';
import { useT } from '../../../i18n';
import { decimal, maxLength, required } from '../../../lib/validation';
import { priceColumns } from '../../../components/prices/columns';
import { useErrorText } from '../../../i18n/errors';

type Values = Record<'model' | 'input_price' | 'output_price', string> &
  Partial<Record<'cache_read_price' | 'cache_write_price' | 'per_request_price' | 'per_image_price', string>>;

const price = decimal({ allowZero: true });

const fields = (editing: boolean): FieldDef[] => [
  { name: 'model', label: 'prices.model', kind: 'text', validators: [required, maxLength(200)], hidden: editing },
  { name: 'input_price', label: 'prices.input', kind: 'decimal', help: 'prices.perMillion', validators: [required, price] },
  { name: 'output_price', label: 'prices.output', kind: 'decimal', help: 'prices.perMillion', validators: [required, price] },
  { name: 'cache_read_price', label: 'prices.cacheRead', kind: 'decimal', help: 'prices.defaultsToInput', validators: [price] },
  { name: 'cache_write_price', label: 'prices.cacheWrite', kind: 'decimal', help: 'prices.defaultsToInput', validators: [price] },
  { name: 'per_request_price', label: 'prices.perRequest', kind: 'decimal', validators: [price] },
  { name: 'per_image_price', label: 'prices.perImage', kind: 'decimal', validators: [price] },
];

/** The request body: required prices as given, optional ones null when empty. */
export function toPriceRequest(v: Values): PriceRequest {
  const opt = (x?: string) => (x && x.trim() ? x.trim() : null);
  return {
    input_price: v.input_price.trim(),
    output_price: v.output_price.trim(),
    cache_read_price: opt(v.cache_read_price),
    cache_write_price: opt(v.cache_write_price),
    per_request_price: opt(v.per_request_price),
    per_image_price: opt(v.per_image_price),
  };
}

export default function AdminPricesPage() {
  const t = useT();
  const errorText = useErrorText();
  const { message } = App.useApp();
  const queryClient = useQueryClient();
  const prices = useQuery(pricesApi.pricesQuery());
  const [editing, setEditing] = useState<Price | 'new' | null>(null);
  const [form] = Form.useForm<Values>();
  const save = useMutation({
    mutationFn: (v: Values) => pricesApi.setPrice(editing === 'new' ? v.model.trim() : (editing as Price).model, toPriceRequest(v)),
    onSuccess: (p) => {
      message.success(t('prices.saved', { model: p.model }));
      setEditing(null);
      queryClient.invalidateQueries({ queryKey: ['prices'] });
    },
  });
  const remove = useMutation({
    mutationFn: (model: string) => pricesApi.deletePrice(model),
    onSuccess: () => {
      message.success(t('prices.deleted'));
      queryClient.invalidateQueries({ queryKey: ['prices'] });
    },
    // A statement, not the toast's promise: the mutation must not wait for the toast to close.
    onError: (e) => {
      message.error(errorText(e));
    },
  });
  useEffect(() => {
    if (!editing) return;
    save.reset();
    form.resetFields();
    if (editing !== 'new') {
      const { model, ...rest } = editing;
      form.setFieldsValue({ model, ...Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, v ?? undefined])) });
    }
    // The form follows the row being edited only.
  }, [editing]);
  const actions = priceColumns(t, [
    {
      title: t('common.actions'),
      key: 'actions',
      render: (_, p) => (
        <EditDeleteActions
          onEdit={() => setEditing(p)}
          confirm={t('prices.confirmDelete', { model: p.model })}
          onDelete={() => remove.mutate(p.model)}
        />
      ),
    },
  ]);
  return (
    <PageContainer
      title={t('prices.title')}
      subTitle={t('models.subtitle')}
      extra={
        <Button type="primary" icon={<PlusOutlined />} onClick={() => setEditing('new')}>
          {t('prices.set')}
        </Button>
      }
    >
      {prices.isError ? <ErrorAlert error={prices.error} onRetry={() => prices.refetch()} /> : null}
      <Card>
        <Table<Price>
          rowKey="model"
          columns={actions}
          dataSource={prices.data ?? []}
          loading={prices.isPending}
          pagination={false}
          scroll={{ x: 900 }}
          locale={{ emptyText: <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={t('models.empty')} /> }}
        />
      </Card>
      <FormModal<Values>
        open={editing !== null}
        title={editing && editing !== 'new' ? t('prices.editTitle', { model: editing.model }) : t('prices.set')}
        name="price"
        form={form}
        fields={fields(editing !== null && editing !== 'new')}
        saving={save.isPending}
        error={save.isError ? save.error : null}
        onCancel={() => setEditing(null)}
        onFinish={(v) => save.mutate(v)}
      />
    </PageContainer>
  );
}
