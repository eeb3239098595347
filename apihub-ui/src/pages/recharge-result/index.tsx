// /recharge/result?out_trade_no=…: where EPay sends the browser back after paying (with its own
// query parameters, ignored here). Shows the order as the server has it, asking again every 2 s
// while it is pending, and stopping once it is paid.
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { Button, Card, Descriptions, Result, Spin } from 'antd';
import { useEffect } from 'react';
import { Link, useSearchParams } from 'react-router';
import { rechargeApi } from '../../api';
import { Money } from '../../components/Money';
import { PageContainer } from '../../components/PageContainer';
import { OrderStatusTag, Payment, paymentTypeLabel } from '../../components/recharge/orders';
import { useI18n } from '../../i18n';
import { formatDateTime } from '../../lib/format';
import { formatMoney } from '../../lib/money';
import { useErrorText } from '../../i18n/errors';

/** How often a pending order is asked for again. */
export const POLL_MS = 2000;

export default function RechargeResultPage() {
  const { t, locale } = useI18n();
  const errorText = useErrorText();
  const [params] = useSearchParams();
  const outTradeNo = params.get('out_trade_no')?.trim() ?? '';
  const queryClient = useQueryClient();
  const order = useQuery({
    ...rechargeApi.orderQuery(outTradeNo),
    enabled: outTradeNo !== '',
    refetchInterval: (query) => (query.state.data?.status === 'pending' ? POLL_MS : false),
  });
  const paid = order.data?.status === 'paid';
  useEffect(() => {
    if (!paid) return;
    queryClient.invalidateQueries({ queryKey: ['balance'] });
    queryClient.invalidateQueries({ queryKey: ['transactions'] });
    queryClient.invalidateQueries({ queryKey: ['recharge', 'orders'] });
  }, [paid, queryClient]);

  const links = [
    <Link key="recharge" to="/recharge">
      <Button type={paid ? 'default' : 'primary'}>{t('result.backToRecharge')}</Button>
    </Link>,
    <Link key="transactions" to="/transactions">
      <Button type={paid ? 'primary' : 'default'}>{t('result.transactions')}</Button>
    </Link>,
  ];

  let result;
  if (!outTradeNo) {
    result = <Result status="warning" title={t('result.noOrder')} extra={links} />;
  } else if (order.isError) {
    result = <Result status="error" title={t('result.notFound')} subTitle={errorText(order.error)} extra={links} />;
  } else if (!order.data) {
    result = <Result icon={<Spin size="large" />} title={t('result.pending')} extra={links} />;
  } else if (paid) {
    result = (
      <Result
        status="success"
        title={t('result.paid')}
        subTitle={t('result.paidHelp', { amount: formatMoney(order.data.amount) })}
        extra={links}
      />
    );
  } else {
    const help = (
      <>
        {t('result.pendingHelp')}
        <br />
        {t('orders.resumeHint')}
      </>
    );
    result = <Result icon={<Spin size="large" />} title={t('result.pending')} subTitle={help} extra={links} />;
  }

  return (
    <PageContainer title={t('result.title')}>
      <Card data-testid="recharge-result">
        {result}
        {order.data ? (
          <Descriptions bordered size="small" column={1} style={{ maxWidth: 560, margin: '0 auto' }}>
            <Descriptions.Item label={t('orders.outTradeNo')}>{order.data.out_trade_no}</Descriptions.Item>
            <Descriptions.Item label={t('orders.status')}>
              <OrderStatusTag status={order.data.status} t={t} />
            </Descriptions.Item>
            <Descriptions.Item label={t('orders.amount')}>
              <Money value={order.data.amount} strong />
            </Descriptions.Item>
            <Descriptions.Item label={t('orders.money')}><Payment value={order.data.money} /></Descriptions.Item>
            <Descriptions.Item label={t('orders.paymentType')}>{paymentTypeLabel(t, order.data.payment_type)}</Descriptions.Item>
            <Descriptions.Item label={t('orders.createdAt')}>{formatDateTime(order.data.created_at, locale)}</Descriptions.Item>
            <Descriptions.Item label={t('orders.paidAt')}>{formatDateTime(order.data.paid_at, locale)}</Descriptions.Item>
          </Descriptions>
        ) : null}
      </Card>
    </PageContainer>
  );
}
