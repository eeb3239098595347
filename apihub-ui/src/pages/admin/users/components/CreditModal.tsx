// Recharge, consume, refund or adjust a user's credit, with an order number for idempotency.
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { Alert, App, Form, Modal, Typography } from 'antd';
import { useEffect } from 'react';
import { creditApi } from '../../../../api';
import type { CreditOperation } from '../../../../api/credit';
import type { User } from '../../../../api/auth';
import { FormFields, type FieldDef } from '../../../../components/FormFields';
import { Money } from '../../../../components/Money';
import { useT } from '../../../../i18n';
import { formatMoney } from '../../../../lib/money';
import { decimal, maxLength, required } from '../../../../lib/validation';
import { useErrorText } from '../../../../i18n/errors';

interface Values {
  operation: CreditOperation;
  amount: string;
  order_no?: string;
  description?: string;
}

const fields = (operation: CreditOperation): FieldDef[] => [
  {
    name: 'operation',
    label: 'credit.operation',
    kind: 'select',
    validators: [required],
    options: creditApi.TX_TYPES.map((op) => ({ value: op, labelKey: `tx.${op}` as const })),
  },
  {
    name: 'amount',
    label: 'credit.amount',
    kind: 'decimal',
    help: operation === 'adjust' ? 'credit.amountAdjustHelp' : 'credit.amountHelp',
    dependencies: ['operation'],
    validators: [required, decimal({ allowNegative: operation === 'adjust' })],
  },
  {
    name: 'order_no',
    label: 'credit.orderNo',
    kind: 'text',
    help: operation === 'refund' ? 'credit.orderNoRefundHelp' : 'credit.orderNoHelp',
    validators: operation === 'refund' ? [required, maxLength(64)] : [maxLength(64)],
  },
  { name: 'description', label: 'credit.description', kind: 'textarea', validators: [maxLength(255)] },
];

export function CreditModal({ user, onClose }: { user: User | null; onClose: () => void }) {
  const t = useT();
  const errorText = useErrorText();
  const { message } = App.useApp();
  const queryClient = useQueryClient();
  const [form] = Form.useForm<Values>();
  const operation = Form.useWatch('operation', form) ?? 'recharge';
  const mutation = useMutation({
    mutationFn: (v: Values) =>
      creditApi.creditUser(user!.id, v.operation, {
        amount: v.amount.trim(),
        order_no: v.order_no?.trim() || null,
        description: v.description?.trim() || null,
      }),
    onSuccess: (result) => {
      const balance = formatMoney(result.balance.token_balance);
      if (result.replayed) message.info(t('credit.replayed', { balance }));
      else message.success(t('credit.done', { balance }));
      queryClient.invalidateQueries({ queryKey: ['users'] });
      onClose();
    },
  });
  useEffect(() => {
    if (user) {
      form.resetFields();
      mutation.reset();
    }
  }, [user]);
  return (
    <Modal
      open={!!user}
      title={t('credit.title', { user: user?.username ?? '' })}
      onCancel={onClose}
      onOk={() => form.submit()}
      confirmLoading={mutation.isPending}
      forceRender
    >
      {user ? (
        <Typography.Paragraph>
          {t('credit.current')} <Money value={user.token_balance} strong />
        </Typography.Paragraph>
      ) : null}
      {mutation.isError ? <Alert type="error" showIcon message={errorText(mutation.error)} style={{ marginBottom: 16 }} /> : null}
      <Form<Values> form={form} name="credit" layout="vertical" initialValues={{ operation: 'recharge' }} onFinish={(v) => mutation.mutate(v)}>
        <FormFields fields={fields(operation)} />
      </Form>
    </Modal>
  );
}
