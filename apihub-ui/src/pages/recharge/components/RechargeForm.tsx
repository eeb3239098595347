// Buy credit online: an amount within the operator's bounds and a payment method; the money to pay
// (amount × price, to the cent) is shown as it is typed. Paying creates the order and sends the
// browser to the provider's page with the signed fields.
import { CreditCardOutlined } from '@ant-design/icons';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { Alert, Button, Card, Form, Input, Radio, Space, Statistic, Typography } from 'antd';
import { useEffect } from 'react';
import { rechargeApi } from '../../../api';
import type { RechargeOptions } from '../../../api/recharge';
import { Payment, paymentTypeLabel } from '../../../components/recharge/orders';
import { useCurrency } from '../../../lib/currency';
import { useT, type Translate } from '../../../i18n';
import { compare, decimalProblem, formatMoney, multiply } from '../../../lib/money';
import { submitPayment } from '../../../lib/payment';
import { decimal, required, type Validator } from '../../../lib/validation';
import { useErrorText } from '../../../i18n/errors';

interface Values {
  amount: string;
  payment_type: string;
}

/** An amount within [min, max], exactly. */
export const withinRange =
  (min: string, max: string): Validator =>
  (t: Translate) => ({
    validator: (_, value?: string) => {
      const text = value?.trim();
      if (!text || decimalProblem(text) !== null) return Promise.resolve();
      const inside = compare(text, min)! >= 0 && compare(text, max)! <= 0;
      return inside
        ? Promise.resolve()
        : Promise.reject(new Error(t('recharge.outOfRange', { min: formatMoney(min), max: formatMoney(max) })));
    },
  });

/** The money to pay for `amount` credits, or null while the amount is not a valid one. */
export function moneyToPay(amount: string | undefined, price: string | number): string | null {
  const text = amount?.trim();
  if (!text || decimalProblem(text) !== null) return null;
  return multiply(text, price, 2);
}

export function RechargeForm({ options }: { options: RechargeOptions }) {
  const t = useT();
  const errorText = useErrorText();
  const currency = useCurrency();
  const queryClient = useQueryClient();
  const [form] = Form.useForm<Values>();
  const amount = Form.useWatch('amount', form);
  const { min_amount: min, max_amount: max, price } = options;
  const toPay = moneyToPay(amount, price);
  const create = useMutation({
    mutationFn: (v: Values) => rechargeApi.createRecharge({ amount: v.amount.trim(), payment_type: v.payment_type }),
    onSuccess: (created) => {
      queryClient.invalidateQueries({ queryKey: ['recharge', 'orders'] });
      submitPayment(created.payment);
    },
  });
  // Back from the payment page, a browser may show this page as it was left: ready to pay again.
  useEffect(() => {
    const onShow = (event: PageTransitionEvent) => {
      if (event.persisted) create.reset();
    };
    window.addEventListener('pageshow', onShow);
    return () => window.removeEventListener('pageshow', onShow);
  }, [create.reset]);
  return (
    <Card title={<Space><CreditCardOutlined />{t('recharge.buy')}</Space>} data-testid="recharge-form">
      <Typography.Paragraph type="secondary">{t('recharge.price', { price: `${currency.symbol}${formatMoney(price)}` })}</Typography.Paragraph>
      {create.isError ? <Alert type="error" showIcon message={errorText(create.error)} style={{ marginBottom: 16 }} /> : null}
      {create.isSuccess ? (
        <Alert
          type="info"
          showIcon
          style={{ marginBottom: 16 }}
          message={t('recharge.redirecting')}
          action={<a href={create.data.pay_url}>{t('recharge.openPayment')}</a>}
        />
      ) : null}
      <Form<Values>
        form={form}
        name="recharge"
        layout="vertical"
        initialValues={{ payment_type: options.payment_types[0] }}
        onFinish={(v) => create.mutate(v)}
      >
        <Form.Item
          name="amount"
          label={t('recharge.amount')}
          extra={t('recharge.amountRange', { min: formatMoney(min), max: formatMoney(max) })}
          rules={[required, decimal(), withinRange(min, max)].map((v) => v(t))}
          validateFirst
        >
          <Input inputMode="decimal" autoComplete="off" aria-label={t('recharge.amount')} style={{ maxWidth: 240 }} />
        </Form.Item>
        <Form.Item name="payment_type" label={t('recharge.paymentType')} rules={[required(t)]}>
          <Radio.Group
            optionType="button"
            buttonStyle="solid"
            options={options.payment_types.map((type) => ({ value: type, label: paymentTypeLabel(t, type) }))}
          />
        </Form.Item>
        <Space align="end" size="large" wrap>
          <Statistic
            title={t('recharge.toPay')}
            valueRender={() => (toPay === null ? <span>—</span> : <Payment value={toPay} />)}
            data-testid="to-pay"
          />
          <Button type="primary" htmlType="submit" size="large" loading={create.isPending || create.isSuccess}>
            {t('recharge.pay')}
          </Button>
        </Space>
      </Form>
    </Card>
  );
}
