import { screen, waitFor } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { apiError, mockApi } from '../test/api';
import { renderPage } from '../test/render';
import { fillIn, findButton, findDialog, user } from '../test/user';
import { ChangePasswordModal } from './ChangePasswordModal';

async function submit(title: string, okLabel: RegExp | string) {
  const dialog = await findDialog(title);
  const inputs = dialog.querySelectorAll('input');
  await fillIn(inputs[0] as HTMLElement, 'the-old-password');
  await fillIn(inputs[1] as HTMLElement, 'a-new-password');
  await fillIn(inputs[2] as HTMLElement, 'a-new-password');
  const ok = await findButton(okLabel, dialog);
  await user.click(ok);
  return { dialog, ok };
}

describe('ChangePasswordModal', () => {
  it('shows a refusal inline and leaves the button usable at once', async () => {
    const calls = mockApi({ 'POST /api/auth/password': apiError(401, 'unauthorized', 'current password is wrong') });
    renderPage(<ChangePasswordModal open onClose={() => {}} />);
    const { ok } = await submit('Change password', 'OK');
    expect(await screen.findByText('current password is wrong')).toBeInTheDocument();
    // Not waiting for the toast's three seconds: the button is usable as soon as the answer came.
    await waitFor(() => expect(ok).not.toHaveClass('ant-btn-loading'), { timeout: 300 });
    expect(ok).not.toBeDisabled();
    await user.click(ok);
    await waitFor(() => expect(calls.filter((c) => c.path === '/api/auth/password')).toHaveLength(2));
  });

  it('says it in Chinese, with Chinese buttons', async () => {
    mockApi({ 'POST /api/auth/password': apiError(401, 'unauthorized', 'current password is wrong') });
    renderPage(<ChangePasswordModal open onClose={() => {}} />, { locale: 'zh-CN' });
    await submit('修改密码', /确\s*定/);
    expect(await screen.findByText('当前密码不正确')).toBeInTheDocument();
    expect(await findButton(/取\s*消/)).toBeInTheDocument();
  });
});
