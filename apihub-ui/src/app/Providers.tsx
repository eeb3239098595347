// Everything a page needs around it: i18n, antd (theme, locale, message/modal context) and
// TanStack Query. Tests wrap pages in the same providers.
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { App as AntApp, ConfigProvider } from 'antd';
// The ES builds of antd's locales: the CommonJS `antd/locale/*` reach the bundle wrapped in an
// object whose `default` is the locale, so ConfigProvider got no texts and stayed English.
import enUS from 'antd/es/locale/en_US';
import zhCN from 'antd/es/locale/zh_CN';
import dayjs from 'dayjs';
import 'dayjs/locale/zh-cn';
import { useEffect, useState, type ReactNode } from 'react';
import { ApiError, session } from '../api';
import { I18nProvider, useI18n, type Locale } from '../i18n';
import { themeFor, useSystemDark } from './theme';

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

/** antd's texts for a locale (Modal's OK and Cancel, pagination, date pickers, form marks). */
export const antdLocale = (locale: Locale) => (locale === 'zh-CN' ? zhCN : enUS);

function Ant({ children }: { children: ReactNode }) {
  const { locale } = useI18n();
  const dark = useSystemDark();
  // Before rendering, so the first render's pickers and dates already speak the locale.
  dayjs.locale(locale === 'zh-CN' ? 'zh-cn' : 'en');
  useEffect(() => {
    document.documentElement.lang = locale;
  }, [locale]);
  useEffect(() => {
    document.documentElement.dataset.theme = dark ? 'dark' : 'light';
  }, [dark]);
  return (
    <ConfigProvider locale={antdLocale(locale)} theme={themeFor(dark)}>
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
