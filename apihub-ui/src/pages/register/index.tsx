// /register: POST /api/auth/register, then on to /login.
import { useMutation } from '@tanstack/react-query';
import { Alert, Button, Card, Form, Segmented, Typography } from 'antd';
import { Link, useNavigate } from 'react-router';
import { authApi } from '../../api';
import { FormFields, type FieldDef } from '../../components/FormFields';
import { LOCALES, useI18n, type Locale } from '../../i18n';
import { email, password, required, sameAs, username } from '../../lib/validation';
import { useErrorText } from '../../i18n/errors';

interface Values {
  username: string;
  email?: string;
  password: string;
  confirm: string;
}

const fields: FieldDef[] = [
  {
    name: 'username',
    label: 'auth.username',
    kind: 'text',
    autoComplete: 'username',
    help: 'auth.usernameHelp',
    validators: [required, username],
  },
  { name: 'email', label: 'auth.emailOptional', kind: 'email', validators: [email] },
  {
    name: 'password',
    label: 'auth.password',
    kind: 'password',
    autoComplete: 'new-password',
    help: 'auth.passwordHelp',
    validators: [required, password],
  },
  {
    name: 'confirm',
    label: 'auth.confirmPassword',
    kind: 'password',
    autoComplete: 'new-password',
    dependencies: ['password'],
    validators: [required, sameAs('password')],
  },
];

export default function RegisterPage() {
  const { t, locale, setLocale } = useI18n();
  const errorText = useErrorText();
  const navigate = useNavigate();
  const mutation = useMutation({
    mutationFn: (v: Values) =>
      authApi.register({ username: v.username, password: v.password, email: v.email?.trim() || null }),
    onSuccess: (user) => navigate('/login', { state: { username: user.username, registered: true } }),
  });
  return (
    <div className="auth-page">
      <Card className="auth-card" title={<Typography.Title level={3} style={{ margin: 0 }}>APIHub</Typography.Title>}
        extra={<Segmented<Locale> size="small" value={locale} options={LOCALES} onChange={setLocale} />}>
        <Typography.Paragraph type="secondary">{t('auth.registerTitle')}</Typography.Paragraph>
        {mutation.isError ? (
          <Alert type="error" showIcon message={errorText(mutation.error)} style={{ marginBottom: 16 }} />
        ) : null}
        <Form<Values> name="register" layout="vertical" onFinish={(v) => mutation.mutate(v)}>
          <FormFields fields={fields} />
          <Button type="primary" htmlType="submit" block loading={mutation.isPending}>
            {t('auth.register')}
          </Button>
        </Form>
        <Typography.Paragraph style={{ marginTop: 16, marginBottom: 0, textAlign: 'center' }}>
          {t('auth.haveAccount')} <Link to="/login">{t('auth.login')}</Link>
        </Typography.Paragraph>
      </Card>
    </div>
  );
}
