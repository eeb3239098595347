// A key's budgets (its owner or an administrator): the shared budgets dialog on /api/keys/{id}/budgets.
import { useMemo } from 'react';
import { budgetsApi } from '../../api';
import type { Key } from '../../api/keys';
import { useT } from '../../i18n';
import { BudgetsModal, type BudgetsTarget } from '../budgets/BudgetsModal';

export function KeyBudgetsModal({ keyView, onClose }: { keyView: Key | null; onClose: () => void }) {
  const t = useT();
  const target = useMemo<BudgetsTarget | null>(
    () =>
      keyView && {
        id: `key-${keyView.id}`,
        title: t('budgets.keyTitle', { name: keyView.name || keyView.key_preview }),
        hint: t('budgets.keyHint'),
        query: budgetsApi.keyBudgetsQuery(keyView.id),
        save: (body) => budgetsApi.setKeyBudgets(keyView.id, body),
      },
    [keyView, t],
  );
  return <BudgetsModal target={target} onClose={onClose} />;
}
