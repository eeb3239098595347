// Usage statistics shown on the dashboard and the administrator's statistics page.
import { Segmented } from 'antd';
import type { ColumnsType } from 'antd/es/table';
import type { ModelUsage, UsageSummary } from '../../api/stats';
import { useT, type Locale, type MessageKey, type Translate } from '../../i18n';
import { formatCount } from '../../lib/format';
import { formatMoney } from '../../lib/money';
import { Money } from '../Money';
import { ShareBar } from '../ShareBar';

export type Metric = 'charged' | 'requests' | 'total_tokens';

export const METRICS: { value: Metric; label: MessageKey }[] = [
  { value: 'charged', label: 'dashboard.metric.spend' },
  { value: 'requests', label: 'dashboard.metric.calls' },
  { value: 'total_tokens', label: 'dashboard.metric.tokens' },
];

/** The exact text and the drawing size of one metric of a summary. */
export function metricOf(usage: UsageSummary, metric: Metric, locale: Locale): { value: number; display: string } {
  if (metric === 'charged') return { value: Number(usage.charged), display: formatMoney(usage.charged) };
  return { value: usage[metric], display: formatCount(usage[metric], locale) };
}

export const EMPTY_USAGE: UsageSummary = {
  requests: 0,
  succeeded: 0,
  prompt_tokens: 0,
  completion_tokens: 0,
  total_tokens: 0,
  raw_cost: '0',
  charged: '0',
};

export const modelColumns = (t: Translate, locale: Locale, maxCharged: number): ColumnsType<ModelUsage> => [
  { title: t('stats.model'), dataIndex: 'model', key: 'model' },
  { title: t('stats.requests'), dataIndex: 'requests', key: 'requests', align: 'right', render: (v: number) => <span className="num">{formatCount(v, locale)}</span> },
  {
    title: t('stats.tokens'),
    key: 'tokens',
    align: 'right',
    render: (_, r) => (
      <span className="num" title={`${formatCount(r.prompt_tokens, locale)} + ${formatCount(r.completion_tokens, locale)}`}>
        {formatCount(r.total_tokens, locale)}
      </span>
    ),
  },
  {
    title: t('stats.charged'),
    key: 'charged',
    render: (_, r) => (
      <ShareBar share={maxCharged > 0 ? Number(r.charged) / maxCharged : 0}>
        <Money value={r.charged} />
      </ShareBar>
    ),
  },
];

/** Switches the metric a per-day chart draws. */
export function MetricSwitch({ value, onChange }: { value: Metric; onChange: (m: Metric) => void }) {
  const t = useT();
  return (
    <Segmented<Metric>
      size="small"
      value={value}
      onChange={onChange}
      options={METRICS.map((m) => ({ value: m.value, label: t(m.label) }))}
    />
  );
}
