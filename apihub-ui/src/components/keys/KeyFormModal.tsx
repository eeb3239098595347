// Create, batch-create or edit a key: one form declared as data (keyForm.ts), three modes.
import { useQuery } from '@tanstack/react-query';
import { Alert, Form, Modal } from 'antd';
import { useEffect, useMemo } from 'react';
import { pricesApi } from '../../api';
import type { Key } from '../../api/keys';
import { useT, type MessageKey } from '../../i18n';
import { FormFields } from '../FormFields';
import { fromKey, keyFields, type KeyFormMode, type KeyFormValues } from './keyForm';
import { useErrorText } from '../../i18n/errors';

const TITLES: Record<KeyFormMode, MessageKey> = {
  create: 'keys.createTitle',
  batch: 'keys.batchTitle',
  edit: 'keys.editTitle',
};

interface Props {
  open: boolean;
  mode: KeyFormMode;
  admin: boolean;
  /** Ask for the user the key is for (administrators). */
  forUser?: boolean;
  initialUserId?: number;
  /** The key being edited. */
  editing?: Key | null;
  submitting: boolean;
  error?: unknown;
  onSubmit: (values: KeyFormValues) => void;
  onClose: () => void;
}

export function KeyFormModal({ open, mode, admin, forUser, initialUserId, editing, submitting, error, onSubmit, onClose }: Props) {
  const t = useT();
  const errorText = useErrorText();
  const [form] = Form.useForm<KeyFormValues>();
  const prices = useQuery({ ...pricesApi.pricesQuery(), enabled: open });
  const models = useMemo(() => (prices.data ?? []).map((p) => p.model), [prices.data]);
  const fields = useMemo(() => keyFields({ mode, admin, forUser, models }), [mode, admin, forUser, models]);

  useEffect(() => {
    if (!open) return;
    form.resetFields();
    if (mode === 'edit' && editing) form.setFieldsValue(fromKey(editing));
    else form.setFieldsValue({ count: mode === 'batch' ? 10 : undefined, user_id: initialUserId });
  }, [open, mode, editing, initialUserId, form]);

  return (
    <Modal
      open={open}
      title={t(TITLES[mode])}
      onCancel={onClose}
      onOk={() => form.submit()}
      okText={mode === 'edit' ? t('common.save') : t('common.create')}
      confirmLoading={submitting}
      width={560}
      forceRender
    >
      {error ? <Alert type="error" showIcon message={errorText(error)} style={{ marginBottom: 16 }} /> : null}
      {mode === 'edit' ? <Alert type="info" showIcon message={t('keys.editHint')} style={{ marginBottom: 16 }} /> : null}
      <Form<KeyFormValues> form={form} name={`key-${mode}`} layout="vertical" onFinish={onSubmit} requiredMark="optional">
        <FormFields fields={fields} />
      </Form>
    </Modal>
  );
}
