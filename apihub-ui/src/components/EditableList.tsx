// What the administrators' editable lists (prices, metered routes) share: the edit and delete
// buttons of a row, and the modal with its form declared as data.
import type { FormInstance } from 'antd';
import { Alert, Button, Form, Modal, Popconfirm, Space } from 'antd';
import { useT } from '../i18n';
import { useErrorText } from '../i18n/errors';
import { FormFields, type FieldDef } from './FormFields';

/** A row's Edit and Delete (confirmed with `confirm`) buttons. */
export function EditDeleteActions({ onEdit, confirm, onDelete }: { onEdit: () => void; confirm: string; onDelete: () => void }) {
  const t = useT();
  return (
    <Space size={0}>
      <Button type="link" size="small" onClick={onEdit}>
        {t('common.edit')}
      </Button>
      <Popconfirm title={confirm} okButtonProps={{ danger: true }} okText={t('common.delete')} onConfirm={onDelete}>
        <Button type="link" size="small" danger>
          {t('common.delete')}
        </Button>
      </Popconfirm>
    </Space>
  );
}

interface FormModalProps<V> {
  open: boolean;
  title: string;
  /** The form's name: its inputs' ids are `<name>_<field>`. */
  name: string;
  form: FormInstance<V>;
  fields: FieldDef[];
  saving: boolean;
  /** The last save's error, shown above the form. */
  error: unknown;
  width?: number;
  onCancel: () => void;
  onFinish: (values: V) => void;
}

/** A modal holding a vertical form; OK submits it. */
export function FormModal<V>({ open, title, name, form, fields, saving, error, width, onCancel, onFinish }: FormModalProps<V>) {
  const errorText = useErrorText();
  return (
    <Modal open={open} title={title} onCancel={onCancel} onOk={() => form.submit()} confirmLoading={saving} width={width} forceRender>
      {error ? <Alert type="error" showIcon message={errorText(error)} style={{ marginBottom: 16 }} /> : null}
      <Form<V> form={form} name={name} layout="vertical" onFinish={onFinish}>
        <FormFields fields={fields} />
      </Form>
    </Modal>
  );
}
