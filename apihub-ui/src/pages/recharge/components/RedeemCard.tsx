// Redeem a code: its credit becomes a recharge of the caller's balance.
import { GiftOutlined } from '@ant-design/icons';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { Alert, Button, Card, Form, Input, Space, Typography } from 'antd';
import { creditApi, redemptionApi } from '../../../api';
import { Money } from '../../../components/Money';
import { useT } from '../../../i18n';
import { formatMoney } from '../../../lib/money';
import { required } from '../../../lib/validation';
import { useErrorText } from '../../../i18n/errors';

export function RedeemCard() {
  const t = useT();
  const errorText = useErrorText();
  const queryClient = useQueryClient();
  const balance = useQuery(creditApi.balanceQuery());
  const [form] = Form.useForm<{ code: string }>();
  const redeem = useMutation({
    mutationFn: (code: string) => redemptionApi.redeem(code),
    onSuccess: () => {
      form.resetFields();
      queryClient.invalidateQueries({ queryKey: ['balance'] });
      queryClient.invalidateQueries({ queryKey: ['transactions'] });
    },
  });
  return (
    <Card title={<Space><GiftOutlined />{t('redeem.title')}</Space>} data-testid="redeem-card">
      <Typography.Paragraph>
        {t('recharge.balance')}{' '}
        <span data-testid="recharge-balance">
          <Money value={balance.data?.token_balance} strong />
        </span>
      </Typography.Paragraph>
      <Typography.Paragraph type="secondary">{t('redeem.help')}</Typography.Paragraph>
      <Form form={form} name="redeem" layout="inline" onFinish={(v) => redeem.mutate(v.code.trim())} style={{ rowGap: 8 }}>
        <Form.Item name="code" rules={[required(t)]} style={{ flex: 1, minWidth: 240 }}>
          <Input aria-label={t('redeem.code')} placeholder={t('redeem.code')} autoComplete="off" spellCheck={false} allowClear />
        </Form.Item>
        <Button type="primary" htmlType="submit" loading={redeem.isPending}>
          {t('redeem.submit')}
        </Button>
      </Form>
      {redeem.isSuccess ? (
        <Alert
          type="success"
          showIcon
          style={{ marginTop: 16 }}
          data-testid="redeem-result"
          message={t('redeem.done', {
            amount: formatMoney(redeem.data.transaction.amount),
            balance: formatMoney(redeem.data.balance.token_balance),
          })}
        />
      ) : null}
      {redeem.isError ? (
        <Alert type="error" showIcon style={{ marginTop: 16 }} message={errorText(redeem.error)} />
      ) : null}
    </Card>
  );
}
