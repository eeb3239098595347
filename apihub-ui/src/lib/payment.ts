// Sending the browser to the payment provider: the server hands back where to go and the signed
// fields to send; the page builds a hidden HTML form with them and submits it, so the fields are
// POSTed exactly as signed (and never end up in a URL or the history).

export interface PaymentRequest {
  /** The provider's page, e.g. `https://pay.example.com/submit.php`. */
  url: string;
  /** `POST` (or `GET`). */
  method: string;
  /** The signed fields, sent as they are. */
  fields: Record<string, string>;
}

/** A hidden form that submits `payment`, not yet attached to the document. */
export function buildPaymentForm(payment: PaymentRequest, doc: Document = document): HTMLFormElement {
  const form = doc.createElement('form');
  form.method = payment.method.toUpperCase() === 'GET' ? 'GET' : 'POST';
  form.action = payment.url;
  form.acceptCharset = 'utf-8';
  form.style.display = 'none';
  form.setAttribute('data-testid', 'payment-form');
  for (const [name, value] of Object.entries(payment.fields)) {
    const input = doc.createElement('input');
    input.type = 'hidden';
    input.name = name;
    input.value = value;
    form.appendChild(input);
  }
  return form;
}

/** Leaves the dashboard for the payment page by submitting a hidden form. */
export function submitPayment(payment: PaymentRequest, doc: Document = document): HTMLFormElement {
  const form = buildPaymentForm(payment, doc);
  doc.body.appendChild(form);
  form.submit();
  return form;
}
