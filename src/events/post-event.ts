import { signatureHeader, SIGNATURE_HEADER } from './event-signature.js';

/** How long one delivery attempt may take, connection to last byte of the answer, by default: 10 s. */
export const DEFAULT_DELIVERY_TIMEOUT_MS = 10_000;

/** Bytes of a refusing receiver's answer kept in the error (`windfall events` shows them). */
const ANSWER_SNIPPET_BYTES = 300;

/** What one attempt came to: a 2xx, or why not. */
export type PostOutcome =
  | { readonly ok: true; readonly status: number }
  | { readonly ok: false; readonly status?: number; readonly error: string };

/** Options of {@link postEvent}. */
export interface PostOptions {
  /** The event's id, sent as `Windfall-Event-Id` too. */
  readonly eventId: string;
  /** Default {@link DEFAULT_DELIVERY_TIMEOUT_MS}. */
  readonly timeoutMs?: number;
}

/**
 * POSTs one event body to `url`, signed now (`Windfall-Signature: t=<now>,v1=<hmac>`), and says whether the receiver
 * took it: a 2xx answer within the timeout. Anything else — another status (redirects included: they are not
 * followed), no answer in time, a refused or broken connection — is a failed attempt with a message for operators.
 * Never throws. Credentials in the URL (`https://user:pass@host/…`) are sent as basic auth.
 */
export async function postEvent(url: string, secret: string, body: string, options: PostOptions): Promise<PostOutcome> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_DELIVERY_TIMEOUT_MS;
  const target = new URL(url);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': 'Windfall-Webhook/1',
    'windfall-event-id': options.eventId,
  };
  if (target.username !== '' || target.password !== '') {
    const credentials = `${decodeURIComponent(target.username)}:${decodeURIComponent(target.password)}`;
    headers['authorization'] = `Basic ${Buffer.from(credentials).toString('base64')}`;
    target.username = '';
    target.password = '';
  }
  headers[SIGNATURE_HEADER.toLowerCase()] = signatureHeader(secret, body);
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const response = await fetch(target, { method: 'POST', headers, body, signal, redirect: 'manual' });
    if (response.status >= 200 && response.status < 300) {
      await response.body?.cancel().catch(() => undefined);
      return { ok: true, status: response.status };
    }
    const snippet = (await readSnippet(response)).replace(/\s+/g, ' ').trim();
    const location = response.status >= 300 && response.status < 400 ? response.headers.get('location') : null;
    const statusLine = `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`;
    const detail = location
      ? ` (redirect to ${location}: not followed; set WINDFALL_WEBHOOK_URL to the final address)`
      : snippet
        ? `: ${snippet}`
        : '';
    return { ok: false, status: response.status, error: `${statusLine}${detail}` };
  } catch (error) {
    return { ok: false, error: describeFailure(error, timeoutMs, signal) };
  }
}

/** The first bytes of an answer's body (the rest is discarded), or '' when it cannot be read. */
async function readSnippet(response: Response): Promise<string> {
  if (!response.body) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < ANSWER_SNIPPET_BYTES) {
      const { done, value } = (await reader.read()) as { done: boolean; value: Uint8Array };
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } catch {
    // a body cut short or timed out: the status says enough
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return Buffer.concat(chunks).subarray(0, ANSWER_SNIPPET_BYTES).toString('utf8');
}

/** A fetch failure for people: timeout, refused connection, or the network error's own words. */
function describeFailure(error: unknown, timeoutMs: number, signal: AbortSignal): string {
  if (signal.aborted || (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError'))) {
    return `no answer within ${timeoutMs} ms (timeout)`;
  }
  const cause =
    error instanceof Error
      ? (error.cause as { code?: string; message?: string; errors?: { message?: string }[] } | undefined)
      : undefined;
  const code = cause?.code;
  const causeText = cause?.message || cause?.errors?.map((inner) => inner.message).join('; ') || '';
  if (code === 'ECONNREFUSED') return `connection refused${causeText ? ` (${causeText})` : ''}`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `host not found${causeText ? ` (${causeText})` : ''}`;
  const message = error instanceof Error ? error.message : String(error);
  return causeText ? `${message}: ${code ? `${code} ` : ''}${causeText}` : message;
}
