// /quickstart: how to call the gateway from OpenAI, Anthropic and Gemini clients: the base URL
// and copyable curl / Python / JS snippets with this gateway's address and a priced model.
import { useQuery } from '@tanstack/react-query';
import { Alert, Card, Descriptions, Segmented, Space, Tabs, Typography } from 'antd';
import { useState } from 'react';
import { Link } from 'react-router';
import { pricesApi } from '../../api';
import { CopyButton } from '../../components/CopyButton';
import { PageContainer } from '../../components/PageContainer';
import { useT } from '../../i18n';
import { DIALECTS, dialectSnippets, KEY_PLACEHOLDER, type Dialect } from './snippets';

export { KEY_PLACEHOLDER, snippets, type Snippet } from './snippets';

export default function QuickstartPage() {
  const t = useT();
  const prices = useQuery(pricesApi.pricesQuery());
  const [dialect, setDialect] = useState<Dialect>('openai');
  const baseUrl = window.location.origin;
  const model = prices.data?.[0]?.model ?? 'gpt-4o-mini';
  const shownBase = dialect === 'openai' ? `${baseUrl}/v1` : baseUrl;
  return (
    <PageContainer title={t('quickstart.title')} subTitle={t('quickstart.subtitle')}>
      <Space direction="vertical" size={16} style={{ width: '100%' }}>
        <Segmented<Dialect>
          value={dialect}
          onChange={setDialect}
          options={DIALECTS.map((d) => ({ value: d, label: t(`quickstart.dialect.${d}`) }))}
          data-testid="dialect"
        />
        <Card>
          <Descriptions column={1} bordered size="small">
            <Descriptions.Item label={t('quickstart.baseUrl')}>
              <Space wrap>
                <Typography.Text code data-testid="base-url">{shownBase}</Typography.Text>
                <CopyButton text={shownBase} />
              </Space>
            </Descriptions.Item>
            <Descriptions.Item label={t('quickstart.apiKey')}>
              {t('quickstart.apiKeyHelp')} <Link to="/keys">{t('nav.keys')}</Link> · <Link to="/playground">{t('nav.playground')}</Link>
            </Descriptions.Item>
          </Descriptions>
          <Typography.Paragraph type="secondary" style={{ margin: '12px 0 0' }}>
            {t('quickstart.dialectHelp')}
          </Typography.Paragraph>
        </Card>
        <Alert type="info" showIcon message={t('quickstart.placeholder', { placeholder: KEY_PLACEHOLDER })} />
        <Card>
          <Tabs
            items={dialectSnippets(dialect, baseUrl, model).map((s) => ({
              key: s.key,
              label: s.label,
              children: (
                // Plain blocks, so a long line scrolls inside the snippet instead of widening the page.
                <div>
                  <div style={{ textAlign: 'right', marginBottom: 8 }}>
                    <CopyButton text={s.code} />
                  </div>
                  <pre className="snippet">
                    <code>{s.code}</code>
                  </pre>
                </div>
              ),
            }))}
          />
        </Card>
      </Space>
    </PageContainer>
  );
}
