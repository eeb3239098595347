// /login: a session token from POST /api/auth/login.
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { Alert, Button, Card, Form, Segmented, Typography } from 'antd';
import { Link, useLocation, useNavigate } from 'react-router';
import { authApi, session } from '../../api';
import { FormFields, type FieldDef } from '../../components/FormFields';
import { LOCALES, useI18n, type Locale } from '../../i18n';
import { required } from '../../lib/validation';
import { useErrorText } from '../../i18n/errors';

interface Values {
  username: string;
  password: string;
}

const fields: FieldDef[] = [
  { name: 'username', label: 'auth.username', kind: 'text', autoComplete: 'username', validators: [required] },
  { name: 'password', label: 'auth.password', kind: 'password', validators: [required] },
];

export default function LoginPage() {
  const { t, locale, setLocale } = useI18n();
  const errorText = useErrorText();
  const navigate = useNavigate();
  const location = useLocation();
  const queryClient = useQueryClient();
  const state = (location.state ?? {}) as { from?: string; username?: string; registered?: boolean };
  const mutation = useMutation({
    mutationFn: (v: Values) => authApi.login(v),
    onSuccess: (token) => {
      queryClient.clear();
      session.start(token.access_token);
      navigate(state.from && state.from !== '/login' ? state.from : '/', { replace: true });
    },
  });
  return (
    <div className="auth-page">
      <Card className="auth-card" title={<Typography.Title level={3} style={{ margin: 0 }}>APIHub</Typography.Title>}
        extra={<Segmented<Locale> size="small" value={locale} options={LOCALES} onChange={setLocale} />}>
        <Typography.Paragraph type="secondary">{t('auth.loginTitle')}</Typography.Paragraph>
        {state.registered ? <Alert type="success" showIcon message={t('auth.registered')} style={{ marginBottom: 16 }} /> : null}
        {mutation.isError ? (
          <Alert type="error" showIcon message={errorText(mutation.error)} style={{ marginBottom: 16 }} />
        ) : null}
        <Form<Values> name="login" layout="vertical" onFinish={(v) => mutation.mutate(v)} initialValues={{ username: state.username }}>
          <FormFields fields={fields} />
          <Button type="primary" htmlType="submit" block loading={mutation.isPending}>
            {t('auth.login')}
          </Button>
        </Form>
        <Typography.Paragraph style={{ marginTop: 16, marginBottom: 0, textAlign: 'center' }}>
          {t('auth.noAccount')} <Link to="/register">{t('auth.register')}</Link>
        </Typography.Paragraph>
      </Card>
    </div>
  );
}
