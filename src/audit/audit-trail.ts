import { hostname, userInfo } from 'node:os';
import { queryBuilder, runQuery } from '../db/query-builder.js';
import type { AuditAction } from '../db/stored-values.js';
import type { Queryable } from '../db/queryable.js';

/** One record of the audit trail (append-only: never updated or deleted). */
export interface AuditRecord {
  readonly id: string;
  /** ISO 8601. */
  readonly at: string;
  /** Who: `cli:<os user>@<host>` or `--actor`; `http:<token kind>@<client address>`, plus ` as <X-Windfall-Actor>`. */
  readonly actor: string;
  readonly action: AuditAction;
  /** What: `uid:<uid>`, `batch:<batchId>`, `dead-letters:<ids>` or `dead-letters:<filter>`. */
  readonly target: string;
  /** The request: its filter, reason, options. */
  readonly details: Record<string, unknown>;
  /** What happened. */
  readonly result: Record<string, unknown>;
}

/** A record to write. */
export type NewAuditRecord = Pick<AuditRecord, 'actor' | 'action' | 'target' | 'details' | 'result'>;

/** Writes one record; give it the client of the action's own transaction when the action changes the database. */
export async function recordAudit(db: Queryable, record: NewAuditRecord): Promise<string> {
  const { rows } = await db.query<{ id: bigint }>(
    `insert into audit_log (actor, action, target, details, result) values ($1, $2, $3, $4::jsonb, $5::jsonb) returning id`,
    [record.actor, record.action, record.target, JSON.stringify(record.details), JSON.stringify(record.result)],
  );
  return rows[0]!.id.toString();
}

/** Filters of {@link listAudit}. */
export interface AuditFilter {
  readonly action?: string;
  /** Exact target (`uid:u1`, `batch:b1`, …). */
  readonly target?: string;
  /** Most records. Default 100. */
  readonly limit?: number;
  /** Only records older than this one (by id): the last id of the previous page. Default: from the newest. */
  readonly before?: string;
  /** Only records whose target or actor contains this text (any case): a batch id, a uid, an entry id, a name. */
  readonly search?: string;
}

/** Records, newest first. */
export async function listAudit(db: Queryable, filter: AuditFilter = {}): Promise<AuditRecord[]> {
  const { db: qb } = await queryBuilder();
  let query = qb.selectFrom('audit_log').select(['id', 'at', 'actor', 'action', 'target', 'details', 'result']);
  if (filter.action !== undefined) query = query.where('action', '=', filter.action as AuditAction);
  if (filter.target !== undefined) query = query.where('target', '=', filter.target);
  if (filter.before !== undefined) query = query.where('id', '<', BigInt(filter.before));
  if (filter.search !== undefined && filter.search !== '') {
    const pattern = `%${filter.search.replace(/[\\%_]/g, (char) => `\\${char}`)}%`;
    query = query.where((eb) => eb.or([eb('target', 'ilike', pattern), eb('actor', 'ilike', pattern)]));
  }
  const rows = await runQuery(db, query.orderBy('id', 'desc').limit(filter.limit ?? 100));
  return rows.map((row) => ({
    id: row.id.toString(),
    at: row.at.toISOString(),
    actor: row.actor,
    action: row.action,
    target: row.target,
    details: row.details,
    result: row.result,
  }));
}

/** The actor of a CLI command: `--actor NAME`, or `cli:<os user>@<host>`. */
export function cliActor(explicit?: string): string {
  if (explicit !== undefined && explicit.trim() !== '') return explicit.trim();
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // no user name (a container without a passwd entry): keep "unknown"
  }
  return `cli:${user}@${hostname()}`;
}

const ACTOR_HEADER_VALUE = /^[\x20-\x7e]{1,128}$/;

/**
 * The actor of an HTTP request: `http:<token kind>@<client address>`, and ` as <name>` when the request names its
 * operator in `X-Windfall-Actor` (printable ASCII, at most 128 characters; anything else is ignored).
 */
export function httpActor(principal: string, address: string, header: string | string[] | undefined): string {
  const base = `http:${principal}@${address}`;
  const named = typeof header === 'string' ? header.trim() : undefined;
  return named && ACTOR_HEADER_VALUE.test(named) ? `${base} as ${named}` : base;
}

/** Most entry ids a target names; the record's `details.filter` has them all. */
const TARGET_IDS = 20;

/**
 * The target of a dead-letter action: its entry ids (the first 20, then `,…(<n> ids)`: the column is indexed, and an
 * index entry has a size limit), or its filter.
 */
export function deadLetterTarget(filter: {
  ids?: readonly string[];
  all?: boolean;
  reason?: string;
  batchId?: string;
}): string {
  if (filter.ids && filter.ids.length > TARGET_IDS)
    return `dead-letters:${filter.ids.slice(0, TARGET_IDS).join(',')},…(${filter.ids.length} ids)`;
  if (filter.ids && filter.ids.length > 0) return `dead-letters:${filter.ids.join(',')}`;
  const parts = [
    filter.batchId !== undefined ? `batch=${filter.batchId}` : '',
    filter.reason !== undefined ? `reason=${filter.reason}` : '',
  ].filter(Boolean);
  return `dead-letters:${parts.length > 0 ? parts.join(',') : 'all'}`;
}
