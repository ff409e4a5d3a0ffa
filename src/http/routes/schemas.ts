import {
  AUDIT_ACTIONS,
  BATCH_EVENT_STATES,
  BATCH_EVENT_TYPES,
  BATCH_PRIORITIES,
  BATCH_STATUSES,
  DEAD_LETTER_REASONS,
  DEAD_LETTER_STATES,
} from '../../db/stored-values.js';
import { ROW_PROBLEMS } from '../../rewards/row-problems.js';
import { DEFAULT_REWARDS_PER_ENTRY } from '../../dead-letters/dead-letter-store.js';
import { MAX_IDS_PER_REQUEST } from '../../dead-letters/dead-letter-selection.js';
import { REPORT_LIST_LIMIT } from '../../dead-letters/dead-letter-service.js';
import { MAX_BATCHES_LISTED, REWARD_STATES } from '../../status/reward-status.js';

/**
 * JSON schemas of the HTTP API: the route validation of `windfall serve` and the OpenAPI document are built from
 * these, so they cannot drift apart. (POST /v1/batches is validated by the producer, row by row, as the CLI is;
 * {@link rewardSchema} documents what it accepts.)
 */

const identifier = { type: 'string', minLength: 1, maxLength: 128 } as const;
const digits = {
  type: 'string',
  pattern: '^-?[0-9]+$',
  description: 'money: a whole number of minor units as a string of digits',
} as const;
const timestamp = { type: 'string', format: 'date-time' } as const;

