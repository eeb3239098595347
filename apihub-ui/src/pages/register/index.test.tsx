import { screen, waitFor } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { apiError, json, mockApi } from '../../test/api';
import { renderPage } from '../../test/render';
import { fillIn, findButton, user } from '../../test/user';
import RegisterPage from '.';

async function fill(username: string, password: string, confirm = password) {
  await fillIn(await screen.findByLabelText('Username'), username);
  await fillIn(screen.getByLabelText('Password'), password);
  await fillIn(screen.getByLabelText('Confirm password'), confirm);
  await user.click(await findButton('Register'));
}

describe('RegisterPage', () => {
  it('applies the server rules for usernames and passwords', async () => {
    const calls = mockApi({});
    renderPage(<RegisterPage />, { path: '/register' });
    await fill('a b', 'short', 'other');
    await waitFor(() => {
      expect(screen.getByText('3 to 32 characters: letters, digits, _ . -')).toBeInTheDocument();
      expect(screen.getByText('The password needs at least 8 characters')).toBeInTheDocument();
      expect(screen.getByText('The two passwords differ')).toBeInTheDocument();
    });
    expect(calls).toHaveLength(0);
  });

  it("shows the server's refusal", async () => {
    mockApi({ 'POST /api/auth/register': apiError(409, 'conflict', 'username `alice` is taken') });
    renderPage(<RegisterPage />, { path: '/register' });
    await fill('alice', 'a-long-password');
    expect(await screen.findByText('username `alice` is taken')).toBeInTheDocument();
  });

  it('registers and sends the user to log in', async () => {
    const calls = mockApi({
      'POST /api/auth/register': json(
        '{"id":2,"username":"alice","role":"user","status":"active","token_balance":0,"total_recharged":0,' +
          '"total_consumed":0,"discount_rate":1,"created_at":"2025-01-01T00:00:00Z"}',
        201,
      ),
    });
    renderPage(<RegisterPage />, { path: '/register', routes: { '/login': <p>login here</p> } });
    await fill('alice', 'a-long-password');
    expect(await screen.findByText('login here')).toBeInTheDocument();
    expect(calls[0].body).toEqual({ username: 'alice', password: 'a-long-password', email: null });
  });
});
