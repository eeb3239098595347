// The period a statistics page shows: a preset (7, 30 or 90 days up to today) or any two UTC
// days, and its title, which always says which period the figures are for.
import { DatePicker, Segmented, Space } from 'antd';
import dayjs, { type Dayjs } from 'dayjs';
import { useState } from 'react';
import type { Range } from '../../api/stats';
import { useI18n, type Locale, type Translate } from '../../i18n';
import { formatDay, pickerFormat } from '../../lib/format';

export type DayRange = [Dayjs, Dayjs];

const PRESETS = [7, 30, 90] as const;

/** The last `n` days, today included. */
export const lastDays = (n: number): DayRange => [dayjs().subtract(n - 1, 'day').startOf('day'), dayjs().startOf('day')];

/** The query for a range: whole days, `YYYY-MM-DD`. */
export const rangeQuery = (range: DayRange): Range => ({ from: range[0].format('YYYY-MM-DD'), to: range[1].format('YYYY-MM-DD') });

/** How many days a range spans, both ends included. */
export const daysIn = (range: DayRange) => range[1].startOf('day').diff(range[0].startOf('day'), 'day') + 1;

/** `Last 7 days` when it ends today, else `1 Jun 2025 to 7 Jun 2025`. */
export function rangeTitle(t: Translate, locale: Locale, range: DayRange): string {
  if (range[1].isSame(dayjs(), 'day')) return t('adminStats.lastDays', { n: daysIn(range) });
  const q = rangeQuery(range);
  return t('adminStats.between', { from: formatDay(q.from!, locale, true), to: formatDay(q.to!, locale, true) });
}

export function useDayRange(initialDays = 30) {
  return useState<DayRange>(() => lastDays(initialDays));
}

/** Presets and a range picker. */
export function RangeSelect({ value, onChange }: { value: DayRange; onChange: (range: DayRange) => void }) {
  const { t, locale } = useI18n();
  const preset = value[1].isSame(dayjs(), 'day') ? PRESETS.find((n) => n === daysIn(value)) : undefined;
  return (
    <Space wrap>
      <Segmented<number | 'custom'>
        size="middle"
        value={preset ?? 'custom'}
        options={PRESETS.map((n) => ({ value: n, label: t('adminStats.lastDays', { n }) }))}
        onChange={(n) => typeof n === 'number' && onChange(lastDays(n))}
      />
      <DatePicker.RangePicker
        value={value}
        allowClear={false}
        format={pickerFormat(locale)}
        onChange={(v) => v && v[0] && v[1] && onChange([v[0], v[1]])}
        disabledDate={(d) => d.isAfter(dayjs(), 'day')}
        style={{ maxWidth: '100%' }}
      />
    </Space>
  );
}
