// The caller's keys that spent most since they were made (the key list's own counters), each
// leading to its usage page.
import { useQuery } from '@tanstack/react-query';
import { Card, Empty, List } from 'antd';
import { Link } from 'react-router';
import { keysApi } from '../../api';
import { Money } from '../../components/Money';
import { ShareBar } from '../../components/ShareBar';
import { useI18n } from '../../i18n';
import { formatCount } from '../../lib/format';
import { compare } from '../../lib/money';

export function TopKeys({ limit = 5 }: { limit?: number }) {
  const { t, locale } = useI18n();
  const keys = useQuery(keysApi.keysQuery({ page: 1, page_size: 200 }));
  const top = [...(keys.data?.items ?? [])]
    .filter((k) => Number(k.quota_used) > 0 || k.calls_total > 0)
    .sort((a, b) => compare(b.quota_used, a.quota_used) ?? 0)
    .slice(0, limit);
  const max = Math.max(0, ...top.map((k) => Number(k.quota_used)));
  return (
    <Card title={t('usage.topKeys')} loading={keys.isPending} data-testid="top-keys">
      {top.length === 0 ? (
        <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={t('dashboard.noUsage')} />
      ) : (
        <List
          size="small"
          dataSource={top}
          renderItem={(k) => (
            <List.Item extra={<span className="num">{t('keys.calls')} {formatCount(k.calls_total, locale)}</span>}>
              <div style={{ minWidth: 0, flex: 1 }}>
                <Link to={`/keys/${k.id}/usage`}>{k.name || k.key_preview}</Link>
                <ShareBar share={max > 0 ? Number(k.quota_used) / max : 0}>
                  <Money value={k.quota_used} />
                </ShareBar>
              </div>
            </List.Item>
          )}
        />
      )}
    </Card>
  );
}
