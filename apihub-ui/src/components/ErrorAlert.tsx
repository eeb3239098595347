// A failed query: the server's message, and a retry.
import { Alert, Button } from 'antd';
import { errorMessage } from '../api';
import { useT } from '../i18n';

export function ErrorAlert({ error, onRetry }: { error: unknown; onRetry?: () => void }) {
  const t = useT();
  return (
    <Alert
      type="error"
      showIcon
      message={t('common.loadFailed')}
      description={errorMessage(error)}
      action={onRetry ? <Button size="small" onClick={onRetry}>{t('common.retry')}</Button> : undefined}
      style={{ marginBottom: 16 }}
    />
  );
}
