import { createHmac, timingSafeEqual } from 'node:crypto';

/** The header carrying an event's signature. */
export const SIGNATURE_HEADER = 'Windfall-Signature';

/** How far a receiver should accept `t` from its own clock, in seconds (what the example in docs/events.md uses). */
export const DEFAULT_SIGNATURE_TOLERANCE_SECONDS = 300;

/** Hex HMAC-SHA256 of `"<t>.<body>"` under `secret`. */
export function signatureOf(secret: string, timestamp: number, body: string): string {
  return createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
}

/** The `Windfall-Signature` value for `body` sent at `timestamp` (unix seconds): `t=<timestamp>,v1=<hex>`. */
export function signatureHeader(secret: string, body: string, timestamp = Math.floor(Date.now() / 1000)): string {
  return `t=${timestamp},v1=${signatureOf(secret, timestamp, body)}`;
}

/** A `v1` value as Windfall writes it: the 32 bytes of an HMAC-SHA256 as 64 hex digits (either case accepted). */
const HEX_DIGEST = /^[0-9a-fA-F]{64}$/;

/**
 * The bytes of a hex HMAC-SHA256, or null unless `text` is exactly 64 hex digits. Strict on purpose: Node's
 * `Buffer.from(text, 'hex')` stops at the first non-hex character, so `<valid>zz` would decode to the valid digest.
 */
export function decodeHexDigest(text: string): Buffer | null {
  return HEX_DIGEST.test(text) ? Buffer.from(text, 'hex') : null;
}

/** Why {@link verifySignature} refused a request, or `ok`. */
export type SignatureCheck = 'ok' | 'malformed' | 'stale' | 'mismatch';

/**
 * Checks a `Windfall-Signature` header against the raw body, as a receiver written in Node would (docs/events.md shows
 * the same steps without Windfall): `t` within `toleranceSeconds` (default 300) of `nowSeconds`, and one of the
 * `v1` values equal to the expected HMAC, compared in constant time. A `v1` that is not exactly 64 hex digits never
 * matches (see {@link decodeHexDigest}).
 */
export function verifySignature(
  secret: string,
  header: string | undefined,
  body: string,
  options: { readonly toleranceSeconds?: number; readonly nowSeconds?: number } = {},
): SignatureCheck {
  if (!header) return 'malformed';
  const parts = header.split(',').map((part) => part.trim().split('=', 2) as [string, string | undefined]);
  const t = parts.find(([key]) => key === 't')?.[1];
  const signatures = parts.filter(([key, value]) => key === 'v1' && value !== undefined).map(([, value]) => value!);
  if (t === undefined || !/^\d+$/.test(t) || signatures.length === 0) return 'malformed';
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - Number(t)) > (options.toleranceSeconds ?? DEFAULT_SIGNATURE_TOLERANCE_SECONDS)) return 'stale';
  const expected = Buffer.from(signatureOf(secret, Number(t), body), 'hex');
  const matches = signatures.some((signature) => {
    const given = decodeHexDigest(signature);
    return given !== null && given.length === expected.length && timingSafeEqual(given, expected);
  });
  return matches ? 'ok' : 'mismatch';
}
