// Route guards: a session for the dashboard, the administrator role for /admin.
import { Result, Spin } from 'antd';
import type { ReactNode } from 'react';
import { Navigate, useLocation } from 'react-router';
import { useT } from '../i18n';
import { useMe, useToken } from './useSession';

export function RequireAuth({ children }: { children: ReactNode }) {
  const token = useToken();
  const location = useLocation();
  if (!token) return <Navigate to="/login" replace state={{ from: location.pathname + location.search }} />;
  return <>{children}</>;
}

export function RequireAdmin({ children }: { children: ReactNode }) {
  const t = useT();
  const me = useMe();
  if (me.isPending) return <Spin style={{ display: 'block', margin: '64px auto' }} />;
  if (me.data?.role !== 'admin') return <Result status="403" title="403" subTitle={t('common.adminOnly')} />;
  return <>{children}</>;
}
