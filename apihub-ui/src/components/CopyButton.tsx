// Copies text to the clipboard, with a fallback for pages not served over HTTPS.
import { CheckOutlined, CopyOutlined } from '@ant-design/icons';
import { App, Button, type ButtonProps } from 'antd';
import { useState } from 'react';
import { useT } from '../i18n';

export async function copyText(text: string): Promise<void> {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = document.createElement('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.style.position = 'fixed';
  area.style.opacity = '0';
  document.body.appendChild(area);
  area.select();
  try {
    document.execCommand('copy');
  } finally {
    document.body.removeChild(area);
  }
}

interface Props extends Omit<ButtonProps, 'onClick'> {
  text: string;
  label?: string;
}

export function CopyButton({ text, label, ...button }: Props) {
  const t = useT();
  const { message } = App.useApp();
  const [done, setDone] = useState(false);
  const onClick = async () => {
    try {
      await copyText(text);
      setDone(true);
      message.success(t('common.copied'));
      setTimeout(() => setDone(false), 1500);
    } catch {
      message.error(t('common.copyFailed'));
    }
  };
  return (
    <Button size="small" icon={done ? <CheckOutlined /> : <CopyOutlined />} onClick={onClick} {...button}>
      {label ?? t('common.copy')}
    </Button>
  );
}
