// /keys/:id/usage: one key's usage over a period (the caller's own key, or any for administrators).
import { useQuery } from '@tanstack/react-query';
import { Button } from 'antd';
import { useNavigate, useParams } from 'react-router';
import { keysApi, statsApi } from '../../api';
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
      <UsageReportView report={stats.data} loading={stats.isPending} title={rangeTitle(t, locale, range)} />
    </PageContainer>
  );
}
