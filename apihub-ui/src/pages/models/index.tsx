// /models: the models with a price, in credits per 1,000,000 tokens.
import { useQuery } from '@tanstack/react-query';
import { Card, Empty, Table } from 'antd';
import { pricesApi } from '../../api';
import type { Price } from '../../api/prices';
import { ErrorAlert } from '../../components/ErrorAlert';
import { PageContainer } from '../../components/PageContainer';
import { priceColumns } from '../../components/prices/columns';
import { useT } from '../../i18n';

export default function ModelsPage() {
  const t = useT();
  const prices = useQuery(pricesApi.pricesQuery());
  return (
    <PageContainer title={t('models.title')} subTitle={t('models.subtitle')}>
      {prices.isError ? <ErrorAlert error={prices.error} onRetry={() => prices.refetch()} /> : null}
      <Card>
        <Table<Price>
          rowKey="model"
          columns={priceColumns(t)}
          dataSource={prices.data ?? []}
          loading={prices.isPending}
          pagination={false}
          scroll={{ x: 800 }}
          locale={{ emptyText: <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={t('models.empty')} /> }}
        />
      </Card>
    </PageContainer>
  );
}