const rowProblemCode = {
  type: 'string',
  enum: Object.keys(ROW_PROBLEMS),
  description: `stable code of the rule a row broke (new codes may be added): ${Object.entries(ROW_PROBLEMS)
    .map(([code, reason]) => `\`${code}\` ${reason}`)
    .join('; ')}`,
} as const;

export const rowErrorSchema = {
  type: 'object',
  required: ['row', 'field', 'reason'],
  properties: {
    row: { type: 'integer', description: '1-based position in `rewards`; 0 for the batch itself' },
    field: { type: 'string' },
    code: { ...rowProblemCode, description: 'the stable code of the rule (a refused batch only)' },
    reason: { type: 'string', description: 'for people, with details (a length, the value written, the row repeated)' },
  },
} as const;

export const errorCountSchema = {
  type: 'object',
  required: ['field', 'code', 'reason', 'count'],
  properties: {
    field: { type: 'string', description: '`*` counts the fields of groups beyond the first 100' },
    code: rowProblemCode,
    reason: { type: 'string', description: "the code's short reason" },
    count: { type: 'integer' },
  },
} as const;

export const errorSchema = {
  type: 'object',
  required: ['error', 'message'],
  properties: {
    error: {
      type: 'string',
      description:
        'short kind: unauthorized, forbidden, invalid batch, batch conflict, invalid request, invalid JSON, not found, payload too large, unavailable, …',
    },
    message: { type: 'string' },
    errors: {
      type: 'array',
      items: rowErrorSchema,
      description: 'the offending rows or fields (400 only); for a refused batch the first 1,000 errors by row',
    },
    summary: {
      type: 'array',
      items: errorCountSchema,
      description: 'a refused batch: every error counted per field and code, most frequent first',
    },
    totalErrors: { type: 'integer', description: 'a refused batch: all its errors' },
    badRows: { type: 'integer', description: 'a refused batch: rows with at least one error' },
    rowsRead: { type: 'integer', description: 'a refused batch: rows read' },
  },
} as const;

export const rewardSchema = {
  type: 'object',
  required: ['rewardId', 'uid', 'amount'],
  additionalProperties: false,
  properties: {
    rewardId: { ...identifier, description: 'the idempotency key: credited at most once, ever' },
    uid: identifier,
    amount: {
      description:
        'positive whole minor units, at most 9007199254740991: a JSON integer (`100`) or a string of digits (`"100"`). `100.0`, `1e2`, 0, negatives and fractions are refused.',
      oneOf: [
        { type: 'integer', minimum: 1, maximum: 9007199254740991 },
        { type: 'string', pattern: '^[0-9]+$' },
      ],
    },
    description: { type: 'string', maxLength: 500 },
  },
} as const;

export const batchRequestSchema = {
  type: 'object',
  required: ['rewards'],
  additionalProperties: false,
  properties: {
    batchId: {
      ...identifier,
      description:
        'generated when absent. A known batchId with the same rewards (in any order) is a no-op returning the same batch (202, `created: false`); with other rewards it is refused (409 `batch conflict`)',
    },
    campaignId: {
      ...identifier,
      description:
        "the campaign paying for the batch: refused (409 `budget exceeded`, with `remaining`) when its total exceeds what remains of the campaign's budget",
    },
    priority: {
      type: 'string',
      enum: [...BATCH_PRIORITIES],
      default: 'normal',
      description:
        'the lane of the batch: `high` goes ahead of work already queued; within a lane batches take turns, so a small batch never waits for a big one',
    },
    rewards: { type: 'array', minItems: 1, items: rewardSchema },
  },
} as const;

export const batchAcceptedSchema = {
  type: 'object',
  required: ['batchId', 'total', 'created'],
  properties: {
    batchId: { type: 'string' },
    total: { type: 'integer' },
    created: {
      type: 'boolean',
      description: 'false when the batchId was already known with the same rewards (nothing new was enqueued)',
    },
  },
} as const;

export const batchReportSchema = {
  type: 'object',
  required: [
    'batchId',
    'status',
    'total',
    'applied',
    'duplicate',
    'deadLettered',
    'pending',
    'cancelled',
    'reverted',
    'createdAt',
    'campaignId',
    'priority',
  ],
  properties: {
    batchId: { type: 'string' },
    status: {
      type: 'string',
      enum: [...BATCH_STATUSES],
    },
    total: { type: 'integer' },
    applied: { type: 'integer' },
    duplicate: { type: 'integer' },
    deadLettered: { type: 'integer' },
    pending: { type: 'integer' },
    cancelled: {
      type: 'integer',
      description: 'rewards not settled when the batch was cancelled: never paid by it (0 unless cancelled)',
    },
    reverted: { type: 'integer', description: 'applied rewards debited back by a batch revert' },
    createdAt: timestamp,
    campaignId: { type: ['string', 'null'], description: 'the campaign whose budget pays for the batch' },
    priority: { type: 'string', enum: [...BATCH_PRIORITIES] },
  },
} as const;

const rewardState = {
  type: 'string',
  enum: [...REWARD_STATES],
  description:
    '`pending` (not settled yet, or replayed and not settled again), `applied` (credited by this batch; also once a replay applied it), `duplicate` (already credited by another batch or operation), `dead_lettered` (in an open dead-letter entry), `purged` (its entry was purged, or closed by a revert), `reverted` (credited, then debited back by a batch revert)',
} as const;

export const rewardReportSchema = {
  type: 'object',
  required: [
    'rewardId',
    'batchId',
    'uid',
    'amount',
    'state',
    'ledgerEntryId',
    'appliedAt',
    'deadLetterId',
    'reason',
    'revertedAt',
    'batches',
  ],
  properties: {
    rewardId: { type: 'string' },
    batchId: {
      type: 'string',
      description:
        'the batch answered for: the one that applied the reward when a batch did, else the newest batch holding it (see `batches`)',
    },
    uid: { type: 'string' },
    amount: digits,
    state: rewardState,
    ledgerEntryId: {
      type: ['string', 'null'],
      description:
        "the ledger entry that credited the rewardId: this batch's (`applied`, `reverted`), or the earlier credit elsewhere (`duplicate`); else null",
    },
    appliedAt: { ...timestamp, type: ['string', 'null'], description: 'when that entry was written' },
    deadLetterId: {
      type: ['string', 'null'],
      description:
        'the newest dead-letter entry of the batch holding the reward, whatever its state (for a reward replayed then applied, the entry it was replayed from); null when it was never dead-lettered',
    },
    reason: { type: ['string', 'null'], enum: [...DEAD_LETTER_REASONS, null], description: "that entry's reason" },
    revertedAt: { ...timestamp, type: ['string', 'null'], description: 'when a revert debited it back (`reverted`)' },
    batches: {
      type: 'array',
      maxItems: MAX_BATCHES_LISTED,
      description: `every batch holding the rewardId (it may be enqueued again under other batchIds), the answered one first, then newest first; at most ${MAX_BATCHES_LISTED}`,
      items: {
        type: 'object',
        required: ['batchId', 'state'],
        properties: { batchId: { type: 'string' }, state: rewardState },
      },
    },
  },
} as const;

export const walletSchema = {
  type: 'object',
  required: ['uid', 'balance', 'entries'],
  properties: {
    uid: { type: 'string' },
    balance: digits,
    entries: {
      type: 'array',
      description: 'latest ledger entries, newest first',
      items: {
        type: 'object',
        properties: {
          operationId: { type: 'string' },
          amount: digits,
          kind: { type: 'string' },
          batchId: { type: ['string', 'null'] },
          description: { type: ['string', 'null'] },
          createdAt: timestamp,
        },
      },
    },
  },
} as const;

export const lockStatusSchema = {
  type: 'object',
  required: ['uid', 'locked', 'ttlMs', 'owner', 'acquiredAt'],
  properties: {
    uid: { type: 'string' },
    locked: { type: 'boolean' },
    ttlMs: { type: ['integer', 'null'], description: 'milliseconds until the lock expires' },
    owner: {
      type: ['string', 'null'],
      description: 'the holder (`host:pid` for Windfall processes; the raw value for a foreign lock)',
    },
    acquiredAt: { type: ['string', 'null'], format: 'date-time' },
  },
} as const;

export const lockReleaseSchema = {
  type: 'object',
  required: ['uid', 'released', 'previous'],
  properties: {
    uid: { type: 'string' },
    released: { type: 'boolean', description: 'false when the lock was not held' },
    previous: lockStatusSchema,
  },
} as const;

export const deadLetterSchema = {
  type: 'object',
  properties: {
    id: { type: 'string', pattern: '^[0-9]+$' },
    batchId: { type: 'string' },
    uid: { type: 'string' },
    shard: { type: 'integer' },
    rewards: {
      type: 'array',
      description:
        'the first rewards of the entry: at most `rewards` of them (default 100); `rewardCount` says how many it holds',
      items: {
        type: 'object',
        properties: {
          rewardId: { type: 'string' },
          uid: { type: 'string' },
          amount: digits,
          description: { type: 'string' },
        },
      },
    },
    rewardCount: { type: 'integer', description: 'rewards in the entry (`rewards` may list fewer)' },
    amount: { ...digits, description: 'the sum of every reward of the entry, listed or not (minor units)' },
    reason: { type: 'string', enum: [...DEAD_LETTER_REASONS] },
    error: { type: 'string' },
    attempts: { type: 'integer' },
    failedAt: timestamp,
    state: { type: 'string', enum: [...DEAD_LETTER_STATES] },
    chunkNo: { type: ['integer', 'null'] },
    replayOf: { type: ['string', 'null'] },
    replayedAt: { type: ['string', 'null'], format: 'date-time' },
  },
} as const;

export const replayRequestSchema = {
  type: 'object',
  additionalProperties: false,
  description: 'exactly one way of naming entries: `ids`; or `all: true`; or `reason` and/or `batchId`',
  properties: {
    ids: {
      type: 'array',
      minItems: 1,
      maxItems: MAX_IDS_PER_REQUEST,
      description: `at most ${MAX_IDS_PER_REQUEST} ids (400 beyond); select more with a filter`,
      items: { type: 'string', pattern: '^[0-9]{1,18}$' },
    },
    all: { type: 'boolean' },
    reason: { type: 'string', enum: [...DEAD_LETTER_REASONS] },
    batchId: identifier,
    dryRun: { type: 'boolean', description: 'report what would be replayed; change nothing' },
  },
} as const;

export const replayReportSchema = {
  type: 'object',
  required: ['dryRun', 'replayed', 'skipped', 'replayedCount', 'rewardCount', 'skippedCount', 'truncated'],
  properties: {
    dryRun: { type: 'boolean' },
    replayedCount: { type: 'integer', description: 'entries replayed (or that would be), listed or not' },
    rewardCount: { type: 'integer', description: 'the rewards in them' },
    skippedCount: { type: 'integer', description: 'entries not replayed, listed or not' },
    truncated: {
      type: 'boolean',
      description: `true when \`replayed\` or \`skipped\` lists fewer entries than its count (each lists at most ${REPORT_LIST_LIMIT}, the first by id)`,
    },
    replayed: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          batchId: { type: 'string' },
          uid: { type: 'string' },
          rewards: { type: 'integer' },
          jobId: { type: 'string' },
        },
      },
    },
    skipped: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          why: { type: 'string' },
          state: { type: 'string', enum: ['replayed', 'purged', 'missing', 'cancelled'] },
        },
      },
    },
  },
} as const;

