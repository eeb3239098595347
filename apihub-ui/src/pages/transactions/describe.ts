// Ledger descriptions in the reader's language, with key names instead of key ids. The server
// writes them in English (`gpt-4o-mini via key 7`, `redemption code (spring)`, `online recharge
// (wxpay, trade 42)`); anything else, such as an administrator's own words, is shown as written.
import { paymentTypeLabel } from '../../components/recharge/orders';
import type { Translate } from '../../i18n';

export function describeTx(description: string | null | undefined, t: Translate, keyName: (id: number) => string | undefined): string {
  if (!description) return '—';
  const viaKey = /^(.+) via key (\d+)$/.exec(description);
  if (viaKey) {
    const id = Number(viaKey[2]);
    return t('tx.viaKey', { model: viaKey[1], key: keyName(id) ?? `#${id}` });
  }
  const code = /^redemption code \((.*)\)$/.exec(description);
  if (code) return t('tx.redemption', { name: code[1] });
  const online = /^online recharge \(([^,]+), trade (.*)\)$/.exec(description);
  if (online) return t('tx.online', { type: paymentTypeLabel(t, online[1]), trade: online[2] });
  const byHand = /^online recharge completed by hand by administrator #(\d+): (.*)$/s.exec(description);
  if (byHand) return t('tx.byHand', { admin: `#${byHand[1]}`, note: byHand[2] });
  return description;
}
