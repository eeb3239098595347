// Completes a stuck pending order by hand: marks it paid and credits the user, with a note saying why.
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { Alert, App, Form, Modal } from 'antd';
import { useEffect } from 'react';
import { rechargeApi } from '../../../../api';
import type { RechargeOrder } from '../../../../api/recharge';
import { FormFields, type FieldDef } from '../../../../components/FormFields';
import { useT } from '../../../../i18n';
import { formatMoney } from '../../../../lib/money';
import { maxLength, required } from '../../../../lib/validation';
import { useErrorText } from '../../../../i18n/errors';
import { useUsernames } from '../../../../components/useUsernames';

const fields: FieldDef[] = [
  { name: 'note', label: 'adminOrders.note', kind: 'textarea', help: 'adminOrders.noteHelp', validators: [required, maxLength(255)] },
];

export function CompleteOrderModal({ order, onClose }: { order: RechargeOrder | null; onClose: () => void }) {
  const t = useT();
  const errorText = useErrorText();
  const userName = useUsernames();
  const { message } = App.useApp();
  const queryClient = useQueryClient();
  const [form] = Form.useForm<{ note: string }>();
  const mutation = useMutation({
    mutationFn: (note: string) => rechargeApi.completeOrder(order!.out_trade_no, note),
    onSuccess: (done) => {
      message.success(t('adminOrders.completed', { amount: formatMoney(done.order.amount) }));
      queryClient.invalidateQueries({ queryKey: ['recharge'] });
      queryClient.invalidateQueries({ queryKey: ['users'] });
      onClose();
    },
  });
  useEffect(() => {
    if (order) {
      form.resetFields();
      mutation.reset();
    }
  }, [order]);
  return (
    <Modal
      open={!!order}
      title={t('adminOrders.completeTitle', { order: order?.out_trade_no ?? '' })}
      onCancel={onClose}
      onOk={() => form.submit()}
      okText={t('adminOrders.confirm')}
      okButtonProps={{ danger: true }}
      confirmLoading={mutation.isPending}
      forceRender
    >
      {order ? (
        <Alert
          type="warning"
          showIcon
          style={{ marginBottom: 16 }}
          message={t('adminOrders.completeWarning', { user: userName(order.user_id), amount: formatMoney(order.amount) })}
        />
      ) : null}
      {mutation.isError ? <Alert type="error" showIcon message={errorText(mutation.error)} style={{ marginBottom: 16 }} /> : null}
      <Form form={form} name="complete" layout="vertical" onFinish={(v) => mutation.mutate(v.note.trim())}>
        <FormFields fields={fields} />
      </Form>
    </Modal>
  );
}