/** One readiness check; a failure names the service only (the detail is in the server log). */
function readinessCheck(failure: string) {
  return {
    type: 'object',
    required: ['ok', 'ms'],
    properties: {
      ok: { type: 'boolean' },
      ms: { type: 'integer', description: 'how long the check took' },
      error: {
        const: failure,
        description: 'present when the check failed; the driver error is logged by the server, once per change',
      },
    },
  } as const;
}

export const readinessSchema = {
  type: 'object',
  required: ['status', 'checks'],
  properties: {
    status: { type: 'string', enum: ['ready', 'not ready'] },
    checks: {
      type: 'object',
      properties: {
        redis: readinessCheck('Redis does not answer'),
        postgres: readinessCheck('PostgreSQL does not answer'),
      },
    },
  },
} as const;

/** Route parameter and query schemas (validated by fastify). */
export const uidParams = { type: 'object', required: ['uid'], properties: { uid: identifier } } as const;
export const batchIdParams = { type: 'object', required: ['id'], properties: { id: identifier } } as const;
export const rewardIdParams = {
  type: 'object',
  required: ['rewardId'],
  properties: { rewardId: identifier },
} as const;
export const deadLetterIdParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: '^[0-9]{1,18}$' } },
} as const;
/** Query of `GET /v1/dead-letters/:id`. */
export const deadLetterShowQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    rewards: {
      type: 'integer',
      minimum: 0,
      maximum: 10_000_000,
      default: DEFAULT_REWARDS_PER_ENTRY,
      description: "at most this many of the entry's rewards (the first); `rewardCount` says how many it holds",
    },
  },
} as const;
export const walletQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: { type: 'integer', minimum: 0, maximum: 1000, default: 10, description: 'ledger entries to return' },
  },
} as const;
export const deadLetterQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    reason: { type: 'string', enum: [...DEAD_LETTER_REASONS] },
    batchId: identifier,
    state: { type: 'string', enum: [...DEAD_LETTER_STATES, 'any'], default: 'open' },
    limit: { type: 'integer', minimum: 1, maximum: 10000, default: 1000 },
    after: {
      type: 'string',
      pattern: '^[0-9]{1,18}$',
      description: 'only entries with a greater id: the last id of the previous page',
    },
    rewards: {
      type: 'integer',
      minimum: 0,
      maximum: 1000,
      default: DEFAULT_REWARDS_PER_ENTRY,
      description: 'at most this many rewards per entry (the first); `rewardCount` says how many each holds',
    },
  },
} as const;

