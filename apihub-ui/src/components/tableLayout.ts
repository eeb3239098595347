// Table layout shared by the wide tables: every column has a width, the table scrolls inside its
// card at the sum of them, and on phones no column is pinned (a pinned 300 px column would be all
// a 390 px screen shows).
import { Grid } from 'antd';
import type { ColumnsType } from 'antd/es/table';

/** The sum of the columns' widths (columns without one count `fallback`): the table's scroll.x. */
export function tableWidth<T>(columns: ColumnsType<T>, fallback = 160): number {
  return columns.reduce((sum, c) => sum + (typeof c.width === 'number' ? c.width : fallback), 0);
}

/** Whether the screen is narrower than antd's `md` (768 px). */
export function usePhone(): boolean {
  return Grid.useBreakpoint().md === false;
}

/** The columns as a phone shows them: none pinned. */
export function unpinned<T>(columns: ColumnsType<T>, phone: boolean): ColumnsType<T> {
  return phone ? columns.map((c) => ({ ...c, fixed: undefined })) : columns;
}
