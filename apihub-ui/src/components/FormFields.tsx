// Forms declared as data: a page lists its fields (name, label, kind, validators) and this
// renders them as antd Form.Items with the matching input.
import { DatePicker, Form, Input, InputNumber, Select, Switch } from 'antd';
import type { ReactNode } from 'react';
import { useI18n, type Locale, type MessageKey, type Translate } from '../i18n';
import { pickerFormat } from '../lib/format';
import type { Validator } from '../lib/validation';

export type FieldKind =
  | 'text'
  | 'password'
  | 'email'
  | 'integer'
  | 'decimal'
  | 'datetime'
  | 'tags'
  | 'select'
  | 'multiselect'
  | 'textarea'
  | 'switch';

export interface FieldDef {
  name: string;
  label: MessageKey;
  kind: FieldKind;
  validators?: Validator[];
  /** Shown under the input. */
  help?: MessageKey;
  placeholder?: MessageKey;
  /** For `select`, `multiselect` and `tags`: a fixed label, a label to translate, or the value itself. */
  options?: { value: string; label?: string; labelKey?: MessageKey }[];
  /** Other fields whose change re-validates this one. */
  dependencies?: string[];
  /** For `integer`: the bounds (documentation; the validators enforce them, with a message). */
  min?: number;
  max?: number;
  autoComplete?: string;
  /** For `textarea`: its height in lines (2 unless told). */
  rows?: number;
  /** Hide the field (e.g. administrator-only fields for users). */
  hidden?: boolean;
}

function input(field: FieldDef, t: Translate, locale: Locale): ReactNode {
  const placeholder = field.placeholder ? t(field.placeholder) : undefined;
  const common = { placeholder, 'aria-label': t(field.label) };
  const options = field.options?.map((o) => ({ value: o.value, label: o.labelKey ? t(o.labelKey) : (o.label ?? o.value) }));
  switch (field.kind) {
    case 'password':
      return <Input.Password {...common} autoComplete={field.autoComplete ?? 'current-password'} />;
    case 'email':
      return <Input {...common} type="email" autoComplete="email" />;
    case 'integer':
      // No min/max on the input itself: it would turn a typed -5 into 0 without a word. The
      // field's validators refuse what is out of range, and say so.
      return <InputNumber {...common} precision={0} style={{ width: '100%' }} />;
    case 'decimal':
      // Text, not InputNumber: amounts stay exact decimal strings all the way to the server.
      return <Input {...common} inputMode="decimal" autoComplete="off" />;
    case 'datetime':
      return <DatePicker {...common} showTime={{ format: 'HH:mm' }} format={pickerFormat(locale, true)} style={{ width: '100%' }} />;
    case 'tags':
      return <Select {...common} mode="tags" options={options} allowClear tokenSeparators={[',', ' ']} />;
    case 'select':
      return <Select {...common} options={options} allowClear />;
    case 'multiselect':
      return <Select {...common} mode="multiple" options={options} allowClear />;
    case 'textarea':
      return <Input.TextArea {...common} rows={field.rows ?? 2} />;
    case 'switch':
      return <Switch aria-label={common['aria-label']} />;
    default:
      return <Input {...common} autoComplete={field.autoComplete} />;
  }
}

export function FormFields({ fields }: { fields: FieldDef[] }) {
  const { t, locale } = useI18n();
  return (
    <>
      {fields
        .filter((f) => !f.hidden)
        .map((field) => (
          <Form.Item
            key={field.name}
            name={field.name}
            label={t(field.label)}
            extra={field.help ? t(field.help) : undefined}
            rules={field.validators?.map((v) => v(t))}
            dependencies={field.dependencies}
            valuePropName={field.kind === 'switch' ? 'checked' : undefined}
            validateFirst
          >
            {input(field, t, locale)}
          </Form.Item>
        ))}
    </>
  );
}
