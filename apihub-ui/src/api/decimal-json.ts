// JSON parsing that keeps exact decimals exact.
//
// The server writes money and discount rates as JSON numbers with the exact decimal text
// (`100.5`, `0.000001`, `12345678901.123456`). `JSON.parse` would turn them into doubles, which
// cannot hold every such value; here every field named in DECIMAL_FIELDS keeps its text as a
// string instead, and every other number becomes a JS number as usual.
import { isLosslessNumber, parse } from 'lossless-json';
import { DECIMAL_FIELDS } from './decimal-fields';

/** Parses JSON text, keeping decimal fields as their exact text. */
export function parseDecimalJson(text: string): unknown {
  return parse(text, (key, value) => {
    if (!isLosslessNumber(value)) return value;
    return DECIMAL_FIELDS.has(key) ? value.toString() : Number(value.toString());
  });
}
