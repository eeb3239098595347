// The price table's columns, shared by /models and /admin/prices.
import { Typography } from 'antd';
import type { ColumnsType } from 'antd/es/table';
import type { ReactNode } from 'react';
import type { Price } from '../../api/prices';
import type { Translate } from '../../i18n';
import { Money } from '../Money';

/** Price columns shared with /admin/prices; `extra` adds columns (the admin's actions). */
export const priceColumns = (t: Translate, extra: ColumnsType<Price> = []): ColumnsType<Price> => {
  const money = (v: string | null | undefined): ReactNode => (v == null ? <Typography.Text type="secondary">—</Typography.Text> : <Money value={v} />);
  return [
    { title: t('prices.model'), dataIndex: 'model', key: 'model', render: (v: string) => <Typography.Text strong>{v}</Typography.Text> },
    { title: t('prices.input'), dataIndex: 'input_price', key: 'input_price', align: 'right', render: money },
    { title: t('prices.output'), dataIndex: 'output_price', key: 'output_price', align: 'right', render: money },
    { title: t('prices.cacheRead'), dataIndex: 'cache_read_price', key: 'cache_read_price', align: 'right', render: money },
    { title: t('prices.cacheWrite'), dataIndex: 'cache_write_price', key: 'cache_write_price', align: 'right', render: money },
    { title: t('prices.perRequest'), dataIndex: 'per_request_price', key: 'per_request_price', align: 'right', render: money },
    { title: t('prices.perImage'), dataIndex: 'per_image_price', key: 'per_image_price', align: 'right', render: money },
    ...extra,
  ];
};
