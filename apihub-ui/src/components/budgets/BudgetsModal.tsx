// View and replace an owner's budgets (a key's or a user's): per period a switch and optional
// credit, token and call limits, with the current window's usage and reset time under it.
import { skipToken, useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { Alert, App, Col, Divider, Form, Modal, Row, Skeleton, Typography } from 'antd';
import { Fragment, useEffect, useRef } from 'react';
import { PERIODS, type BudgetList, type BudgetsQuery, type SetBudgets } from '../../api/budgets';
import { useT } from '../../i18n';
import { useErrorText } from '../../i18n/errors';
import { ErrorAlert } from '../ErrorAlert';
import { FormFields } from '../FormFields';
import { BudgetWindow } from './BudgetUsage';
import { budgetOf, fieldName, fromBudgets, limitFields, switchField, toBudgetsRequest, type BudgetFormValues } from './budgetForm';

export interface BudgetsTarget {
  /** Tells one owner from another (the form is filled once per owner opened). */
  id: string;
  title: string;
  /** What these budgets cap, above the form. */
  hint: string;
  query: BudgetsQuery;
  save: (body: SetBudgets) => Promise<BudgetList>;
}

export function BudgetsModal({ target, onClose }: { target: BudgetsTarget | null; onClose: () => void }) {
  const t = useT();
  const errorText = useErrorText();
  const { message } = App.useApp();
  const queryClient = useQueryClient();
  const [form] = Form.useForm<BudgetFormValues>();
  const budgets = useQuery(target ? target.query : { queryKey: ['budgets', 'none'], queryFn: skipToken });
  const enabled = {
    day: Form.useWatch(fieldName('day', 'enabled'), form) === true,
    week: Form.useWatch(fieldName('week', 'enabled'), form) === true,
    month: Form.useWatch(fieldName('month', 'enabled'), form) === true,
  };
  const mutation = useMutation({
    mutationFn: (values: BudgetFormValues) => target!.save(toBudgetsRequest(values)),
    onSuccess: (list) => {
      if (target) queryClient.setQueryData(target.query.queryKey, list);
      queryClient.invalidateQueries({ queryKey: ['budgets'] });
      message.success(t('budgets.saved'));
      onClose();
    },
  });

  // Filled once per owner opened: a refetch in the background must not undo what is being typed.
  const filledFor = useRef<string | null>(null);
  useEffect(() => {
    if (!target) {
      filledFor.current = null;
      return;
    }
    if (filledFor.current === target.id || !budgets.data) return;
    filledFor.current = target.id;
    form.resetFields();
    form.setFieldsValue(fromBudgets(budgets.data));
  }, [target, budgets.data, form]);
  useEffect(() => {
    if (target) mutation.reset();
  }, [target?.id]);

  const list = budgets.data;
  return (
    <Modal
      open={!!target}
      title={target?.title}
      onCancel={onClose}
      onOk={() => form.submit()}
      okText={t('common.save')}
      okButtonProps={{ disabled: !list }}
      confirmLoading={mutation.isPending}
      width={640}
      forceRender
    >
      {budgets.isError ? <ErrorAlert error={budgets.error} onRetry={() => budgets.refetch()} /> : null}
      {mutation.isError ? <Alert type="error" showIcon message={errorText(mutation.error)} style={{ marginBottom: 16 }} /> : null}
      {target ? (
        <Typography.Paragraph type="secondary" style={{ fontSize: 13 }}>
          {target.hint} {list ? t('budgets.zone', { zone: list.time_zone }) : null}
        </Typography.Paragraph>
      ) : null}
      {budgets.isPending && target ? <Skeleton active /> : null}
      <Form<BudgetFormValues>
        form={form}
        name="budgets"
        layout="vertical"
        onFinish={(v) => mutation.mutate(v)}
        style={{ display: list ? undefined : 'none' }}
      >
        {PERIODS.map((period, i) => {
          const current = budgetOf(list, period);
          return (
            <Fragment key={period}>
              {i > 0 ? <Divider style={{ margin: '8px 0 16px' }} /> : null}
              <div data-testid={`budget-form-${period}`}>
                <FormFields fields={[switchField(period)]} />
                {enabled[period] ? (
                  <Row gutter={12}>
                    {limitFields(period).map((f) => (
                      <Col xs={24} sm={8} key={f.name}>
                        <FormFields fields={[f]} />
                      </Col>
                    ))}
                  </Row>
                ) : null}
                {current && list ? (
                  <BudgetWindow
                    budget={current}
                    timeZone={list.time_zone}
                    title={<Typography.Text style={{ fontSize: 12 }}>{t('budgets.thisWindow')}</Typography.Text>}
                  />
                ) : null}
              </div>
            </Fragment>
          );
        })}
      </Form>
    </Modal>
  );
}
