// /admin/channels: the upstream channels LLM calls go to (priority, weight, dialect and model
// filters, aliases, cost prices) with their health on this node; create, edit and delete.
import { PlusOutlined } from '@ant-design/icons';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { App, Button, Card, Empty, Form, Space, Table, Tag, Tooltip, Typography } from 'antd';
import type { ColumnsType } from 'antd/es/table';
import { useEffect, useState } from 'react';
import { channelsApi } from '../../../api';
import type { Channel } from '../../../api/channels';
import { ErrorAlert } from '../../../components/ErrorAlert';
import { EditDeleteActions, FormModal } from '../../../components/EditableList';
import { PageContainer } from '../../../components/PageContainer';
import { tableWidth } from '../../../components/tableLayout';
import { useT, type Translate } from '../../../i18n';
import { useErrorText } from '../../../i18n/errors';
import { channelFields, NEW_CHANNEL, toChannelRequest, toValues, type ChannelValues } from './form';

const HEALTH_COLORS: Record<string, string> = { closed: 'green', open: 'red', half_open: 'orange' };

/** A channel's breaker state as a coloured tag, with its failures under it. */
function HealthCell({ channel, t }: { channel: Channel; t: Translate }) {
  const h = channel.health;
  if (!h) return <Tag>{t('channels.health.disabled')}</Tag>;
  const known = h.state === 'closed' || h.state === 'open' || h.state === 'half_open';
  return (
    <Space direction="vertical" size={0}>
      <Tag color={HEALTH_COLORS[h.state] ?? 'default'}>{known ? t(`channels.health.${h.state as 'closed' | 'open' | 'half_open'}`) : h.state}</Tag>
      {h.consecutive_failures > 0 ? (
        <Typography.Text type="danger">{t('channels.failuresInRow', { count: h.consecutive_failures })}</Typography.Text>
      ) : null}
      <Typography.Text type="secondary">{t('channels.answeredFailed', { answered: h.answered, failed: h.failed })}</Typography.Text>
    </Space>
  );
}

function channelColumns(t: Translate, onEdit: (c: Channel) => void, onDelete: (c: Channel) => void): ColumnsType<Channel> {
  return [
    { title: t('channels.name'), dataIndex: 'name', key: 'name', width: 160, render: (v: string) => <Typography.Text strong>{v}</Typography.Text> },
    {
      title: t('channels.baseUrl'),
      key: 'base_url',
      width: 240,
      render: (_, c) => (
        <Space direction="vertical" size={0}>
          <Typography.Text style={{ wordBreak: 'break-all' }}>{c.base_url}</Typography.Text>
          <Typography.Text type="secondary">{c.api_key_preview ?? t('channels.noKey')}</Typography.Text>
        </Space>
      ),
    },
    {
      title: t('channels.dialects'),
      key: 'dialects',
      width: 150,
      render: (_, c) =>
        c.dialects.length === 0 ? (
          <Typography.Text type="secondary">{t('channels.allDialects')}</Typography.Text>
        ) : (
          <Space size={4} wrap>
            {c.dialects.map((d) => (
              <Tag key={d}>{t(`channels.dialect.${d}`)}</Tag>
            ))}
          </Space>
        ),
    },
    {
      title: t('channels.models'),
      key: 'models',
      width: 170,
      render: (_, c) => {
        const aliases = Object.entries(c.aliases);
        const costs = Object.entries(c.cost_prices);
        return (
          <Space direction="vertical" size={0}>
            {c.models.length === 0 ? (
              <Typography.Text type="secondary">{t('channels.anyModel')}</Typography.Text>
            ) : (
              <Tooltip title={c.models.join(', ')}>
                <Typography.Text>{t('channels.modelCount', { count: c.models.length })}</Typography.Text>
              </Tooltip>
            )}
            {aliases.length > 0 ? (
              <Tooltip title={aliases.map(([from, to]) => `${from} → ${to}`).join(', ')}>
                <Typography.Text type="secondary">{t('channels.aliasCount', { count: aliases.length })}</Typography.Text>
              </Tooltip>
            ) : null}
            {costs.length > 0 ? (
              <Tooltip title={costs.map(([model, p]) => `${model}: ${p.input_price} / ${p.output_price}`).join(', ')}>
                <Typography.Text type="secondary">{t('channels.costCount', { count: costs.length })}</Typography.Text>
              </Tooltip>
            ) : null}
            {c.default_cost_price ? (
              <Typography.Text type="secondary">
                {t('channels.defaultCost', { input: c.default_cost_price.input_price, output: c.default_cost_price.output_price })}
              </Typography.Text>
            ) : null}
          </Space>
        );
      },
    },
    { title: t('channels.priority'), dataIndex: 'priority', key: 'priority', width: 90, align: 'right' },
    { title: t('channels.weight'), dataIndex: 'weight', key: 'weight', width: 80, align: 'right' },
    {
      title: t('channels.enabled'),
      dataIndex: 'enabled',
      key: 'enabled',
      width: 90,
      render: (v: boolean) => (v ? <Tag color="green">{t('channels.on')}</Tag> : <Tag>{t('channels.off')}</Tag>),
    },
    { title: t('channels.health'), key: 'health', width: 190, render: (_, c) => <HealthCell channel={c} t={t} /> },
    {
      title: t('common.actions'),
      key: 'actions',
      width: 140,
      render: (_, c) => (
        <EditDeleteActions onEdit={() => onEdit(c)} confirm={t('channels.confirmDelete', { name: c.name })} onDelete={() => onDelete(c)} />
      ),
    },
  ];
}

