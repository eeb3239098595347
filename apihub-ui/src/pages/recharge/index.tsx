// /recharge: redeem a code; online payment is not available yet, otherwise credit comes from an administrator.
import { Card, Col, Descriptions, Result, Row } from 'antd';
import { useMe } from '../../app/useSession';
import { PageContainer } from '../../components/PageContainer';
import { useT } from '../../i18n';
import { RedeemCard } from './components/RedeemCard';

export default function RechargePage() {
  const t = useT();
  const me = useMe();
  return (
    <PageContainer title={t('recharge.title')}>
      <Row gutter={[16, 16]}>
        <Col xs={24} xl={12}>
          <RedeemCard />
        </Col>
        <Col xs={24} xl={12}>
          <Card>
            <Result status="info" title={t('recharge.unavailable')} subTitle={t('recharge.howTo')} />
            {me.data ? (
              <Descriptions bordered size="small" column={1} style={{ maxWidth: 480, margin: '0 auto' }}>
                <Descriptions.Item label={t('recharge.yourUsername')}>{me.data.username}</Descriptions.Item>
                <Descriptions.Item label={t('recharge.yourId')}>{me.data.id}</Descriptions.Item>
              </Descriptions>
            ) : null}
          </Card>
        </Col>
      </Row>
    </PageContainer>
  );
}
