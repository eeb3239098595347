import { describe, expect, it } from 'vitest';
import { formatDateTime, formatDateTimeIn, formatDay, zoneLabel } from './format';

describe('dates', () => {
  it('writes a time one way per language, with its zone', () => {
    const iso = '2025-06-14T05:20:05Z';
    const zone = zoneLabel(new Date(iso));
    expect(formatDateTime(iso, 'en')).toMatch(/^\d{1,2} Jun 2025, \d\d:\d\d:05 UTC/);
    expect(formatDateTime(iso, 'en').endsWith(zone)).toBe(true);
    expect(formatDateTime(iso, 'zh-CN')).toMatch(/^2025年6月\d{1,2}日 \d\d:\d\d:05 UTC/);
    expect(formatDateTime(null)).toBe('—');
  });

  it('shows statistics days as dates without shifting them', () => {
    expect(formatDay('2025-06-14', 'en')).toBe('14 Jun');
    expect(formatDay('2025-06-14', 'zh-CN')).toBe('6月14日');
    expect(formatDay('2025-06-14', 'en', true)).toBe('14 Jun 2025');
  });

  it("writes a budget window's time in the gateway's zone, named", () => {
    const iso = '2026-12-04T16:00:00Z';
    expect(formatDateTimeIn(iso, 'en', 'Asia/Shanghai')).toBe('5 Dec 2026, 00:00 Asia/Shanghai');
    expect(formatDateTimeIn(iso, 'zh-CN', 'Asia/Shanghai')).toBe('2026年12月5日 00:00 Asia/Shanghai');
    expect(formatDateTimeIn(iso, 'en', 'UTC')).toBe('4 Dec 2026, 16:00 UTC');
    // A zone this browser does not know: the viewer's zone, as everywhere else.
    expect(formatDateTimeIn(iso, 'en', 'Not/AZone')).toBe(formatDateTime(iso, 'en'));
    expect(formatDateTimeIn(null, 'en', 'UTC')).toBe('—');
  });

  it('names the zone by its offset', () => {
    expect(zoneLabel(new Date())).toMatch(/^UTC([+-]\d{1,2}(:\d\d)?)?$/);
  });
});
