// A failed query: the server's message, and a retry.
import { Alert, Button } from 'antd';
import { useT } from '../i18n';
import { useErrorText } from '../i18n/errors';

export function ErrorAlert({ error, onRetry }: { error: unknown; onRetry?: () => void }) {
  const t = useT();
  const errorText = useErrorText();
  return (
    <Alert
      type="error"
      showIcon
      message={t('common.loadFailed')}
      description={errorText(error)}
      action={onRetry ? <Button size="small" onClick={onRetry}>{t('common.retry')}</Button> : undefined}
      style={{ marginBottom: 16 }}
    />
  );
}
