import { createHash, timingSafeEqual } from 'node:crypto';
import { WindfallError } from '../errors/windfall-error.js';

/** Who a request authenticated as. */
export type Principal = 'api' | 'admin';

/** The outcome of checking a request's credentials against what a route needs. */
export type AuthDecision =
  | { readonly ok: true; readonly principal: Principal }
  | { readonly ok: false; readonly status: 401 | 403; readonly message: string };

/** The credential a request carries: a bearer token, or the password of HTTP basic auth. Null when none. */
export function credentialOf(authorization: string | undefined): string | null {
  if (!authorization) return null;
  const bearer = /^Bearer[ \t]+(\S.*)$/i.exec(authorization);
  if (bearer) return bearer[1]!.trim();
  const basic = /^Basic[ \t]+([A-Za-z0-9+/=_-]+)\s*$/i.exec(authorization);
  if (basic) {
    const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    // user:password — the user name is ignored, the password is the token
    return colon >= 0 ? decoded.slice(colon + 1) : null;
  }
  return null;
}

/** The HTTP API's tokens cannot be used: no API token, or an admin token equal to it. `serve` does not start. */
export class HttpConfigError extends WindfallError {
  static override readonly code = 'CONFIG_INVALID';
  override readonly name = 'HttpConfigError';
  constructor(
    /** The variable at fault. */
    readonly variable: 'WINDFALL_API_TOKEN' | 'WINDFALL_ADMIN_TOKEN',
    message: string,
  ) {
    super(message);
  }
}

/**
 * Checks the tokens the HTTP API starts with (`windfall serve` before it connects, and the server when it is built).
 * @throws {@link HttpConfigError} without an API token, or when the admin token equals it.
 */
export function checkServerTokens(
  apiToken: string | undefined,
  adminToken: string | undefined,
): asserts apiToken is string {
  if (!apiToken)
    throw new HttpConfigError(
      'WINDFALL_API_TOKEN',
      'WINDFALL_API_TOKEN is not set: the HTTP API refuses to start without a token for producers (set WINDFALL_API_TOKEN, and WINDFALL_ADMIN_TOKEN for operator routes)',
    );
  if (adminToken !== undefined && adminToken === apiToken)
    throw new HttpConfigError(
      'WINDFALL_ADMIN_TOKEN',
      'WINDFALL_ADMIN_TOKEN equals WINDFALL_API_TOKEN: the API token would open operator routes; use two different tokens',
    );
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/**
 * Checks tokens in constant time: both sides are hashed (SHA-256) so the comparison never depends on where the
 * first differing character is, nor on the token's length; then `crypto.timingSafeEqual` compares the digests.
 * The tokens themselves are kept only as digests.
 */
export class TokenGuard {
  private readonly api: Buffer;
  private readonly admin: Buffer | null;

  constructor(tokens: { readonly apiToken: string; readonly adminToken?: string | undefined }) {
    this.api = digest(tokens.apiToken);
    this.admin = tokens.adminToken ? digest(tokens.adminToken) : null;
  }

  /** True when operator routes can be opened at all (an admin token is configured). */
  get adminEnabled(): boolean {
    return this.admin !== null;
  }

  /** Who the credential is: the admin token, the API token, or nobody. Always hashes and compares against both. */
  identify(credential: string | null): Principal | null {
    const given = digest(credential ?? '');
    const isApi = timingSafeEqual(given, this.api);
    const isAdmin = this.admin !== null && timingSafeEqual(given, this.admin);
    if (credential === null) return null;
    if (isAdmin) return 'admin';
    if (isApi) return 'api';
    return null;
  }

  /**
   * Producer routes open to the API token (and to the admin token, which can do everything); operator routes
   * only to the admin token — the API token gets 403 there.
   */
  check(authorization: string | undefined, needs: Principal): AuthDecision {
    const credential = credentialOf(authorization);
    const principal = this.identify(credential);
    if (needs === 'api') {
      if (principal) return { ok: true, principal };
      return {
        ok: false,
        status: 401,
        message:
          credential === null
            ? 'missing credentials: send Authorization: Bearer <WINDFALL_API_TOKEN>'
            : 'invalid token',
      };
    }
    if (!this.adminEnabled) {
      return {
        ok: false,
        status: 401,
        message: 'operator routes are disabled: the server was started without WINDFALL_ADMIN_TOKEN',
      };
    }
    if (principal === 'admin') return { ok: true, principal };
    if (principal === 'api')
      return {
        ok: false,
        status: 403,
        message: 'the API token does not open operator routes: use WINDFALL_ADMIN_TOKEN',
      };
    return {
      ok: false,
      status: 401,
      message:
        credential === null
          ? 'missing credentials: send Authorization: Bearer <WINDFALL_ADMIN_TOKEN> (or basic auth with it as password)'
          : 'invalid token',
    };
  }
}
