// Generate a batch of redemption codes: how many, the credit each, the batch's name, an optional expiry.
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { Alert, Form, Modal } from 'antd';
import type { Dayjs } from 'dayjs';
import { useEffect } from 'react';
import { redemptionApi } from '../../../../api';
import type { CreatedCodes } from '../../../../api/redemption';
import { FormFields, type FieldDef } from '../../../../components/FormFields';
import { useT } from '../../../../i18n';
import { decimal, future, integer, maxLength, required } from '../../../../lib/validation';
import { useErrorText } from '../../../../i18n/errors';

interface Values {
  count: number;
  amount: string;
  name: string;
  expires_at?: Dayjs | null;
}

const fields: FieldDef[] = [
  { name: 'count', label: 'codes.count', kind: 'integer', min: 1, max: 1000, validators: [required, integer(1, 1000)] },
  { name: 'amount', label: 'codes.amount', kind: 'decimal', help: 'codes.amountHelp', validators: [required, decimal()] },
  { name: 'name', label: 'codes.name', kind: 'text', validators: [required, maxLength(100)] },
  { name: 'expires_at', label: 'codes.expiresAt', kind: 'datetime', help: 'codes.neverExpires', validators: [future] },
];

interface Props {
  open: boolean;
  onCreated: (batch: CreatedCodes) => void;
  onClose: () => void;
}

export function GenerateCodesModal({ open, onCreated, onClose }: Props) {
  const t = useT();
  const errorText = useErrorText();
  const queryClient = useQueryClient();
  const [form] = Form.useForm<Values>();
  const mutation = useMutation({
    mutationFn: (v: Values) =>
      redemptionApi.createCodes({
        count: v.count,
        amount: v.amount.trim(),
        name: v.name.trim(),
        expires_at: v.expires_at ? v.expires_at.toISOString() : null,
      }),
    onSuccess: (batch) => {
      queryClient.invalidateQueries({ queryKey: ['redemption-codes'] });
      onCreated(batch);
    },
  });
  useEffect(() => {
    if (open) {
      form.resetFields();
      mutation.reset();
    }
  }, [open]);
  return (
    <Modal
      open={open}
      title={t('codes.generateTitle')}
      onCancel={onClose}
      onOk={() => form.submit()}
      okText={t('common.create')}
      confirmLoading={mutation.isPending}
      forceRender
    >
      {mutation.isError ? <Alert type="error" showIcon message={errorText(mutation.error)} style={{ marginBottom: 16 }} /> : null}
      <Form<Values> form={form} name="codes" layout="vertical" initialValues={{ count: 10 }} onFinish={(v) => mutation.mutate(v)}>
        <FormFields fields={fields} />
      </Form>
    </Modal>
  );
}