/** Query of `GET /v1/audit`. */
export const auditQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    action: { type: 'string', enum: [...AUDIT_ACTIONS] },
    target: { type: 'string', minLength: 1, maxLength: 300 },
    limit: { type: 'integer', minimum: 1, maximum: 10000, default: 100 },
  },
} as const;

/** One record of the audit trail. */
export const auditRecordSchema = {
  type: 'object',
  required: ['id', 'at', 'actor', 'action', 'target', 'details', 'result'],
  properties: {
    id: { type: 'string', pattern: '^[0-9]+$' },
    at: { type: 'string', format: 'date-time' },
    actor: {
      type: 'string',
      description: 'cli:<os user>@<host> or --actor; http:<token kind>@<client address>[ as <X-Windfall-Actor>]',
    },
    action: { type: 'string', enum: [...AUDIT_ACTIONS] },
    target: { type: 'string', description: 'uid:<uid>, batch:<batchId>, dead-letters:<ids or filter>' },
    details: { type: 'object', description: 'what was asked' },
    result: { type: 'object', description: 'what happened' },
  },
} as const;

/** Query of `GET /v1/events`. */
export const eventsQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    batchId: { type: 'string', minLength: 1, maxLength: 128 },
    state: { type: 'string', enum: [...BATCH_EVENT_STATES] },
    limit: { type: 'integer', minimum: 1, maximum: 10000, default: 1000 },
  },
} as const;

/** One batch event and its delivery (as `windfall events --json`). */
export const eventDeliverySchema = {
  type: 'object',
  required: ['id', 'type', 'batchId', 'state', 'attempts', 'lastError', 'lastAttemptAt', 'createdAt', 'deliveredAt'],
  properties: {
    id: { type: 'string', format: 'uuid', description: 'the event id receivers dedupe on' },
    type: { type: 'string', enum: [...BATCH_EVENT_TYPES] },
    batchId: { type: 'string' },
    state: { type: 'string', enum: [...BATCH_EVENT_STATES] },
    attempts: { type: 'integer', description: 'requests sent so far (one cut short by a dying worker too)' },
    lastError: { type: ['string', 'null'], description: 'the last failed attempt, kept after a later success' },
    lastAttemptAt: { type: ['string', 'null'], format: 'date-time' },
    createdAt: { type: 'string', format: 'date-time' },
    deliveredAt: { type: ['string', 'null'], format: 'date-time' },
  },
} as const;

