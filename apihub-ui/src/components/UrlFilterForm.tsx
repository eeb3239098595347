// An inline filter form whose values live in the address's query string, so a filtered list can
// be linked to and survives a reload. Each filled field becomes `?name=value`; Reset clears them.
import { Button, Form, Space } from 'antd';
import type { ReactNode } from 'react';
import { useSearchParams } from 'react-router';
import { useT } from '../i18n';

/** The query string as filter values, and a setter that also sends the table back to page 1. */
export function useUrlFilter(onChange: () => void) {
  const [params, setParams] = useSearchParams();
  const apply = (values: Record<string, unknown>) => {
    const next = new URLSearchParams();
    for (const [name, value] of Object.entries(values)) {
      const text = value === undefined || value === null ? '' : String(value).trim();
      if (text) next.set(name, text);
    }
    onChange();
    setParams(next);
  };
  return { params, apply };
}

interface Props {
  params: URLSearchParams;
  apply: (values: Record<string, unknown>) => void;
  /** The Form.Items, named like the query parameters. */
  children: ReactNode;
}

export function UrlFilterForm({ params, apply, children }: Props) {
  const t = useT();
  return (
    <Form
      layout="inline"
      key={params.toString()}
      initialValues={Object.fromEntries(params)}
      onFinish={apply}
      style={{ marginBottom: 16, rowGap: 8 }}
    >
      {children}
      <Space>
        <Button htmlType="submit" type="primary">
          {t('common.filter')}
        </Button>
        <Button onClick={() => apply({})}>{t('common.reset')}</Button>
      </Space>
    </Form>
  );
}
