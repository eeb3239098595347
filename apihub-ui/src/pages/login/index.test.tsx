import { screen, waitFor } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { session } from '../../api';
import { apiError, json, mockApi } from '../../test/api';
import { renderPage } from '../../test/render';
import { fillIn, findButton, user } from '../../test/user';
import LoginPage from '.';

describe('LoginPage', () => {
  it('asks for both fields before calling the server', async () => {
    const calls = mockApi({});
    renderPage(<LoginPage />, { path: '/login' });
    await user.click(await findButton('Log in'));
    await waitFor(() => expect(screen.getAllByText('Required')).toHaveLength(2));
    expect(calls).toHaveLength(0);
  });

  it("shows the server's message when the login is refused", async () => {
    mockApi({ 'POST /api/auth/login': apiError(401, 'unauthorized', 'wrong username or password') });
    renderPage(<LoginPage />, { path: '/login' });
    await fillIn(await screen.findByLabelText('Username'), 'alice');
    await fillIn(screen.getByLabelText('Password'), 'not-the-password');
    await user.click(await findButton('Log in'));
    expect(await screen.findByText('wrong username or password')).toBeInTheDocument();
    expect(session.token()).toBeNull();
  });

  it('starts a session and goes to the dashboard', async () => {
    const calls = mockApi({
      'POST /api/auth/login': json({ access_token: 'tok-9', token_type: 'bearer', expires_in: 86400 }),
    });
    renderPage(<LoginPage />, { path: '/login', routes: { '/': <p>dashboard here</p> } });
    await fillIn(await screen.findByLabelText('Username'), 'alice');
    await fillIn(screen.getByLabelText('Password'), 'a-long-password');
    await user.click(await findButton('Log in'));
    expect(await screen.findByText('dashboard here')).toBeInTheDocument();
    expect(session.token()).toBe('tok-9');
    expect(calls[0].body).toEqual({ username: 'alice', password: 'a-long-password' });
  });

  it('speaks Chinese when asked', async () => {
    mockApi({});
    renderPage(<LoginPage />, { path: '/login', locale: 'zh-CN' });
    expect(await findButton(/登\s*录/)).toBeInTheDocument();
    await user.click(screen.getByText('English'));
    expect(await findButton('Log in')).toBeInTheDocument();
    expect(localStorage.getItem('apihub.locale')).toBe('en');
  });
});
