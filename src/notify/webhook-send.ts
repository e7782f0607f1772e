import { signature } from './signing.js';

export interface WebhookRequest {
  url: string;
  secret: string;
  event: string;
  deliveryId: number;
  body: string;
}

/** How one POST went: a status when the receiver answered, and why it does not count when not 2xx. */
export type SendOutcome = { ok: true; status: number | null } | { ok: false; status: number | null; error: string };

/**
 * POSTs one delivery. Only a 2xx answer counts as delivered; redirects are not followed (a
 * receiver that moved answers 3xx, which is recorded as it is).
 */
export async function postWebhook(request: WebhookRequest, timeoutMs: number, stop: AbortSignal): Promise<SendOutcome> {
  let response: Response;
  try {
    response = await fetch(request.url, {
      method: 'POST',
      redirect: 'manual',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'cm4-provisioning-webhook',
        'x-cm4prov-event': request.event,
        'x-cm4prov-delivery': String(request.deliveryId),
        'x-cm4prov-signature': signature(request.secret, request.body),
      },
      body: request.body,
      signal: AbortSignal.any([stop, AbortSignal.timeout(timeoutMs)]),
    });
    // The answer's body is not ours to read; dropping it frees the connection.
    await response.body?.cancel().catch(() => {});
  } catch (error) {
    return { ok: false, status: null, error: whyNoAnswer(error, timeoutMs) };
  }
  if (response.status >= 200 && response.status < 300) return { ok: true, status: response.status };
  return { ok: false, status: response.status, error: `the receiver answered HTTP ${response.status}` };
}

function whyNoAnswer(error: unknown, timeoutMs: number): string {
  const err = error as Error & { cause?: { code?: string; message?: string } };
  if (err.name === 'TimeoutError') return `no answer within ${timeoutMs / 1000} s`;
  if (err.name === 'AbortError') return 'the server stopped before an answer came';
  const cause = err.cause?.code ?? err.cause?.message ?? err.message;
  return `no answer: ${cause}`;
}
