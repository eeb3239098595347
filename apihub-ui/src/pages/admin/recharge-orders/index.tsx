// /admin/recharge-orders: every online recharge order, filtered by status, user and order number;
// a pending order whose payment was confirmed elsewhere can be completed by hand.
import { useQuery } from '@tanstack/react-query';
import { Button, Card, Form, Input, InputNumber, Select } from 'antd';
import { useState } from 'react';
import { rechargeApi } from '../../../api';
import { ORDER_STATUSES, type RechargeOrder } from '../../../api/recharge';
import { ErrorAlert } from '../../../components/ErrorAlert';
import { PageContainer } from '../../../components/PageContainer';
import { OrderTable } from '../../../components/recharge/orders';
import { UrlFilterForm, useUrlFilter } from '../../../components/UrlFilterForm';
import { useUsernames } from '../../../components/useUsernames';
import { useI18n } from '../../../i18n';
import { CompleteOrderModal } from './components/CompleteOrderModal';

export default function AdminRechargeOrdersPage() {
  const { t, locale } = useI18n();
  const userName = useUsernames();
  const [paging, setPaging] = useState({ page: 1, page_size: 20 });
  const { params, apply } = useUrlFilter(() => setPaging((p) => ({ ...p, page: 1 })));
  const userId = Number(params.get('user_id'));
  const orders = useQuery(
    rechargeApi.adminOrdersQuery({
      ...paging,
      status: params.get('status') || undefined,
      user_id: Number.isInteger(userId) && userId > 0 ? userId : undefined,
      out_trade_no: params.get('out_trade_no') || undefined,
    }),
  );
  const [completing, setCompleting] = useState<RechargeOrder | null>(null);
  return (
    <PageContainer title={t('adminOrders.title')} subTitle={t('adminOrders.subtitle')}>
      {orders.isError ? <ErrorAlert error={orders.error} onRetry={() => orders.refetch()} /> : null}
      <Card>
        <UrlFilterForm params={params} apply={apply}>
          <Form.Item name="status" label={t('orders.status')}>
            <Select
              allowClear
              style={{ width: 130 }}
              options={ORDER_STATUSES.map((s) => ({ value: s, label: t(`orders.status.${s}`) }))}
            />
          </Form.Item>
          <Form.Item name="user_id" label={t('orders.user')}>
            <InputNumber min={1} precision={0} style={{ width: 120 }} />
          </Form.Item>
          <Form.Item name="out_trade_no" label={t('orders.outTradeNo')}>
            <Input allowClear style={{ width: 260 }} />
          </Form.Item>
        </UrlFilterForm>
        <OrderTable
          t={t}
          locale={locale}
          admin
          userName={userName}
          page={orders.data}
          loading={orders.isPending}
          paging={paging}
          onPage={setPaging}
          emptyText={t('adminOrders.empty')}
          actions={(o) =>
            o.status === 'pending' ? (
              <Button type="link" size="small" danger onClick={() => setCompleting(o)}>
                {t('adminOrders.complete')}
              </Button>
            ) : null
          }
        />
      </Card>
      <CompleteOrderModal order={completing} onClose={() => setCompleting(null)} />
    </PageContainer>
  );
}
