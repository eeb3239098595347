// Secrets shown this once (new keys, new redemption codes): a warning, the list with a copy button
// each, copy all, a download, and a close button that says they were saved.
import { DownloadOutlined } from '@ant-design/icons';
import { Alert, Button, List, Modal, Space, Typography } from 'antd';
import type { ReactNode } from 'react';
import { useT } from '../i18n';
import { CopyButton } from './CopyButton';

interface Props<T> {
  items: T[] | null;
  title: (count: number) => string;
  /** The warning at the top. */
  warning: string;
  batchId?: string | null;
  /** What each item's copy button copies; all of them, a line each, for "copy all". */
  secret: (item: T) => string;
  /** The item's own line, above its secret (a key's name). */
  label?: (item: T) => ReactNode;
  /** Copy all only from this many items on. */
  copyAllFrom?: number;
  downloadLabel: string;
  onDownload: (items: T[]) => void;
  onClose: () => void;
  testId: string;
}

export function ShownOnceModal<T>(props: Props<T>) {
  const { items, title, warning, batchId, secret, label, copyAllFrom = 1, downloadLabel, onDownload, onClose, testId } = props;
  const t = useT();
  const list = items ?? [];
  return (
    <Modal
      open={list.length > 0}
      title={title(list.length)}
      onCancel={onClose}
      maskClosable={false}
      width={720}
      footer={
        <Space>
          {list.length >= copyAllFrom ? (
            <CopyButton size="middle" text={list.map(secret).join('\n')} label={t('keys.copyAll')} />
          ) : null}
          <Button icon={<DownloadOutlined />} onClick={() => onDownload(list)}>
            {downloadLabel}
          </Button>
          <Button type="primary" onClick={onClose}>
            {t('keys.savedThem')}
          </Button>
        </Space>
      }
    >
      <Alert type="warning" showIcon message={warning} style={{ marginBottom: 16 }} />
      {batchId ? (
        <Typography.Paragraph type="secondary">
          {t('keys.batchId')}: <Typography.Text code data-testid="created-batch">{batchId}</Typography.Text>
        </Typography.Paragraph>
      ) : null}
      <List
        size="small"
        bordered
        style={{ maxHeight: 360, overflowY: 'auto' }}
        dataSource={list}
        renderItem={(item) => (
          <List.Item actions={[<CopyButton key="copy" text={secret(item)} data-testid={`copy-${testId}`} />]}>
            <Space direction="vertical" size={0} style={{ minWidth: 0 }}>
              {label ? <Typography.Text strong>{label(item)}</Typography.Text> : null}
              <Typography.Text code className={`created-${testId}`} data-testid={`created-${testId}`} style={{ wordBreak: 'break-all' }}>
                {secret(item)}
              </Typography.Text>
            </Space>
          </List.Item>
        )}
      />
    </Modal>
  );
}
