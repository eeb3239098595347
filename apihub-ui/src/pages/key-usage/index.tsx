// /keys/:id/usage: one key's usage over a period (the caller's own key, or any for administrators),
// and its budgets' current windows when it has any.
import { useQuery } from '@tanstack/react-query';
import { Button } from 'antd';
import { useNavigate, useParams } from 'react-router';
import { budgetsApi, keysApi, statsApi } from '../../api';
import { BudgetsCard } from '../../components/budgets/BudgetsCard';
import { ErrorAlert } from '../../components/ErrorAlert';
import { PageContainer } from '../../components/PageContainer';
import { RangeSelect, rangeQuery, rangeTitle, useDayRange } from '../../components/stats/range';
import { UsageReportView } from '../../components/stats/UsageReportView';
import { useI18n } from '../../i18n';

export default function KeyUsagePage() {
  const { t, locale } = useI18n();
  const navigate = useNavigate();
  const id = Number(useParams().id);
  const [range, setRange] = useDayRange(30);
  const stats = useQuery({ ...statsApi.keyStatsQuery(id, rangeQuery(range)), enabled: Number.isInteger(id) });
  // The name where the key is the caller's; an administrator looking at another's key sees its number.
  const key = useQuery({ ...keysApi.keyQuery(id), enabled: Number.isInteger(id), retry: false });
  const name = key.data ? key.data.name || key.data.key_preview : `#${id}`;
  // Secondary: a failure leaves the card out rather than alarming the page.
  const budgets = useQuery({ ...budgetsApi.keyBudgetsQuery(id), enabled: Number.isInteger(id), retry: false });
  return (
    <PageContainer
      title={t('usage.keyTitle', { name })}
      extra={
        <>
          <RangeSelect value={range} onChange={setRange} />
          <Button onClick={() => navigate(-1)}>{t('usage.back')}</Button>
        </>
      }
    >
      {stats.isError ? <ErrorAlert error={stats.error} onRetry={() => stats.refetch()} /> : null}
      <BudgetsCard
        list={budgets.data}
        title={t('budgets.action')}
        hint={budgets.data ? t('budgets.zone', { zone: budgets.data.time_zone }) : ''}
        testId="key-budgets"
        style={{ marginBottom: 16 }}
      />
      <UsageReportView report={stats.data} loading={stats.isPending} title={rangeTitle(t, locale, range)} />
    </PageContainer>
  );
}
