// The new keys, shown this once: copy each, copy all, or download them as CSV.
import { DownloadOutlined } from '@ant-design/icons';
import { Alert, Button, List, Modal, Space, Typography } from 'antd';
import type { CreatedKey } from '../../api/keys';
import { useT } from '../../i18n';
import { CopyButton } from '../CopyButton';
import { downloadText, keysToCsv } from './csv';

interface Props {
  keys: CreatedKey[] | null;
  batchId?: string | null;
  onClose: () => void;
}

export function CreatedKeysModal({ keys, batchId, onClose }: Props) {
  const t = useT();
  const open = !!keys && keys.length > 0;
  const all = keys?.map((k) => k.key).join('\n') ?? '';
  return (
    <Modal
      open={open}
      title={keys && keys.length > 1 ? t('keys.createdMany', { n: keys.length }) : t('keys.createdOne')}
      onCancel={onClose}
      maskClosable={false}
      width={720}
      footer={
        <Space>
          {keys && keys.length > 1 ? <CopyButton size="middle" text={all} label={t('keys.copyAll')} /> : null}
          <Button
            icon={<DownloadOutlined />}
            onClick={() => downloadText(`apihub-keys-${batchId ?? keys?.[0]?.id ?? 'new'}.csv`, keysToCsv(keys ?? []))}
          >
            {t('keys.downloadCsv')}
          </Button>
          <Button type="primary" onClick={onClose}>
            {t('keys.savedThem')}
          </Button>
        </Space>
      }
    >
      <Alert type="warning" showIcon message={t('keys.shownOnce')} style={{ marginBottom: 16 }} />
      {batchId ? (
        <Typography.Paragraph type="secondary">
          {t('keys.batchId')}: <Typography.Text code>{batchId}</Typography.Text>
        </Typography.Paragraph>
      ) : null}
      <List
        size="small"
        bordered
        style={{ maxHeight: 360, overflowY: 'auto' }}
        dataSource={keys ?? []}
        renderItem={(k) => (
          <List.Item actions={[<CopyButton key="copy" text={k.key} data-testid="copy-key" />]}>
            <Space direction="vertical" size={0} style={{ minWidth: 0 }}>
              <Typography.Text strong>{k.name}</Typography.Text>
              <Typography.Text code className="created-key" data-testid="created-key" style={{ wordBreak: 'break-all' }}>
                {k.key}
              </Typography.Text>
            </Space>
          </List.Item>
        )}
      />
    </Modal>
  );
}