/** Body of `POST /v1/batches/:id/revert`. */
export const campaignIdParams = { type: 'object', required: ['id'], properties: { id: identifier } } as const;

/** PUT /v1/campaigns/:id: `{budget}` in minor units, digits (or a JSON integer), ≥ 0. */
export const campaignBudgetSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['budget'],
  properties: {
    budget: {
      anyOf: [
        { type: 'string', pattern: '^[0-9]{1,30}$' },
        { type: 'integer', minimum: 0, maximum: 9007199254740991 },
        { type: 'null' },
      ],
      description:
        'the budget in minor units (cents), a string of digits; null removes it (a campaign without a budget is unlimited)',
    },
  },
} as const;

/** A campaign (as `windfall campaign show --json`). */
export const campaignReportSchema = {
  type: 'object',
  required: ['campaignId', 'budget', 'reserved', 'applied', 'released', 'remaining'],
  properties: {
    campaignId: { type: 'string' },
    budget: { type: ['string', 'null'], description: 'minor units; null = unlimited' },
    reserved: {
      type: 'string',
      description: "the totals of the campaign's accepted batches, less what they gave back (`released`)",
    },
    applied: { type: 'string', description: "credited by the campaign's batches, less what was reverted" },
    released: {
      type: 'string',
      description:
        'given back to the budget: rewards that can never be paid (duplicates, purged dead-letter entries, open conflicts) and what reverts took back',
    },
    remaining: {
      type: ['string', 'null'],
      description: 'budget − reserved (negative after a budget was lowered below it); null = unlimited',
    },
  },
} as const;

export const cancelRequestSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    reason: { type: 'string', minLength: 1, maxLength: 500 },
  },
} as const;

/** The answer of a batch cancel (as `windfall batch cancel --json`). */
export const cancelReportSchema = {
  type: 'object',
  required: ['batchId', 'cancelled', 'applied', 'status', 'noop'],
  properties: {
    batchId: { type: 'string' },
    cancelled: { type: 'integer', description: 'rewards of the batch it will never pay (not settled when cancelled)' },
    applied: { type: 'integer' },
    status: { type: 'string', enum: [...BATCH_STATUSES] },
    noop: {
      type: 'boolean',
      description: 'true when nothing changed: cancelled already, or nothing left to settle (status as it stands)',
    },
  },
} as const;

export const revertRequestSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    dryRun: { type: 'boolean', default: false },
    reason: { type: 'string', minLength: 1, maxLength: 500 },
  },
} as const;

/** The answer of a batch revert (as `windfall batch revert --json`). */
export const revertReportSchema = {
  type: 'object',
  required: [
    'batchId',
    'dryRun',
    'reverted',
    'alreadyReverted',
    'insufficientFunds',
    'failed',
    'closedDeadLetters',
    'status',
  ],
  properties: {
    batchId: { type: 'string' },
    dryRun: { type: 'boolean' },
    reverted: { type: 'integer', description: 'rewards debited back by this run (or that would be, with dryRun)' },
    alreadyReverted: { type: 'integer', description: 'rewards an earlier run debited back' },
    insufficientFunds: {
      type: 'array',
      description:
        'users left unreverted: their balance is lower than what the batch gave them (never driven negative)',
      items: {
        type: 'object',
        required: ['uid', 'amount', 'balance'],
        properties: { uid: { type: 'string' }, amount: digits, balance: digits },
      },
    },
    failed: {
      type: 'array',
      description: 'users not reverted for another reason (a busy lock, a taken operation id); run the revert again',
      items: {
        type: 'object',
        required: ['uid', 'reason', 'error'],
        properties: { uid: { type: 'string' }, reason: { type: 'string' }, error: { type: 'string' } },
      },
    },
    closedDeadLetters: {
      type: 'integer',
      description: 'open dead-letter entries of the batch closed (they can no longer be replayed)',
    },
    status: {
      type: 'string',
      enum: ['reverted', 'partially_reverted'],
      description: 'the batch status after the run (what it would be, with dryRun)',
    },
  },
} as const;
