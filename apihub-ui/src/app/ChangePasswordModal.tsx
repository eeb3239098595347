// POST /api/auth/password. Every earlier session ends with it, so the user logs in again.
import { useMutation } from '@tanstack/react-query';
import { Alert, App, Form, Modal } from 'antd';
import { authApi, session } from '../api';
import { FormFields, type FieldDef } from '../components/FormFields';
import { useT } from '../i18n';
import { password, required, sameAs } from '../lib/validation';
import { useErrorText } from '../i18n/errors';

interface Values {
  current_password: string;
  new_password: string;
  confirm: string;
}

const fields: FieldDef[] = [
  { name: 'current_password', label: 'password.current', kind: 'password', validators: [required] },
  {
    name: 'new_password',
    label: 'password.new',
    kind: 'password',
    autoComplete: 'new-password',
    validators: [required, password],
  },
  {
    name: 'confirm',
    label: 'password.confirm',
    kind: 'password',
    autoComplete: 'new-password',
    validators: [required, sameAs('new_password')],
    dependencies: ['new_password'],
  },
];

export function ChangePasswordModal({ open, onClose }: { open: boolean; onClose: () => void }) {
  const t = useT();
  const errorText = useErrorText();
  const { message } = App.useApp();
  const [form] = Form.useForm<Values>();
  const mutation = useMutation({
    mutationFn: (v: Values) =>
      authApi.changePassword({ current_password: v.current_password, new_password: v.new_password }),
    onSuccess: () => {
      message.success(t('password.changed'));
      onClose();
      session.end('logout');
    },
  });
  const close = () => {
    mutation.reset();
    onClose();
  };
  return (
    <Modal
      open={open}
      title={t('password.title')}
      onCancel={close}
      onOk={() => form.submit()}
      confirmLoading={mutation.isPending}
      destroyOnHidden
    >
      {/* Inline, like every other dialog; the button is usable again as soon as the answer comes. */}
      {mutation.isError ? (
        <Alert type="error" showIcon message={errorText(mutation.error)} style={{ marginBottom: 16 }} data-testid="password-error" />
      ) : null}
      <Form form={form} name="password" layout="vertical" onFinish={(v) => mutation.mutate(v)} preserve={false}>
        <FormFields fields={fields} />
      </Form>
    </Modal>
  );
}
