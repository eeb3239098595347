// /playground: chat with a model through one of the caller's keys, streamed, with each reply's
// tokens and cost (as the gateway bills it: the model's price and the user's and key's discounts).
import { useQuery } from '@tanstack/react-query';
import { Alert, Button, Card, Col, Empty, Form, Input, Row, Select, Space, Typography } from 'antd';
import { useCallback, useRef, useState } from 'react';
import { creditApi, keysApi, pricesApi } from '../../api';
import { PageContainer } from '../../components/PageContainer';
import { useI18n } from '../../i18n';
import { formatCount } from '../../lib/format';
import { formatMoney } from '../../lib/money';
import { replyCost, type ReplyCost } from './cost';
import { KeyPicker } from './KeyPicker';
import { streamChat, type ChatMessage, type ChatUsage } from './stream';

interface Turn {
  role: 'user' | 'assistant';
  content: string;
  usage?: ChatUsage | null;
  cost?: ReplyCost | null;
  error?: string;
  streaming?: boolean;
}

function ReplyFooter({ turn }: { turn: Turn }) {
  const { t, locale } = useI18n();
  if (turn.streaming) return null;
  if (turn.error) return <Typography.Text type="danger">{t('playground.failed', { message: turn.error })}</Typography.Text>;
  if (!turn.usage) return <Typography.Text type="secondary">{t('playground.noUsage')}</Typography.Text>;
  const u = turn.usage;
  return (
    <Typography.Text type="secondary" style={{ fontSize: 12 }} className="num" data-testid="reply-usage">
      {t('playground.tokens', { prompt: formatCount(u.prompt_tokens, locale), completion: formatCount(u.completion_tokens, locale), total: formatCount(u.total_tokens, locale) })}
      {' · '}
      {turn.cost ? (
        <>
          {t('playground.cost', { cost: formatMoney(turn.cost.charged) })}
          {turn.cost.raw !== turn.cost.charged ? ` (${t('playground.costBefore', { raw: formatMoney(turn.cost.raw) })})` : ''}
        </>
      ) : (
        t('playground.noPrice')
      )}
    </Typography.Text>
  );
}

export default function PlaygroundPage() {
  const { t } = useI18n();
  const prices = useQuery(pricesApi.pricesQuery());
  const balance = useQuery(creditApi.balanceQuery());
  const keys = useQuery(keysApi.keysQuery({ page: 1, page_size: 200 }));
  const [keyId, setKeyId] = useState<number>();
  const [secret, setSecret] = useState('');
  const [model, setModel] = useState<string>();
  const [system, setSystem] = useState('');
  const [draft, setDraft] = useState('');
  const [turns, setTurns] = useState<Turn[]>([]);
  const abort = useRef<AbortController | null>(null);
  const busy = turns.some((x) => x.streaming);
  const chosenModel = model ?? prices.data?.[0]?.model;
  const onKey = useCallback((id: number | undefined, value: string) => {
    setKeyId(id);
    setSecret(value);
  }, []);

  const update = (patch: Partial<Turn>) => setTurns((all) => [...all.slice(0, -1), { ...all[all.length - 1], ...patch }]);

  const send = async () => {
    const text = draft.trim();
    if (!text || !chosenModel || busy || !secret) return;
    const history: ChatMessage[] = [
      ...(system.trim() ? [{ role: 'system' as const, content: system.trim() }] : []),
      ...turns.filter((x) => !x.error).map((x) => ({ role: x.role, content: x.content })),
      { role: 'user', content: text },
    ];
    setDraft('');
    setTurns((all) => [...all, { role: 'user', content: text }, { role: 'assistant', content: '', streaming: true }]);
    const controller = new AbortController();
    abort.current = controller;
    try {
      let content = '';
      const result = await streamChat({
        key: secret,
        model: chosenModel,
        messages: history,
        signal: controller.signal,
        onDelta: (piece) => {
          content += piece;
          update({ content });
        },
      });
      const price = prices.data?.find((p) => p.model === chosenModel);
      const key = keys.data?.items.find((k) => k.id === keyId);
      const cost = result.usage && price ? replyCost(price, result.usage, balance.data?.discount_rate ?? '1', key?.discount_rate ?? '1') : null;
      update({ content: result.content, usage: result.usage, cost, streaming: false });
    } catch (e) {
      const aborted = e instanceof DOMException && e.name === 'AbortError';
      update({ streaming: false, error: aborted ? t('playground.stop') : e instanceof Error ? e.message : String(e) });
    } finally {
      abort.current = null;
    }
  };

  return (
    <PageContainer title={t('playground.title')} subTitle={t('playground.subtitle')}>
      <Row gutter={[16, 16]}>
        <Col xs={24} lg={8}>
          <Card>
            <Form layout="vertical">
              <KeyPicker keyId={keyId} secret={secret} onChange={onKey} />
              <Form.Item label={t('playground.model')} style={{ marginBottom: 12 }}>
                <Select<string>
                  showSearch
                  value={chosenModel}
                  loading={prices.isPending}
                  onChange={setModel}
                  options={(prices.data ?? []).map((p) => ({ value: p.model, label: p.model }))}
                  aria-label={t('playground.model')}
                />
              </Form.Item>
              <Form.Item label={t('playground.system')} style={{ marginBottom: 0 }}>
                <Input.TextArea value={system} onChange={(e) => setSystem(e.target.value)} autoSize={{ minRows: 2, maxRows: 6 }} aria-label={t('playground.system')} />
              </Form.Item>
            </Form>
          </Card>
        </Col>
        <Col xs={24} lg={16}>
          <Card
            extra={
              <Button size="small" onClick={() => setTurns([])} disabled={busy || turns.length === 0}>
                {t('playground.clear')}
              </Button>
            }
            title={chosenModel ?? t('playground.title')}
          >
            <div className="chat" data-testid="chat">
              {turns.length === 0 ? <Empty image={Empty.PRESENTED_IMAGE_SIMPLE} description={t('playground.empty')} /> : null}
              {turns.map((turn, i) => (
                <div key={i} className={`chat-turn chat-${turn.role}`} data-testid={`turn-${turn.role}`}>
                  <Typography.Text strong>{turn.role === 'user' ? t('playground.you') : t('playground.assistant')}</Typography.Text>
                  <div className="chat-text">{turn.content || (turn.streaming ? '…' : '')}</div>
                  {turn.role === 'assistant' ? <ReplyFooter turn={turn} /> : null}
                </div>
              ))}
            </div>
            {!secret ? <Alert type="info" showIcon message={t('playground.needKey')} style={{ margin: '12px 0' }} /> : null}
            <Space.Compact style={{ width: '100%', marginTop: 12 }}>
              <Input.TextArea
                value={draft}
                onChange={(e) => setDraft(e.target.value)}
                placeholder={t('playground.placeholder')}
                autoSize={{ minRows: 2, maxRows: 8 }}
                aria-label={t('playground.placeholder')}
                onKeyDown={(e) => {
                  if (e.key === 'Enter' && !e.shiftKey) {
                    e.preventDefault();
                    void send();
                  }
                }}
              />
              {busy ? (
                <Button danger onClick={() => abort.current?.abort()} style={{ height: 'auto' }}>
                  {t('playground.stop')}
                </Button>
              ) : (
                <Button type="primary" onClick={() => void send()} disabled={!secret || !chosenModel || !draft.trim()} style={{ height: 'auto' }}>
                  {t('playground.send')}
                </Button>
              )}
            </Space.Compact>
          </Card>
        </Col>
      </Row>
    </PageContainer>
  );
}
