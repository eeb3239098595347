// /recharge: buy credit online when EPay is configured (and the caller's orders), redeem a code,
// or, without online payment, how to get credit from an administrator.
import { useQuery } from '@tanstack/react-query';
import { Card, Col, Descriptions, Result, Row } from 'antd';
import { rechargeApi } from '../../api';
import { useMe } from '../../app/useSession';
import { ErrorAlert } from '../../components/ErrorAlert';
import { PageContainer } from '../../components/PageContainer';
import { useT } from '../../i18n';
import { MyOrders } from './components/MyOrders';
import { RechargeForm } from './components/RechargeForm';
import { RedeemCard } from './components/RedeemCard';

function NotConfigured() {
  const t = useT();
  const me = useMe();
  return (
    <Card data-testid="recharge-unavailable">
      <Result status="info" title={t('recharge.notConfigured')} subTitle={t('recharge.howTo')} />
      {me.data ? (
        <Descriptions bordered size="small" column={1} style={{ maxWidth: 480, margin: '0 auto' }}>
          <Descriptions.Item label={t('recharge.yourUsername')}>{me.data.username}</Descriptions.Item>
          <Descriptions.Item label={t('recharge.yourId')}>{me.data.id}</Descriptions.Item>
        </Descriptions>
      ) : null}
    </Card>
  );
}

export default function RechargePage() {
  const t = useT();
  const options = useQuery(rechargeApi.rechargeOptionsQuery());
  const enabled = options.data?.enabled === true;
  return (
    <PageContainer title={t('recharge.title')}>
      {options.isError ? <ErrorAlert error={options.error} onRetry={() => options.refetch()} /> : null}
      <Row gutter={[16, 16]}>
        <Col xs={24} xl={12}>
          {options.isPending ? <Card loading /> : enabled ? <RechargeForm options={options.data!} /> : <NotConfigured />}
        </Col>
        <Col xs={24} xl={12}>
          <RedeemCard />
        </Col>
        {enabled ? (
          <Col span={24}>
            <MyOrders />
          </Col>
        ) : null}
      </Row>
    </PageContainer>
  );
}
