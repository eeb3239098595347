// A user's budgets (administrators): a cap across all of their keys, on /api/admin/users/{id}/budgets.
import { useMemo } from 'react';
import { budgetsApi } from '../../../../api';
import type { User } from '../../../../api/auth';
import { BudgetsModal, type BudgetsTarget } from '../../../../components/budgets/BudgetsModal';
import { useT } from '../../../../i18n';

export function UserBudgetsModal({ user, onClose }: { user: User | null; onClose: () => void }) {
  const t = useT();
  const target = useMemo<BudgetsTarget | null>(
    () =>
      user && {
        id: `user-${user.id}`,
        title: t('budgets.userTitle', { user: user.username }),
        hint: t('budgets.userHint', { user: user.username }),
        query: budgetsApi.userBudgetsQuery(user.id),
        save: (body) => budgetsApi.setUserBudgets(user.id, body),
      },
    [user, t],
  );
  return <BudgetsModal target={target} onClose={onClose} />;
}
