import { describe, expect, it, vi } from 'vitest';
import { buildPaymentForm, submitPayment } from './payment';

const PAYMENT = {
  url: 'https://pay.example.com/submit.php',
  method: 'POST',
  fields: { pid: '1001', out_trade_no: 'epay20250101abc', money: '18.25', name: 'APIHub 2.5 credits & more', sign: 'ab"c', sign_type: 'MD5' },
};

describe('buildPaymentForm', () => {
  it('posts every signed field as it is, hidden', () => {
    const form = buildPaymentForm(PAYMENT);
    expect(form.method).toBe('post');
    expect(form.action).toBe('https://pay.example.com/submit.php');
    expect(form.style.display).toBe('none');
    const inputs = [...form.querySelectorAll('input')];
    expect(inputs.every((i) => i.type === 'hidden')).toBe(true);
    expect(Object.fromEntries(inputs.map((i) => [i.name, i.value]))).toEqual(PAYMENT.fields);
    expect(Object.fromEntries(new FormData(form))).toEqual(PAYMENT.fields);
  });

  it('honours GET', () => {
    expect(buildPaymentForm({ ...PAYMENT, method: 'get' }).method).toBe('get');
  });
});

describe('submitPayment', () => {
  it('attaches the form and submits it', () => {
    const submit = vi.spyOn(HTMLFormElement.prototype, 'submit').mockImplementation(function (this: HTMLFormElement) {
      expect(this.isConnected).toBe(true);
    });
    const form = submitPayment(PAYMENT);
    expect(submit).toHaveBeenCalledTimes(1);
    expect(submit.mock.contexts[0]).toBe(form);
    expect(document.body.contains(form)).toBe(true);
    form.remove();
  });
});