export default function AdminChannelsPage() {
  const t = useT();
  const errorText = useErrorText();
  const { message } = App.useApp();
  const queryClient = useQueryClient();
  const channels = useQuery(channelsApi.channelsQuery());
  const [editing, setEditing] = useState<Channel | 'new' | null>(null);
  const [form] = Form.useForm<ChannelValues>();
  const save = useMutation({
    mutationFn: (v: ChannelValues) =>
      editing === 'new' || editing === null
        ? channelsApi.createChannel(toChannelRequest(v))
        : channelsApi.updateChannel(editing.id, toChannelRequest(v)),
    onSuccess: (channel) => {
      message.success(t('channels.saved', { name: channel.name }));
      setEditing(null);
      queryClient.invalidateQueries({ queryKey: ['channels'] });
    },
  });
  const remove = useMutation({
    mutationFn: (id: number) => channelsApi.deleteChannel(id),
    onSuccess: () => {
      message.success(t('channels.deleted'));
      queryClient.invalidateQueries({ queryKey: ['channels'] });
    },
    onError: (e) => {
      message.error(errorText(e));
    },
  });
  useEffect(() => {
    if (!editing) return;
    save.reset();
    form.resetFields();
    form.setFieldsValue(editing === 'new' ? NEW_CHANNEL : toValues(editing));
    // The form follows the channel being edited only.
  }, [editing]);

  const columns = channelColumns(t, setEditing, (c) => remove.mutate(c.id));
  const stored = editing !== null && editing !== 'new' ? editing : null;
  return (
    <PageContainer
      title={t('channels.title')}
      subTitle={t('channels.subtitle')}
      extra={
        <Button type="primary" icon={<PlusOutlined />} onClick={() => setEditing('new')}>
          {t('channels.create')}
        </Button>
      }
    >
      {channels.isError ? <ErrorAlert error={channels.error} onRetry={() => channels.refetch()} /> : null}
      <Card>
        <Table<Channel>
          rowKey="id"
          columns={columns}
          dataSource={channels.data ?? []}
          loading={channels.isPending}
          pagination={false}
          scroll={{ x: tableWidth(columns) }}
          locale={{ emptyText: <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={t('channels.empty')} /> }}
        />
      </Card>
      <FormModal<ChannelValues>
        open={editing !== null}
        title={stored ? t('channels.editTitle', { name: stored.name }) : t('channels.create')}
        name="channel"
        form={form}
        fields={channelFields(stored !== null, stored?.api_key_preview != null)}
        saving={save.isPending}
        error={save.isError ? save.error : null}
        width={640}
        onCancel={() => setEditing(null)}
        onFinish={(v) => save.mutate(v)}
      />
    </PageContainer>
  );
}
