// A new batch's codes, shown once after generation: copy each, copy all, or download them as text.
import type { CreatedCodes, RedemptionCode } from '../../../../api/redemption';
import { ShownOnceModal } from '../../../../components/ShownOnceModal';
import { useT } from '../../../../i18n';
import { downloadText } from '../../../../lib/download';

/** The codes as a text file: one a line. */
export const codesToText = (codes: RedemptionCode[]) => codes.map((c) => `${c.code}\n`).join('');

export function CreatedCodesModal({ batch, onClose }: { batch: CreatedCodes | null; onClose: () => void }) {
  const t = useT();
  return (
    <ShownOnceModal<RedemptionCode>
      items={batch?.codes ?? null}
      title={(n) => (n > 1 ? t('codes.createdMany', { n }) : t('codes.createdOne'))}
      warning={t('codes.handOut')}
      batchId={batch?.batch_id}
      secret={(c) => c.code}
      downloadLabel={t('codes.downloadTxt')}
      onDownload={(codes) => downloadText(`apihub-codes-${batch?.batch_id ?? 'new'}.txt`, codesToText(codes))}
      onClose={onClose}
      testId="code"
    />
  );
}
