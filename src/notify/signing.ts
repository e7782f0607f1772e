import { createHmac, randomBytes } from 'node:crypto';

/** A new signing secret: 32 random bytes as hex. */
export const newSecret = () => randomBytes(32).toString('hex');

/**
 * The X-CM4Prov-Signature value: `sha256=` and the hex HMAC-SHA256 of the exact body bytes,
 * keyed with the webhook's secret (the scheme GitHub uses for X-Hub-Signature-256). A receiver
 * recomputes it over the raw body and compares in constant time.
 */
export const signature = (secret: string, body: string) => `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

/** What a listing shows of a secret: enough to tell two apart, nothing to sign with. */
export const secretHint = (secret: string) => `…${secret.slice(-4)}`;
