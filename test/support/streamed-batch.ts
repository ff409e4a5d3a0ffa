import { request } from 'node:http';
import { Readable } from 'node:stream';

/** The answer to a streamed batch, and how much of the body had been sent when it came. */
export interface StreamedAnswer {
  readonly status: number;
  readonly body: any;
  readonly headers: Record<string, string | string[] | undefined>;
  /** Bytes of the body written before the answer came. */
  readonly sentBytes: number;
}

/**
 * POSTs `lines` to `/v1/batches?<query>` as `application/x-ndjson`, chunked (no Content-Length unless `headers`
 * gives one), with back-pressure: the body is generated as the server reads it. An answer that comes before the body
 * was sent whole (a refusal) ends the upload and is returned.
 */
export function postNdjson(
  baseUrl: string,
  token: string,
  query: Record<string, string | readonly string[]>,
  lines: Iterable<string | Buffer> | AsyncIterable<string | Buffer>,
  headers: Record<string, string> = {},
): Promise<StreamedAnswer> {
  const url = new URL('/v1/batches', baseUrl);
  for (const [key, values] of Object.entries(query))
    for (const value of typeof values === 'string' ? [values] : values) url.searchParams.append(key, value);
  return new Promise((resolve, reject) => {
    let sentBytes = 0;
    let answered = false;
    const source = Readable.from(lines, { objectMode: false });
    const outgoing = request(
      url,
      {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson', ...headers },
      },
      (response) => {
        answered = true;
        // an answer before the body's end is a refusal: stop sending (a chunked body ends here)
        source.unpipe(outgoing);
        source.destroy();
        outgoing.end();
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('error', reject);
        response.on('end', () => {
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            // not JSON
          }
          resolve({ status: response.statusCode ?? 0, body, headers: response.headers, sentBytes });
        });
      },
    );
    // a server that answers early and closes the connection may reset what is still being written: the answer counts
    outgoing.on('error', (error) => {
      if (!answered) reject(error);
    });
    source.on('data', (chunk: Buffer | string) => (sentBytes += Buffer.byteLength(chunk)));
    source.on('error', (error) => {
      if (!answered) reject(error);
    });
    source.pipe(outgoing);
  });
}

/** `count` reward lines `{"rewardId":"<tag>-<n>","uid":"<tag>-u<n % users>","amount":…}` from row `from`, joined in pieces of 1,000. */
export function* rewardLines(
  tag: string,
  count: number,
  options: { users?: number; bad?: number } = {},
): Generator<string> {
  const users = options.users ?? Math.max(1, Math.floor(count / 4));
  let piece = '';
  for (let n = 1; n <= count; n += 1) {
    const amount = n === options.bad ? '1.5' : String(1 + (n % 1000));
    piece += `{"rewardId":"${tag}-${n}","uid":"${tag}-u${n % users}","amount":${amount}}\n`;
    if (n % 1000 === 0) {
      yield piece;
      piece = '';
    }
  }
  if (piece) yield piece;
}
