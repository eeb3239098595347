// Form rules that match the server's: usernames, passwords, exact amounts, discount rates.
import type { Rule } from 'antd/es/form';
import type { Dayjs } from 'dayjs';
import type { Translate } from '../i18n';
import { decimalProblem, type DecimalRule } from './money';

export const USERNAME_PATTERN = /^[A-Za-z0-9_.-]{3,32}$/;
export const MIN_PASSWORD = 8;
export const MAX_KEY_NAME = 100;

/** A validator: given the translate function, an antd rule. Fields declare these as data. */
export type Validator = (t: Translate) => Rule;

export const required: Validator = (t) => ({ required: true, message: t('validation.required') });

export const username: Validator = (t) => ({
  validator: (_, value?: string) =>
    !value || USERNAME_PATTERN.test(value) ? Promise.resolve() : Promise.reject(new Error(t('validation.username'))),
});

export const password: Validator = (t) => ({
  validator: (_, value?: string) =>
    !value || value.length >= MIN_PASSWORD
      ? Promise.resolve()
      : Promise.reject(new Error(t('validation.password', { min: MIN_PASSWORD }))),
});

export const email: Validator = (t) => ({ type: 'email', message: t('validation.email') });

export const maxLength =
  (max: number): Validator =>
  (t) => ({ max, message: t('validation.maxLength', { max }) });

/** An exact decimal amount: at most 6 fractional digits, below 10⁹; sign and zero per `rule`. */
export const decimal =
  (rule: DecimalRule = {}): Validator =>
  (t) => ({
    validator: (_, value?: string) => {
      if (value === undefined || value === null || String(value).trim() === '') return Promise.resolve();
      const problem = decimalProblem(String(value), rule);
      return problem ? Promise.reject(new Error(t(`validation.decimal.${problem}`))) : Promise.resolve();
    },
  });

/** A discount rate: a decimal in (0, 1]. */
export const discountRate: Validator = (t) => ({
  validator: (_, value?: string) => {
    if (value === undefined || value === null || String(value).trim() === '') return Promise.resolve();
    const text = String(value).trim();
    const problem = decimalProblem(text, { maxWholeDigits: 1 });
    const parts = /^0*([01])(?:\.(\d+))?$/.exec(text);
    const ok = !problem && parts !== null && (parts[1] === '0' || !/[1-9]/.test(parts[2] ?? ''));
    return !ok
      ? Promise.reject(new Error(t('validation.discount')))
      : Promise.resolve();
  },
});

/** A whole number within [min, max]. */
export const integer =
  (min: number, max = Number.MAX_SAFE_INTEGER): Validator =>
  (t) => ({
    validator: (_, value?: number | null) =>
      value === undefined || value === null || (Number.isInteger(value) && value >= min && value <= max)
        ? Promise.resolve()
        : Promise.reject(new Error(t('validation.integer', { min, max: max === Number.MAX_SAFE_INTEGER ? '∞' : max }))),
  });

/** A time in the future. */
export const future: Validator = (t) => ({
  validator: (_, value?: Dayjs | null) =>
    !value || value.valueOf() > Date.now() ? Promise.resolve() : Promise.reject(new Error(t('validation.future'))),
});

/** Equal to another field of the same form (password confirmation). */
export const sameAs =
  (other: string): Validator =>
  (t) =>
  ({ getFieldValue }) => ({
    validator: (_, value?: string) =>
      !value || value === getFieldValue(other) ? Promise.resolve() : Promise.reject(new Error(t('validation.mismatch'))),
  });
