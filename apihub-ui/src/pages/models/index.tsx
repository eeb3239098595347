// /models: the models with a price, in credits per 1,000,000 tokens, searchable, each name
// copyable; where online recharge sells credit, the input and output prices in money too.
import { useQuery } from '@tanstack/react-query';
import { Card, Empty, Input, Space, Table, Typography } from 'antd';
import type { ColumnsType } from 'antd/es/table';
import { useMemo, useState } from 'react';
import { pricesApi, rechargeApi } from '../../api';
import type { Price } from '../../api/prices';
import { CopyButton } from '../../components/CopyButton';
import { ErrorAlert } from '../../components/ErrorAlert';
import { PageContainer } from '../../components/PageContainer';
import { priceColumns } from '../../components/prices/columns';
import { tableWidth } from '../../components/tableLayout';
import { useT, type Translate } from '../../i18n';
import { useCurrency, type Currency } from '../../lib/currency';
import { formatMoney, multiply } from '../../lib/money';

/** Money per 1M tokens: credits × the price of a credit, exactly, to 6 digits. */
const inMoney = (credits: string, creditPrice: string) => formatMoney(multiply(credits, creditPrice, 6), { minFractionDigits: 2 });

function columns(t: Translate, creditPrice: string | undefined, currency: Currency): ColumnsType<Price> {
  const base = priceColumns(t).map((c) =>
    c.key === 'model'
      ? {
          ...c,
          width: 260,
          render: (v: string) => (
            <Space size={4}>
              <Typography.Text strong>{v}</Typography.Text>
              <CopyButton text={v} label="" type="text" aria-label={t('models.copyName')} title={t('models.copyName')} />
            </Space>
          ),
        }
      : { ...c, width: 130 },
  );
  if (!creditPrice) return base;
  return [
    ...base.slice(0, 3),
    {
      title: t('models.inCurrency', { currency: currency.symbol }),
      key: 'money',
      align: 'right',
      width: 200,
      render: (_, p) => (
        <span className="num" data-testid="price-money">
          {currency.symbol}
          {inMoney(String(p.input_price), creditPrice)} / {currency.symbol}
          {inMoney(String(p.output_price), creditPrice)}
        </span>
      ),
    },
    ...base.slice(3),
  ];
}

export default function ModelsPage() {
  const t = useT();
  const prices = useQuery(pricesApi.pricesQuery());
  const options = useQuery({ ...rechargeApi.rechargeOptionsQuery(), retry: false });
  const currency = useCurrency();
  const [search, setSearch] = useState('');
  const creditPrice = options.data?.enabled ? String(options.data.price) : undefined;
  const shown = useMemo(() => {
    const q = search.trim().toLowerCase();
    return (prices.data ?? []).filter((p) => !q || p.model.toLowerCase().includes(q));
  }, [prices.data, search]);
  const cols = columns(t, creditPrice, currency);
  return (
    <PageContainer
      title={t('models.title')}
      subTitle={
        <>
          {t('models.subtitle')}
          {creditPrice ? ` ${t('currency.perCredit', { price: `${currency.symbol}${formatMoney(creditPrice)}` })}` : ''}
        </>
      }
      extra={
        <Input.Search
          allowClear
          placeholder={t('models.search')}
          aria-label={t('models.search')}
          onChange={(e) => setSearch(e.target.value)}
          style={{ width: 260, maxWidth: '100%' }}
        />
      }
    >
      {prices.isError ? <ErrorAlert error={prices.error} onRetry={() => prices.refetch()} /> : null}
      <Card>
        <Table<Price>
          rowKey="model"
          columns={cols}
          dataSource={shown}
          loading={prices.isPending}
          pagination={false}
          scroll={{ x: tableWidth(cols) }}
          locale={{ emptyText: <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={t('models.empty')} /> }}
        />
      </Card>
    </PageContainer>
  );
}
