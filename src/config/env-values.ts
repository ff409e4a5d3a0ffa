import { isIP } from 'node:net';
import { ConfigError } from './config-error.js';

/** Parses a URL with one of the given schemes; the error never echoes the URL (it may hold a password). */
export function parseUrl(variable: string, raw: string, schemes: readonly string[]): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new ConfigError(variable, `is not a valid URL (expected ${schemes.map((s) => `${s}//…`).join(' or ')})`);
  }
  if (!schemes.includes(url.protocol)) {
    throw new ConfigError(variable, `has scheme ${url.protocol}; expected ${schemes.join(' or ')}`);
  }
  return raw.trim();
}

/** Parses a boolean written as true/false, 1/0, yes/no or on/off. */
export function parseBoolean(variable: string, raw: string): boolean {
  const text = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(text)) return true;
  if (['0', 'false', 'no', 'off'].includes(text)) return false;
  throw new ConfigError(variable, `expected true or false, got ${JSON.stringify(raw)}`);
}

/**
 * Parses a shard list such as `0-3,6` into sorted unique shard numbers, each below `shards`.
 */
export function parseShardList(variable: string, raw: string, shards: number): number[] {
  const result = new Set<number>();
  for (const part of raw.split(',')) {
    const piece = part.trim();
    const range = /^(\d+)(?:-(\d+))?$/.exec(piece);
    if (!range) {
      throw new ConfigError(variable, `expected shard numbers and ranges such as 0-3,6; got ${JSON.stringify(raw)}`);
    }
    const from = Number(range[1]);
    const to = range[2] === undefined ? from : Number(range[2]);
    if (to < from) throw new ConfigError(variable, `range ${piece} runs backwards`);
    if (to >= shards) {
      throw new ConfigError(variable, `shard ${to} does not exist: there are ${shards} shards (0-${shards - 1})`);
    }
    for (let shard = from; shard <= to; shard += 1) result.add(shard);
  }
  return [...result].sort((a, b) => a - b);
}

/** Proxies whose `X-Forwarded-For` is believed: none (`false`), every one (`true`), or these addresses and CIDR ranges. */
export type TrustProxy = boolean | readonly string[];

/** Names proxy-addr (fastify's `trustProxy`) knows for address ranges. */
const PROXY_RANGE_NAMES = ['loopback', 'linklocal', 'uniquelocal'];

/** True for an IPv4 or IPv6 address, optionally with a CIDR prefix length, or a range name of proxy-addr. */
export function isProxyAddress(entry: string): boolean {
  if (PROXY_RANGE_NAMES.includes(entry)) return true;
  const [address = '', bits, extra] = entry.split('/');
  const family = isIP(address);
  if (family === 0 || extra !== undefined) return false;
  return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 6 ? 128 : 32));
}

/**
 * Parses a trusted-proxy setting: true/false (as {@link parseBoolean}), or proxy addresses and CIDR ranges separated
 * by commas (`127.0.0.1,10.0.0.0/8,::1`; also `loopback`, `linklocal`, `uniquelocal`). No hop counts: fastify
 * ignores them (it cannot check the peer then).
 */
export function parseTrustProxy(variable: string, raw: string): TrustProxy {
  const text = raw.trim().toLowerCase();
  if (/^(true|false|yes|no|on|off|1|0)$/.test(text)) return parseBoolean(variable, text);
  const entries = text
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '');
  const bad = entries.find((entry) => !isProxyAddress(entry));
  if (bad !== undefined || entries.length === 0) {
    throw new ConfigError(
      variable,
      `expected false, true, or the proxies' addresses and CIDR ranges separated by commas (e.g. 127.0.0.1,10.0.0.0/8, or loopback); got ${JSON.stringify(bad ?? raw)}`,
    );
  }
  return Object.freeze(entries);
}

/** True for `host:port` (an IPv6 host in brackets) with a port from 1 to 65535. */
function isHostPort(node: string): boolean {
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$/.exec(node);
  return match !== null && Number(match[2]) >= 1 && Number(match[2]) <= 65535;
}

/**
 * Checks `host:port` nodes (IPv6 hosts in brackets); throws {@link ConfigError} naming `variable` and the first bad
 * node. Returns them frozen.
 */
export function checkHostPorts(variable: string, nodes: readonly string[]): readonly string[] {
  const bad = nodes.find((node) => !isHostPort(node));
  if (bad !== undefined) {
    throw new ConfigError(variable, `expected host:port pairs separated by commas, got ${JSON.stringify(bad)}`);
  }
  return Object.freeze([...nodes]);
}

/** Parses `host:port,host:port` (IPv6 hosts in brackets); blank entries are skipped. */
export function parseHostPortList(variable: string, raw: string): readonly string[] {
  const nodes = raw
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '');
  return checkHostPorts(variable, nodes);
}
