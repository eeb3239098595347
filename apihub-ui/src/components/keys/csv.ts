// New keys as CSV, for the one chance to save them.
import type { CreatedKey } from '../../api/keys';

function cell(value: unknown): string {
  const text = value === null || value === undefined ? '' : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** The UTF-8 byte order mark: without it Excel reads the file as the system's code page and garbles Chinese names. */
export const BOM = '\uFEFF';

export function keysToCsv(keys: CreatedKey[]): string {
  const header = ['id', 'name', 'key', 'batch_id', 'expires_at', 'quota_limit', 'allowed_models'];
  const rows = keys.map((k) =>
    [k.id, k.name, k.key, k.batch_id ?? '', k.expires_at ?? '', k.quota_limit ?? '', k.allowed_models.join(' ')]
      .map(cell)
      .join(','),
  );
  return BOM + [header.join(','), ...rows].join('\r\n') + '\r\n';
}
