// A user's discount rate: every charge is multiplied by it.
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { Alert, App, Form, Modal } from 'antd';
import { useEffect } from 'react';
import { creditApi } from '../../../../api';
import type { User } from '../../../../api/auth';
import { FormFields, type FieldDef } from '../../../../components/FormFields';
import { useT } from '../../../../i18n';
import { discountRate, required } from '../../../../lib/validation';
import { useErrorText } from '../../../../i18n/errors';

const fields: FieldDef[] = [
  { name: 'discount_rate', label: 'users.discount', kind: 'decimal', help: 'keys.discountHelp', validators: [required, discountRate] },
];

export function DiscountModal({ user, onClose }: { user: User | null; onClose: () => void }) {
  const t = useT();
  const errorText = useErrorText();
  const { message } = App.useApp();
  const queryClient = useQueryClient();
  const [form] = Form.useForm<{ discount_rate: string }>();
  const mutation = useMutation({
    mutationFn: (rate: string) => creditApi.setDiscount(user!.id, rate.trim()),
    onSuccess: () => {
      message.success(t('users.discountSaved'));
      queryClient.invalidateQueries({ queryKey: ['users'] });
      onClose();
    },
  });
  useEffect(() => {
    if (user) {
      form.setFieldsValue({ discount_rate: user.discount_rate });
      mutation.reset();
    }
  }, [user]);
  return (
    <Modal
      open={!!user}
      title={t('users.discountTitle', { user: user?.username ?? '' })}
      onCancel={onClose}
      onOk={() => form.submit()}
      confirmLoading={mutation.isPending}
      forceRender
    >
      {mutation.isError ? <Alert type="error" showIcon message={errorText(mutation.error)} style={{ marginBottom: 16 }} /> : null}
      <Form form={form} name="discount" layout="vertical" onFinish={(v) => mutation.mutate(v.discount_rate)}>
        <FormFields fields={fields} />
      </Form>
    </Modal>
  );
}
