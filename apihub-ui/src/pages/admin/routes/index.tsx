// /admin/routes: metered routes (any HTTP API behind the gateway's keys and billing), with
// create, edit and delete.
import { PlusOutlined } from '@ant-design/icons';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { App, Button, Card, Empty, Form, Space, Table, Tag, Typography } from 'antd';
import type { ColumnsType } from 'antd/es/table';
import { useEffect, useState } from 'react';
import { routesApi } from '../../../api';
import type { MeteredRoute } from '../../../api/routes';
import { ErrorAlert } from '../../../components/ErrorAlert';
import { EditDeleteActions, FormModal } from '../../../components/EditableList';
import { Money } from '../../../components/Money';
import { PageContainer } from '../../../components/PageContainer';
import { useT } from '../../../i18n';
import { useErrorText } from '../../../i18n/errors';
import { NEW_ROUTE, routeFields, toRouteRequest, toValues, type RouteValues } from './form';

export default function AdminRoutesPage() {
  const t = useT();
  const errorText = useErrorText();
  const { message } = App.useApp();
  const queryClient = useQueryClient();
  const routes = useQuery(routesApi.routesQuery());
  const [editing, setEditing] = useState<MeteredRoute | 'new' | null>(null);
  const [form] = Form.useForm<RouteValues>();
  const save = useMutation({
    mutationFn: (v: RouteValues) =>
      editing === 'new' || editing === null
        ? routesApi.createRoute(toRouteRequest(v))
        : routesApi.updateRoute(editing.id, toRouteRequest(v)),
    onSuccess: (route) => {
      message.success(t('routes.saved', { name: route.name }));
      setEditing(null);
      queryClient.invalidateQueries({ queryKey: ['routes'] });
    },
  });
  const remove = useMutation({
    mutationFn: (id: number) => routesApi.deleteRoute(id),
    onSuccess: () => {
      message.success(t('routes.deleted'));
      queryClient.invalidateQueries({ queryKey: ['routes'] });
    },
    onError: (e) => {
      message.error(errorText(e));
    },
  });
  useEffect(() => {
    if (!editing) return;
    save.reset();
    form.resetFields();
    form.setFieldsValue(editing === 'new' ? NEW_ROUTE : toValues(editing));
    // The form follows the route being edited only.
  }, [editing]);

  const columns: ColumnsType<MeteredRoute> = [
    { title: t('routes.name'), dataIndex: 'name', key: 'name', render: (v: string) => <Typography.Text strong>{v}</Typography.Text> },
    {
      title: t('routes.path'),
      key: 'path',
      render: (_, r) => (
        <Space size={4} wrap>
          {r.methods.map((m) => (
            <Tag key={m}>{m}</Tag>
          ))}
          <Typography.Text code>{r.prefix ? `${r.path}…` : r.path}</Typography.Text>
        </Space>
      ),
    },
    {
      title: t('routes.upstreamUrl'),
      key: 'upstream',
      render: (_, r) => (
        <Space direction="vertical" size={0}>
          <Typography.Text>{r.upstream_url}</Typography.Text>
          <Typography.Text type="secondary">{r.upstream_key_preview ?? t('routes.noUpstreamKey')}</Typography.Text>
        </Space>
      ),
    },
    { title: t('routes.pricePerCall'), dataIndex: 'price_per_call', key: 'price_per_call', align: 'right', render: (v: string) => <Money value={v} /> },
    {
      title: t('routes.pricePerUnit'),
      key: 'price_per_unit',
      align: 'right',
      render: (_, r) =>
        r.price_per_unit == null ? (
          <Typography.Text type="secondary">—</Typography.Text>
        ) : (
          <Space size={4}>
            <Money value={r.price_per_unit} />
            <Typography.Text type="secondary">× {r.units_pointer}</Typography.Text>
          </Space>
        ),
    },
    {
      title: t('routes.enabled'),
      dataIndex: 'enabled',
      key: 'enabled',
      render: (v: boolean) => (v ? <Tag color="green">{t('routes.on')}</Tag> : <Tag>{t('routes.off')}</Tag>),
    },
    {
      title: t('common.actions'),
      key: 'actions',
      render: (_, r) => (
        <EditDeleteActions
          onEdit={() => setEditing(r)}
          confirm={t('routes.confirmDelete', { name: r.name })}
          onDelete={() => remove.mutate(r.id)}
        />
      ),
    },
  ];
  return (
    <PageContainer
      title={t('routes.title')}
      subTitle={t('routes.subtitle')}
      extra={
        <Button type="primary" icon={<PlusOutlined />} onClick={() => setEditing('new')}>
          {t('routes.create')}
        </Button>
      }
    >
      {routes.isError ? <ErrorAlert error={routes.error} onRetry={() => routes.refetch()} /> : null}
      <Card>
        <Table<MeteredRoute>
          rowKey="id"
          columns={columns}
          dataSource={routes.data ?? []}
          loading={routes.isPending}
          pagination={false}
          scroll={{ x: 1000 }}
          locale={{ emptyText: <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={t('routes.empty')} /> }}
        />
      </Card>
      <FormModal<RouteValues>
        open={editing !== null}
        title={editing && editing !== 'new' ? t('routes.editTitle', { name: editing.name }) : t('routes.create')}
        name="route"
        form={form}
        fields={routeFields(editing !== null && editing !== 'new')}
        saving={save.isPending}
        error={save.isError ? save.error : null}
        width={640}
        onCancel={() => setEditing(null)}
        onFinish={(v) => save.mutate(v)}
      />
    </PageContainer>
  );
}
