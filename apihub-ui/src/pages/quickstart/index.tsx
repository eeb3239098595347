// /quickstart: how to call the gateway: base URL and copyable curl / Python / JS snippets.
import { useQuery } from '@tanstack/react-query';
import { Alert, Card, Descriptions, Space, Tabs, Typography } from 'antd';
import { Link } from 'react-router';
import { pricesApi } from '../../api';
import { CopyButton } from '../../components/CopyButton';
import { PageContainer } from '../../components/PageContainer';
import { useT } from '../../i18n';

export const KEY_PLACEHOLDER = 'YOUR_APIHUB_KEY';

export interface Snippet {
  key: string;
  label: string;
  code: string;
}

/** The snippets, for a base URL and a model. */
export function snippets(baseUrl: string, model: string): Snippet[] {
  const v1 = `${baseUrl}/v1`;
  return [
    {
      key: 'curl',
      label: 'curl',
      code: `curl ${v1}/chat/completions \\
  -H "Authorization: Bearer ${KEY_PLACEHOLDER}" \\
  -H "Content-Type: application/json" \\
  -d '{
    "model": "${model}",
    "messages": [{"role": "user", "content": "Hello!"}]
  }'`,
    },
    {
      key: 'python',
      label: 'Python (openai)',
      code: `# pip install openai
from openai import OpenAI

client = OpenAI(base_url="${v1}", api_key="${KEY_PLACEHOLDER}")
reply = client.chat.completions.create(
    model="${model}",
    messages=[{"role": "user", "content": "Hello!"}],
)
print(reply.choices[0].message.content)
print(reply.usage)`,
    },
    {
      key: 'js',
      label: 'JavaScript (openai)',
      code: `// npm install openai
import OpenAI from 'openai';

const client = new OpenAI({ baseURL: '${v1}', apiKey: '${KEY_PLACEHOLDER}' });
const reply = await client.chat.completions.create({
  model: '${model}',
  messages: [{ role: 'user', content: 'Hello!' }],
});
console.log(reply.choices[0].message.content, reply.usage);`,
    },
  ];
}

export default function QuickstartPage() {
  const t = useT();
  const prices = useQuery(pricesApi.pricesQuery());
  const baseUrl = window.location.origin;
  const model = prices.data?.[0]?.model ?? 'gpt-4o-mini';
  return (
    <PageContainer title={t('quickstart.title')} subTitle={t('quickstart.subtitle')}>
      <Space direction="vertical" size={16} style={{ width: '100%' }}>
        <Card>
          <Descriptions column={1} bordered size="small">
            <Descriptions.Item label={t('quickstart.baseUrl')}>
              <Space>
                <Typography.Text code data-testid="base-url">{`${baseUrl}/v1`}</Typography.Text>
                <CopyButton text={`${baseUrl}/v1`} />
              </Space>
            </Descriptions.Item>
            <Descriptions.Item label={t('quickstart.apiKey')}>
              {t('quickstart.apiKeyHelp')} <Link to="/keys">{t('nav.keys')}</Link>
            </Descriptions.Item>
          </Descriptions>
        </Card>
        <Alert type="info" showIcon message={t('quickstart.placeholder', { placeholder: KEY_PLACEHOLDER })} />
        <Card>
          <Tabs
            items={snippets(baseUrl, model).map((s) => ({
              key: s.key,
              label: s.label,
              children: (
                <Space direction="vertical" style={{ width: '100%' }}>
                  <div style={{ textAlign: 'right' }}>
                    <CopyButton text={s.code} />
                  </div>
                  <pre className="snippet">
                    <code>{s.code}</code>
                  </pre>
                </Space>
              ),
            }))}
          />
        </Card>
      </Space>
    </PageContainer>
  );
}
