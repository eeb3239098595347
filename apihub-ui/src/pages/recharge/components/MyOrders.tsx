// The caller's recharge orders, newest first; each links to its result page.
import { useQuery } from '@tanstack/react-query';
import { Button, Card, Tooltip } from 'antd';
import { useState } from 'react';
import { Link } from 'react-router';
import { rechargeApi } from '../../../api';
import { ErrorAlert } from '../../../components/ErrorAlert';
import { OrderTable } from '../../../components/recharge/orders';
import { useI18n } from '../../../i18n';

export const resultPath = (outTradeNo: string) => `/recharge/result?out_trade_no=${encodeURIComponent(outTradeNo)}`;

export function MyOrders() {
  const { t, locale } = useI18n();
  const [paging, setPaging] = useState({ page: 1, page_size: 10 });
  const orders = useQuery(rechargeApi.myOrdersQuery(paging));
  return (
    <Card title={t('orders.title')}>
      {orders.isError ? <ErrorAlert error={orders.error} onRetry={() => orders.refetch()} /> : null}
      <OrderTable
        t={t}
        locale={locale}
        page={orders.data}
        loading={orders.isPending}
        paging={paging}
        onPage={setPaging}
        emptyText={t('orders.empty')}
        actions={(o) => (
          // The API can neither re-sign a pending order's payment nor cancel it: its status page
          // says so and how to go on (a new order); nothing is charged unless it is paid.
          <Tooltip title={o.status === 'pending' ? t('orders.resumeHint') : undefined}>
            <Link to={resultPath(o.out_trade_no)}>
              <Button type="link" size="small">{o.status === 'pending' ? t('orders.check') : t('orders.details')}</Button>
            </Link>
          </Tooltip>
        )}
      />
    </Card>
  );
}
