// Which key the playground calls with. The dashboard only ever sees a key's preview, so the whole
// key is pasted (checked against the preview) or made here; it is kept in this tab's
// sessionStorage only, per key.
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { Alert, App, Button, Form, Input, Select, Space } from 'antd';
import { useEffect } from 'react';
import { keysApi } from '../../api';
import { useErrorText } from '../../i18n/errors';
import { useT } from '../../i18n';

const STORE = 'apihub.playground.key.';

export function storedSecret(id: number): string {
  try {
    return sessionStorage.getItem(STORE + id) ?? '';
  } catch {
    return '';
  }
}

function storeSecret(id: number, secret: string) {
  try {
    if (secret) sessionStorage.setItem(STORE + id, secret);
    else sessionStorage.removeItem(STORE + id);
  } catch {
    /* no storage: it lives in memory only */
  }
}

/** Whether a whole key matches a preview like `ahg_pub123_…9f2a`. */
export function matchesPreview(secret: string, preview: string): boolean {
  const [start, end = ''] = preview.split('…');
  return secret.length > start.length + end.length && secret.startsWith(start) && secret.endsWith(end);
}

interface Props {
  keyId: number | undefined;
  secret: string;
  onChange: (keyId: number | undefined, secret: string) => void;
}

export function KeyPicker({ keyId, secret, onChange }: Props) {
  const t = useT();
  const errorText = useErrorText();
  const { message } = App.useApp();
  const queryClient = useQueryClient();
  const keys = useQuery(keysApi.keysQuery({ page: 1, page_size: 200 }));
  const active = (keys.data?.items ?? []).filter((k) => k.status === 'active');
  const selected = active.find((k) => k.id === keyId);
  const create = useMutation({
    mutationFn: () => keysApi.createKey({ name: 'Playground' }),
    onSuccess: (created) => {
      storeSecret(created.id, created.key);
      onChange(created.id, created.key);
      message.success(t('playground.keyCreated', { name: created.name }));
      queryClient.invalidateQueries({ queryKey: ['keys'] });
    },
  });
  // The first active key by default.
  useEffect(() => {
    if (keyId === undefined && active[0]) onChange(active[0].id, storedSecret(active[0].id) || secret);
  }, [keyId, active, onChange, secret]);
  const mismatch = !!selected && !!secret && !matchesPreview(secret, selected.key_preview);
  return (
    <>
      <Form.Item label={t('playground.key')} style={{ marginBottom: 12 }}>
        <Space.Compact style={{ width: '100%' }}>
          <Select<number>
            value={selected?.id}
            loading={keys.isPending}
            placeholder={t('playground.noKeys')}
            onChange={(id) => onChange(id, storedSecret(id))}
            options={active.map((k) => ({ value: k.id, label: `${k.name || '—'} · ${k.key_preview}` }))}
            aria-label={t('playground.key')}
            style={{ minWidth: 0, flex: 1 }}
          />
          <Button onClick={() => create.mutate()} loading={create.isPending}>
            {t('playground.createKey')}
          </Button>
        </Space.Compact>
      </Form.Item>
      <Form.Item
        label={t('playground.secret')}
        extra={t('playground.secretHelp')}
        validateStatus={mismatch ? 'error' : undefined}
        help={mismatch ? t('playground.keyMismatch', { preview: selected!.key_preview }) : undefined}
        style={{ marginBottom: 12 }}
      >
        <Input.Password
          value={secret}
          autoComplete="off"
          aria-label={t('playground.secret')}
          placeholder="ahg_…"
          onChange={(e) => {
            const value = e.target.value.trim();
            if (selected) storeSecret(selected.id, value);
            onChange(selected?.id, value);
          }}
        />
      </Form.Item>
      {create.isError ? <Alert type="error" showIcon message={errorText(create.error)} style={{ marginBottom: 12 }} /> : null}
    </>
  );
}
