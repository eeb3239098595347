// /usage: the caller's usage over a chosen period, per day and per model, and the top keys.
import { useQuery } from '@tanstack/react-query';
import { Col, Row } from 'antd';
import { statsApi } from '../../api';
import { ErrorAlert } from '../../components/ErrorAlert';
import { PageContainer } from '../../components/PageContainer';
import { RangeSelect, rangeQuery, rangeTitle, useDayRange } from '../../components/stats/range';
import { UsageReportView } from '../../components/stats/UsageReportView';
import { useI18n } from '../../i18n';
import { TopKeys } from './TopKeys';

export default function UsagePage() {
  const { t, locale } = useI18n();
  const [range, setRange] = useDayRange(30);
  const stats = useQuery(statsApi.myStatsQuery(rangeQuery(range)));
  return (
    <PageContainer title={t('usage.title')} subTitle={t('usage.subtitle')} extra={<RangeSelect value={range} onChange={setRange} />}>
      {stats.isError ? <ErrorAlert error={stats.error} onRetry={() => stats.refetch()} /> : null}
      <Row gutter={[16, 16]}>
        <Col span={24}>
          <UsageReportView report={stats.data} loading={stats.isPending} title={rangeTitle(t, locale, range)} />
        </Col>
        <Col xs={24} xl={12}>
          <TopKeys />
        </Col>
      </Row>
    </PageContainer>
  );
}
