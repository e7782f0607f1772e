import type { Ajv } from 'ajv';
import { Type, type TNumberOptions } from 'typebox';

/**
 * A count of bytes or seconds from a device: a whole number within range, nothing else.
 * With type coercion on (sh clients send forms and query strings), ajv turns the text
 * "Infinity" into Infinity and calls it an integer, and its maximum check lets it through;
 * 1e300 is an "integer" too. The `wholeNumber` keyword accepts only safe integers (≤ 2^53 − 1).
 * It is not tied to type number: ajv skips number keywords for values that are not finite.
 */
export const WholeNumber = (options: TNumberOptions = {}) => Type.Integer({ minimum: 0, ...options, wholeNumber: true });

/** Registers the `wholeNumber` keyword on the app's ajv (Fastify's `ajv.plugins`). */
export function wholeNumberKeyword(ajv: Ajv): Ajv {
  ajv.addKeyword({
    keyword: 'wholeNumber',
    schemaType: 'boolean',
    error: { message: 'must be a whole number (0 to 9007199254740991)' },
    validate: (enabled: boolean, data: unknown) => !enabled || typeof data !== 'number' || Number.isSafeInteger(data),
  });
  return ajv;
}
