// The new keys, shown this once: copy each, copy all, or download them as CSV.
import type { CreatedKey } from '../../api/keys';
import { useT } from '../../i18n';
import { downloadText } from '../../lib/download';
import { ShownOnceModal } from '../ShownOnceModal';
import { keysToCsv } from './csv';

interface Props {
  keys: CreatedKey[] | null;
  batchId?: string | null;
  onClose: () => void;
}

export function CreatedKeysModal({ keys, batchId, onClose }: Props) {
  const t = useT();
  return (
    <ShownOnceModal<CreatedKey>
      items={keys}
      title={(n) => (n > 1 ? t('keys.createdMany', { n }) : t('keys.createdOne'))}
      warning={t('keys.shownOnce')}
      batchId={batchId}
      secret={(k) => k.key}
      label={(k) => k.name}
      copyAllFrom={2}
      downloadLabel={t('keys.downloadCsv')}
      onDownload={(list) =>
        downloadText(`apihub-keys-${batchId ?? list[0]?.id ?? 'new'}.csv`, keysToCsv(list), 'text/csv;charset=utf-8')
      }
      onClose={onClose}
      testId="key"
    />
  );
}
