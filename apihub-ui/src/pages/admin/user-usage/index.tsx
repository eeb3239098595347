// /admin/users/:id/usage: one user's usage over a period, for administrators, and the user's
// budgets' current windows when they have any.
import { useQuery } from '@tanstack/react-query';
import { Button } from 'antd';
import { Link, useNavigate, useParams } from 'react-router';
import { budgetsApi, statsApi, usersApi } from '../../../api';
import { BudgetsCard } from '../../../components/budgets/BudgetsCard';
import { ErrorAlert } from '../../../components/ErrorAlert';
import { PageContainer } from '../../../components/PageContainer';
import { RangeSelect, rangeQuery, rangeTitle, useDayRange } from '../../../components/stats/range';
import { UsageReportView } from '../../../components/stats/UsageReportView';
import { useI18n } from '../../../i18n';

export default function UserUsagePage() {
  const { t, locale } = useI18n();
  const navigate = useNavigate();
  const id = Number(useParams().id);
  const [range, setRange] = useDayRange(30);
  const stats = useQuery({ ...statsApi.userStatsQuery(id, rangeQuery(range)), enabled: Number.isInteger(id) });
  const user = useQuery({ ...usersApi.userQuery(id), enabled: Number.isInteger(id) });
  const name = user.data ? `${user.data.username} (#${id})` : `#${id}`;
  // Secondary: a failure leaves the card out rather than alarming the page.
  const budgets = useQuery({ ...budgetsApi.userBudgetsQuery(id), enabled: Number.isInteger(id), retry: false });
  return (
    <PageContainer
      title={t('usage.userTitle', { user: name })}
      extra={
        <>
          <RangeSelect value={range} onChange={setRange} />
          <Link to={`/admin/keys?user_id=${id}`}>
            <Button>{t('users.keys')}</Button>
          </Link>
          <Button onClick={() => navigate(-1)}>{t('usage.back')}</Button>
        </>
      }
    >
      {stats.isError ? <ErrorAlert error={stats.error} onRetry={() => stats.refetch()} /> : null}
      <BudgetsCard
        list={budgets.data}
        title={t('budgets.action')}
        hint={budgets.data ? t('budgets.zone', { zone: budgets.data.time_zone }) : ''}
        testId="user-budgets"
        style={{ marginBottom: 16 }}
      />
      <UsageReportView report={stats.data} loading={stats.isPending} title={rangeTitle(t, locale, range)} />
    </PageContainer>
  );
}
