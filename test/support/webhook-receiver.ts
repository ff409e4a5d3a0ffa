import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request the receiver got. */
export interface ReceivedRequest {
  readonly body: string;
  readonly signature: string | undefined;
  /** The signature checked as docs/events.md tells receivers to (HMAC of "<t>.<body>", t within 300 s). */
  readonly verified: boolean;
  readonly event: { id: string; type: string; createdAt: string; data: Record<string, unknown> } | undefined;
}

/** What the receiver does with a request: answer with a status, or hold it open (never answer). */
export type Answer = number | 'hold';

/** A webhook receiver on an ephemeral local port that verifies signatures and dedupes events on their id. */
export interface WebhookReceiver {
  readonly url: string;
  /** Every request, in arrival order. */
  readonly requests: ReceivedRequest[];
  /** Accepted (2xx-answered, verified) events by id: the receiver's deduplicated view. */
  readonly events: Map<string, NonNullable<ReceivedRequest['event']>>;
  /** Decides the answer of the n-th request (0-based). Default: 200. */
  answer: (request: ReceivedRequest, index: number) => Answer;
  close(): Promise<void>;
}

/**
 * The verification a receiver does (the same steps as the example in docs/events.md, written without Windfall's code so
 * the test checks the format, not the implementation against itself).
 */
export function verifyAsReceiver(
  secret: string,
  header: string | undefined,
  body: string,
  nowSeconds = Math.floor(Date.now() / 1000),
): boolean {
  if (!header) return false;
  const fields = Object.fromEntries(header.split(',').map((part) => part.split('=', 2) as [string, string]));
  const t = Number(fields['t']);
  // exactly 64 hex digits: Buffer.from(…, 'hex') alone would stop at the first other character and accept `<hex>zz`
  if (!Number.isInteger(t) || Math.abs(nowSeconds - t) > 300 || !/^[0-9a-f]{64}$/i.test(fields['v1'] ?? ''))
    return false;
  const expected = createHmac('sha256', secret).update(`${t}.${body}`).digest();
  const given = Buffer.from(fields['v1']!, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** Starts a receiver checking signatures with `secret`. */
export async function startReceiver(secret: string): Promise<WebhookReceiver> {
  const requests: ReceivedRequest[] = [];
  const events = new Map<string, NonNullable<ReceivedRequest['event']>>();
  const held: ServerResponse[] = [];
  const receiver: WebhookReceiver = {
    url: '',
    requests,
    events,
    answer: () => 200,
    close: async () => {
      for (const response of held) response.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  const server: Server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const signature = request.headers['windfall-signature'] as string | undefined;
      let event: ReceivedRequest['event'];
      try {
        event = JSON.parse(body) as ReceivedRequest['event'];
      } catch {
        event = undefined;
      }
      const received: ReceivedRequest = { body, signature, verified: verifyAsReceiver(secret, signature, body), event };
      const index = requests.length;
      requests.push(received);
      const answer = request.method === 'POST' && received.verified ? receiver.answer(received, index) : 401;
      if (answer === 'hold') {
        held.push(response);
        return;
      }
      if (answer >= 200 && answer < 300 && event) events.set(event.id, event);
      response
        .writeHead(answer, { 'content-type': 'text/plain' })
        .end(answer >= 300 ? `receiver says ${answer}` : 'ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  (receiver as { url: string }).url = `http://127.0.0.1:${port}/hooks/windfall`;
  return receiver;
}
