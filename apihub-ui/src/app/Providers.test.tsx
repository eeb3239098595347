import { render, screen } from '@testing-library/react';
import { Form, Input, Modal, Pagination } from 'antd';
import dayjs from 'dayjs';
import { theme } from 'antd';
import { describe, expect, it } from 'vitest';
import { Providers } from './Providers';

function AntdTexts() {
  return (
    <>
      <Form requiredMark="optional">
        <Form.Item label="Note" name="note">
          <Input />
        </Form.Item>
      </Form>
      <Pagination total={100} showSizeChanger />
      <Modal open title="T">
        body
      </Modal>
    </>
  );
}

describe('Providers', () => {
  it("hands antd the Chinese texts in zh-CN: OK / Cancel, (optional), page size", async () => {
    render(
      <Providers locale="zh-CN">
        <AntdTexts />
      </Providers>,
    );
    expect(await screen.findByText(/取\s*消/)).toBeInTheDocument();
    expect(screen.getByText(/确\s*定/)).toBeInTheDocument();
    expect(screen.getByText('（可选）')).toBeInTheDocument();
    expect(screen.getByText('10 条/页')).toBeInTheDocument();
    for (const english of ['Cancel', 'OK', '(optional)', '10 / page']) {
      expect(screen.queryByText(english)).toBeNull();
    }
    expect(dayjs().locale()).toBe('zh-cn');
  });

  it('keeps English texts in English', async () => {
    render(
      <Providers locale="en">
        <AntdTexts />
      </Providers>,
    );
    expect(await screen.findByText('Cancel')).toBeInTheDocument();
    expect(screen.getByText('(optional)')).toBeInTheDocument();
    expect(dayjs().locale()).toBe('en');
  });

  it('follows the system into dark mode, and back', async () => {
    const listeners: (() => void)[] = [];
    let dark = true;
    const original = window.matchMedia;
    window.matchMedia = ((query: string) => ({
      get matches() {
        return query.includes('dark') && dark;
      },
      media: query,
      addEventListener: (_: string, f: () => void) => listeners.push(f),
      removeEventListener: () => {},
    })) as unknown as typeof window.matchMedia;
    let background = '';
    function Probe() {
      background = theme.useToken().token.colorBgContainer;
      return null;
    }
    try {
      render(
        <Providers locale="en">
          <Probe />
        </Providers>,
      );
      expect(document.documentElement.dataset.theme).toBe('dark');
      expect(background).not.toBe('#ffffff');
      dark = false;
      const { act } = await import('@testing-library/react');
      act(() => listeners.forEach((f) => f()));
      expect(document.documentElement.dataset.theme).toBe('light');
      expect(background).toBe('#ffffff');
    } finally {
      window.matchMedia = original;
    }
  });
});
