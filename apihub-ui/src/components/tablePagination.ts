// The pagination every paged table uses: page, size changer, the total, and a change handler.
import type { TablePaginationConfig } from 'antd';
import type { Paging } from '../api/keys';
import type { Translate } from '../i18n';

export function tablePagination(
  t: Translate,
  paging: Paging,
  total: number,
  onChange: (paging: Paging) => void,
): TablePaginationConfig {
  return {
    current: paging.page,
    pageSize: paging.page_size,
    total,
    showSizeChanger: true,
    pageSizeOptions: [10, 20, 50, 100],
    onChange: (page, page_size) => onChange({ page, page_size }),
    showTotal: (n) => t('common.total', { n }),
  };
}
