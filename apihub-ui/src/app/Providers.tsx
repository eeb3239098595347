// Everything a page needs around it: i18n, antd (theme, locale, message/modal context) and
// TanStack Query. Tests wrap pages in the same providers.
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { App as AntApp, ConfigProvider } from 'antd';
import enUS from 'antd/locale/en_US';
import zhCN from 'antd/locale/zh_CN';
import dayjs from 'dayjs';
import 'dayjs/locale/zh-cn';
import { useEffect, useState, type ReactNode } from 'react';
import { ApiError, session } from '../api';
import { I18nProvider, useI18n, type Locale } from '../i18n';

export function makeQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        // Client errors (a 404, a 401, a refused filter) do not get better by asking again.
        retry: (count, error) => !(error instanceof ApiError && error.status >= 400 && error.status < 500) && count < 2,
        refetchOnWindowFocus: false,
        staleTime: 10_000,
      },
    },
  });
}

function Ant({ children }: { children: ReactNode }) {
  const { locale } = useI18n();
  useEffect(() => {
    dayjs.locale(locale === 'zh-CN' ? 'zh-cn' : 'en');
    document.documentElement.lang = locale;
  }, [locale]);
  return (
    <ConfigProvider locale={locale === 'zh-CN' ? zhCN : enUS} theme={{ token: { colorPrimary: '#1677ff' } }}>
      <AntApp>{children}</AntApp>
    </ConfigProvider>
  );
}

/** Drops cached data when a session ends, and says so when it expired. */
function SessionWatcher({ client }: { client: QueryClient }) {
  const { t } = useI18n();
  const { message } = AntApp.useApp();
  useEffect(
    () =>
      session.subscribe((token, reason) => {
        if (token !== null) return;
        client.clear();
        if (reason === 'expired') message.warning(t('session.expired'));
      }),
    [client, message, t],
  );
  return null;
}

export function Providers({
  children,
  client: given,
  locale,
}: {
  children: ReactNode;
  client?: QueryClient;
  locale?: Locale;
}) {
  const [client] = useState(() => given ?? makeQueryClient());
  return (
    <I18nProvider locale={locale}>
      <QueryClientProvider client={client}>
        <Ant>
          <SessionWatcher client={client} />
          {children}
        </Ant>
      </QueryClientProvider>
    </I18nProvider>
  );
}
