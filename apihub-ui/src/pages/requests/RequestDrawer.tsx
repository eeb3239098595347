// One request of the log, every field: opened from a row of the Requests page.
import { Descriptions, Drawer, Typography } from 'antd';
import type { RequestItem } from '../../api/requests';
import { DiscountRate } from '../../components/DiscountRate';
import { Money } from '../../components/Money';
import { usePhone } from '../../components/tableLayout';
import { useI18n } from '../../i18n';
import { formatCount, formatDateTime } from '../../lib/format';
import { StatusTag } from './StatusTag';

interface Props {
  item: RequestItem | undefined;
  admin: boolean;
  onClose: () => void;
}

export function RequestDrawer({ item, admin, onClose }: Props) {
  const { t, locale } = useI18n();
  const phone = usePhone();
  const count = (n: number) => formatCount(n, locale);
  return (
    <Drawer open={item !== undefined} onClose={onClose} width={phone ? '100%' : 520} title={t('requests.detail')}>
      {item ? (
        <Descriptions column={1} size="small" bordered>
          <Descriptions.Item label={t('requests.requestId')}>
            <Typography.Text code copyable style={{ wordBreak: 'break-all' }}>
              {item.request_id}
            </Typography.Text>
          </Descriptions.Item>
          <Descriptions.Item label={t('requests.time')}>{formatDateTime(item.created_at, locale)}</Descriptions.Item>
          {admin ? (
            <Descriptions.Item label={t('requests.user')}>
              {item.username || '—'} (#{item.user_id})
            </Descriptions.Item>
          ) : null}
          <Descriptions.Item label={t('requests.key')}>
            {item.key_name || '—'} (#{item.key_id})
          </Descriptions.Item>
          <Descriptions.Item label={t('requests.model')}>{item.model}</Descriptions.Item>
          <Descriptions.Item label={t('requests.endpoint')}>
            <Typography.Text code style={{ wordBreak: 'break-all' }}>
              {item.endpoint}
            </Typography.Text>
          </Descriptions.Item>
          {item.route_id != null ? (
            <Descriptions.Item label={t('requests.route')}>
              {item.route_name || '—'} (#{item.route_id})
            </Descriptions.Item>
          ) : null}
          {item.channel != null ? (
            <Descriptions.Item label={t('requests.channel')}>
              {item.channel}
              {item.attempts > 1 ? ` (${t('requests.attempts', { n: item.attempts })})` : null}
            </Descriptions.Item>
          ) : null}
          <Descriptions.Item label={t('requests.stream')}>{item.stream ? t('requests.yes') : t('requests.no')}</Descriptions.Item>
          <Descriptions.Item label={t('requests.status')}>
            <StatusTag status={item.status} />
          </Descriptions.Item>
          <Descriptions.Item label={t('requests.promptTokens')}>{count(item.prompt_tokens)}</Descriptions.Item>
          <Descriptions.Item label={t('requests.completionTokens')}>{count(item.completion_tokens)}</Descriptions.Item>
          <Descriptions.Item label={t('requests.cachedTokens')}>{count(item.cached_tokens)}</Descriptions.Item>
          <Descriptions.Item label={t('requests.rawCost')}>
            <Money value={item.raw_cost} />
          </Descriptions.Item>
          <Descriptions.Item label={t('requests.userDiscount')}>
            <DiscountRate value={item.user_discount} />
          </Descriptions.Item>
          <Descriptions.Item label={t('requests.keyDiscount')}>
            <DiscountRate value={item.key_discount} />
          </Descriptions.Item>
          <Descriptions.Item label={t('requests.charged')}>
            <Money value={item.charged} strong />
          </Descriptions.Item>
          <Descriptions.Item label={t('requests.overage')}>
            <Money value={item.overage} />
          </Descriptions.Item>
          {admin ? (
            <Descriptions.Item label={t('requests.operatorCost')}>
              {item.cost != null ? <Money value={item.cost} /> : <Typography.Text type="secondary">{t('requests.noCostPrice')}</Typography.Text>}
            </Descriptions.Item>
          ) : null}
          <Descriptions.Item label={t('requests.latency')}>{t('requests.ms', { n: count(item.upstream_latency_ms) })}</Descriptions.Item>
          <Descriptions.Item label={t('requests.firstByte')}>
            {item.first_byte_ms != null ? t('requests.ms', { n: count(item.first_byte_ms) }) : '—'}
          </Descriptions.Item>
          <Descriptions.Item label={t('requests.usageSource')}>
            {item.usage_source === 'estimated' ? t('requests.estimated') : t('requests.reported')}
          </Descriptions.Item>
        </Descriptions>
      ) : null}
    </Drawer>
  );
}
