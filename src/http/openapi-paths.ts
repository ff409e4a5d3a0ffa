import { auditQuery, deadLetterQuery, deadLetterShowQuery, eventsQuery } from './schemas.js';

/*
 * The `paths` of the OpenAPI document, one function per resource group. buildOpenApiDocument (openapi.ts) puts them
 * together in the order of these functions, which is the order of docs/openapi.json.
 */

/** The `paths` entries of one resource group: path → method → operation. */
export type PathItems = Record<string, Record<string, unknown>>;

const json = (schema: unknown) => ({ 'application/json': { schema } });
/** A reference to a named schema of the document (`#/components/schemas/<name>`). */
export const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const error = (description: string) => ({ description, content: json(ref('Error')) });
const pathParam = (name: string, description: string, pattern?: string) => ({
  name,
  in: 'path',
  required: true,
  description,
  schema: { type: 'string', minLength: 1, maxLength: 128, ...(pattern ? { pattern } : {}) },
});
/** A query parameter of a streamed batch (`POST /v1/batches` with a JSON Lines body). */
const streamParam = (name: string, description: string) => ({
  name,
  in: 'query',
  required: false,
  description: `JSON Lines body only: ${description}`,
  schema: { type: 'string', minLength: 1, maxLength: 128 },
});
const apiAuth = [{ apiToken: [] }, { adminToken: [] }];
const adminAuth = [{ adminToken: [] }, { adminBasic: [] }];
const unauthorized = error('no credentials, or a wrong token');
const forbidden = error('the API token on an operator route');

function queryParameters(schema: { properties: Record<string, object> }): object[] {
  return Object.entries(schema.properties).map(([name, property]) => ({
    name,
    in: 'query',
    required: false,
    schema: property,
  }));
}

/** Enqueue a batch, and read its status. */
export function batchPaths(): PathItems {
  return {
    '/v1/batches': {
      post: {
        summary: 'Enqueue a batch of rewards (a JSON document, or JSON Lines streamed)',
        description:
          'Two forms: `application/json` `{batchId?, campaignId?, priority?, rewards}` read whole (up to WINDFALL_HTTP_BODY_LIMIT, 10 MiB), or `application/x-ndjson` (JSON Lines, the other fields in the query string) staged as it arrives, for batches of any size up to WINDFALL_MAX_BATCH_ROWS. ' +
          'The whole batch is validated before anything is enqueued: one bad row refuses it; the answer lists the first 1,000 errors by row (row = 1-based position in `rewards`, or the line of a JSON Lines body), counts every error per field and code, and gives the totals. ' +
          'JSON numbers keep their text, so an amount written `100.0` or `1e2` is refused. Bodies over WINDFALL_HTTP_BODY_LIMIT bytes (default 10 MiB) get 413. ' +
          'A batchId names one set of rewards: posting a known batchId with the same rewards (in any order) is a no-op (202, `created: false`, and it finishes handing over the batch if an earlier call stopped half-way); with other rewards, 409. ' +
          "When Redis does not take the recorded batch's jobs within WINDFALL_HANDOVER_TIMEOUT_MS (30 s), 503: the batch is recorded, and posting it again finishes the hand-over.",
        security: apiAuth,
        parameters: [
          streamParam('batchId', 'generated when absent (as `batchId` of the JSON form)'),
          streamParam('campaignId', 'the campaign whose budget pays for the batch (as `campaignId` of the JSON form)'),
          {
            ...streamParam('priority', 'high, normal (default) or low'),
            schema: { type: 'string', enum: ['high', 'normal', 'low'] },
          },
        ],
        requestBody: {
          required: true,
          content: {
            ...json(ref('BatchRequest')),
            'application/x-ndjson': {
              schema: {
                type: 'string',
                description:
                  "A streamed batch: JSON Lines, one reward object a line (as a `.jsonl` file for `windfall enqueue --file`; blank lines skipped, CRLF and a UTF-8 byte-order mark accepted); its batchId, campaignId and priority in the query string. Staged as it arrives, in bounded memory; validated, limited (WINDFALL_MAX_BATCH_ROWS) and reported exactly as the file (row = line number). Accepted only when every row is valid: one bad row refuses the whole body and nothing is recorded. WINDFALL_HTTP_BODY_LIMIT does not apply; WINDFALL_HTTP_STREAM_LIMIT (default 4 GiB) does. An answer given before the body's end (a refusal) is followed by up to 5 s of reading and dropping the rest, then the connection is closed.",
              },
              example:
                '{"rewardId":"spring-2026-000001","uid":"user1","amount":100}\n{"rewardId":"spring-2026-000002","uid":"user2","amount":"250"}\n',
            },
          },
        },
        responses: {
          '202': {
            description: 'accepted (or already known with the same rewards: `created` is false)',
            content: json(ref('BatchAccepted')),
          },
          '400': error(
            'invalid JSON, or an invalid batch: `errors` (the first 1,000), `summary`, `totalErrors`, `badRows`, `rowsRead`',
          ),
          '401': unauthorized,
          '409': error(
            "`batch conflict`: the batchId is known with other rewards (or another campaign); `budget exceeded`: the batch's total does not fit in what remains of its campaign's budget (`remaining` says what does). Nothing of this body was recorded",
          ),
          '413': error(
            'the body is larger than WINDFALL_HTTP_BODY_LIMIT (JSON) or WINDFALL_HTTP_STREAM_LIMIT (JSON Lines, by Content-Length or while it is read); nothing was recorded',
          ),
          '415': error('the body is neither application/json nor application/x-ndjson'),
          '503': error(
            "`unavailable`: Redis did not take the recorded batch's jobs in time; post the same batch again once it answers",
          ),
        },
      },
    },
    '/v1/batches/{id}': {
      get: {
        summary: 'Status and counts of a batch (as `windfall batch`)',
        security: apiAuth,
        parameters: [pathParam('id', 'the batchId')],
        responses: {
          '200': { description: 'the batch', content: json(ref('BatchReport')) },
          '401': unauthorized,
          '404': error('no batch has this id'),
        },
      },
    },
  };
}

/** Where one reward stands. */
export function rewardPaths(): PathItems {
  return {
    '/v1/rewards/{rewardId}': {
      get: {
        summary: 'Where one reward stands (as `windfall reward --json`)',
        description:
          'Its batch, uid, amount and state: `pending`, `applied`, `duplicate`, `dead_lettered` (with the entry and its reason), `purged`, `cancelled` (its batch was cancelled before it was settled) or `reverted`; a reward replayed then applied is `applied`. ' +
          'A rewardId enqueued in several batches is answered for the batch that applied it, else the newest batch holding it; `batches` lists them all (at most 100) with the state in each. ' +
          'Found by an index on the staged rewards: about a millisecond at 10 million staged rewards. Encode the id as a path segment (`/` as `%2F`).',
        security: apiAuth,
        parameters: [pathParam('rewardId', 'the rewardId')],
        responses: {
          '200': { description: 'the reward', content: json(ref('RewardReport')) },
          '401': unauthorized,
          '404': error('no batch holds this rewardId'),
        },
      },
    },
  };
}

/** A campaign's budget: set it, read it. */
export function campaignPaths(): PathItems {
  return {
    '/v1/campaigns/{id}': {
      put: {
        summary: "Set or change a campaign's budget (as `windfall campaign set`); audited",
        description:
          'Lowering a budget below what is reserved refuses new batches of the campaign and changes nothing of those accepted. A campaign without a budget is unlimited.',
        security: adminAuth,
        parameters: [pathParam('id', 'the campaignId')],
        requestBody: { required: true, content: json(ref('CampaignBudget')) },
        responses: {
          '200': { description: 'the campaign', content: json(ref('Campaign')) },
          '400': error('a bad budget'),
          '401': unauthorized,
          '403': forbidden,
        },
      },
      get: {
        summary: 'A campaign: budget, reserved, applied, released, remaining (as `windfall campaign show --json`)',
        security: adminAuth,
        parameters: [pathParam('id', 'the campaignId')],
        responses: {
          '200': { description: 'the campaign', content: json(ref('Campaign')) },
          '401': unauthorized,
          '403': forbidden,
          '404': error('no batch names the campaign and no budget was set'),
        },
      },
    },
  };
}

/** A user's wallet. */
export function walletPaths(): PathItems {
  return {
    '/v1/wallets/{uid}': {
      get: {
        summary: 'Balance and latest ledger entries of a user (balance 0 for an unknown user)',
        security: adminAuth,
        parameters: [
          pathParam('uid', 'the user'),
          {
            name: 'limit',
            in: 'query',
            required: false,
            schema: { type: 'integer', minimum: 0, maximum: 1000, default: 10 },
          },
        ],
        responses: {
          '200': { description: 'the wallet', content: json(ref('Wallet')) },
          '401': unauthorized,
          '403': forbidden,
        },
      },
    },
  };
}

/** A user's lock: its status, a forced release. */
export function lockPaths(): PathItems {
  return {
    '/v1/locks/{uid}': {
      get: {
        summary: "Status of a user's lock",
        security: adminAuth,
        parameters: [pathParam('uid', 'the user')],
        responses: {
          '200': { description: 'the lock', content: json(ref('LockStatus')) },
          '401': unauthorized,
          '403': forbidden,
        },
      },
      delete: {
        summary: "Force-release a user's lock, whoever holds it (logged as a warning)",
        description:
          "For a holder that hangs. Money stays right (PostgreSQL is the fence); the previous holder's own release becomes a no-op.",
        security: adminAuth,
        parameters: [pathParam('uid', 'the user')],
        responses: {
          '200': { description: 'released (or was not held)', content: json(ref('LockRelease')) },
          '401': unauthorized,
          '403': forbidden,
        },
      },
    },
  };
}

/** The dead-letter queue: list, show, replay. */
export function deadLetterPaths(): PathItems {
  return {
    '/v1/dead-letters': {
      get: {
        summary: 'Dead-letter entries (open ones by default), oldest first',
        description:
          'Each entry lists at most `rewards` of its rewards (default 100, at most 1,000 here), with `rewardCount` (how many it holds) and `amount` (the sum of all of them). Page through with `after` (the last id of the previous page).',
        security: adminAuth,
        parameters: queryParameters(deadLetterQuery),
        responses: {
          '200': { description: 'the entries', content: json({ type: 'array', items: ref('DeadLetter') }) },
          '400': error('a bad filter'),
          '401': unauthorized,
          '403': forbidden,
        },
      },
    },
    '/v1/dead-letters/{id}': {
      get: {
        summary: 'One dead-letter entry (any state)',
        description:
          'At most `rewards` of its rewards (default 100; up to 10,000,000); `rewardCount` says how many it holds, `amount` their sum.',
        security: adminAuth,
        parameters: [pathParam('id', 'the entry id', '^[0-9]{1,18}$'), ...queryParameters(deadLetterShowQuery)],
        responses: {
          '200': { description: 'the entry', content: json(ref('DeadLetter')) },
          '401': unauthorized,
          '403': forbidden,
          '404': error('no entry has this id'),
        },
      },
    },
    '/v1/dead-letters/replay': {
      post: {
        summary: 'Replay entries by ids or by filter',
        description:
          'Each entry is re-enqueued into its shard queue and leaves the dead-letter queue only once its replay job is in Redis. Rewards applied meanwhile end as duplicates; replaying twice credits nothing twice. ' +
          'Entries are handled 1,000 at a time (one addBulk per shard queue per page); the answer lists the first 1,000 replayed and skipped entries and counts all (`replayedCount`, `rewardCount`, `skippedCount`, `truncated`). At most 1,000 `ids` in one request.',
        security: adminAuth,
        requestBody: { required: true, content: json(ref('ReplayRequest')) },
        responses: {
          '200': {
            description: 'what was replayed (or would be, with dryRun) and which requested ids were skipped',
            content: json(ref('ReplayReport')),
          },
          '400': error('no selection, two selections, more than 1,000 ids, or a bad field'),
          '401': unauthorized,
          '403': forbidden,
        },
      },
    },
  };
}

/** Operator actions on a batch: revert, cancel. */
export function batchActionPaths(): PathItems {
  return {
    '/v1/batches/{id}/revert': {
      post: {
        summary: 'Revert a batch: debit back every reward it applied, exactly once (as `windfall batch revert`)',
        description:
          "Each user's debits (`revert:<rewardId>`, kind debit, the batch id) in one transaction under the user's lock; a user whose balance is lower than what the batch gave is listed in insufficientFunds and never driven negative. Open dead-letter entries of the batch are closed first. Recorded in the audit trail (not a dry run).",
        security: adminAuth,
        parameters: [pathParam('id', 'the batch')],
        requestBody: { required: false, content: json(ref('RevertRequest')) },
        responses: {
          '200': { description: 'what was reverted (or would be, with dryRun)', content: json(ref('RevertReport')) },
          '400': error('a bad field'),
          '401': unauthorized,
          '403': forbidden,
          '404': error('no batch has this id'),
          '409': error('the batch (or a replay of its entries) is still processing: nothing was changed'),
        },
      },
    },
    '/v1/batches/{id}/cancel': {
      post: {
        summary: 'Cancel a batch in flight (as `windfall batch cancel`)',
        description:
          'No new chunk starts; users whose transaction is in flight finish whole (the cancel waits for them); what was applied stays (revert is a separate choice); the rest counts as `cancelled` and is never paid by this batch; its dead-letter entries cannot be replayed; its campaign keeps reserved only what it paid. Status `cancelled`; a `batch.cancelled` event with webhooks; recorded in the audit trail (`batch.cancel`). Idempotent: a batch cancelled already, or with nothing left to settle, is answered as it stands (`noop: true`).',
        security: adminAuth,
        parameters: [pathParam('id', 'the batch')],
        requestBody: { required: false, content: json(ref('CancelRequest')) },
        responses: {
          '200': { description: 'what was cancelled', content: json(ref('CancelReport')) },
          '400': error('a bad field'),
          '401': unauthorized,
          '403': forbidden,
          '404': error('no batch has this id'),
        },
      },
    },
  };
}

/** What happened: the audit trail of operator actions, and batch events (webhooks). */
export function historyPaths(): PathItems {
  return {
    '/v1/audit': {
      get: {
        summary: 'The audit trail of operator actions, newest first (as `windfall audit --json`)',
        description:
          'One append-only record per force release, replay, purge (and revert and campaign setting): who (`actor`), what (`action`, `target`), what was asked (`details`) and what happened (`result`). Requests name their operator with the `X-Windfall-Actor` header.',
        security: adminAuth,
        parameters: queryParameters(auditQuery),
        responses: {
          '200': { description: 'the records', content: json({ type: 'array', items: ref('AuditRecord') }) },
          '400': error('a bad filter'),
          '401': unauthorized,
          '403': forbidden,
        },
      },
    },
    '/v1/events': {
      get: {
        summary: 'Batch events (webhooks) and their delivery, newest first (as `windfall events --json`)',
        description:
          'One batch.completed and at most one batch.reverted per batch, recorded when WINDFALL_WEBHOOK_URL is set and POSTed there signed (Windfall-Signature), at least once with a stable id, retried for 24 h.',
        security: adminAuth,
        parameters: queryParameters(eventsQuery),
        responses: {
          '200': { description: 'the events', content: json({ type: 'array', items: ref('EventDelivery') }) },
          '400': error('a bad filter'),
          '401': unauthorized,
          '403': forbidden,
        },
      },
    },
  };
}

/** The pages for browsers: the operator console and the queue dashboard. */
export function browserPaths(): PathItems {
  return {
    '/console': {
      get: {
        summary:
          'The operator console (HTML): batches (paged, searchable by batch id, uid, rewardId), reward lookup, dead letters with replay and purge, locks, revert, the audit trail',
        description:
          "Pages under /console/… behind the admin token (bearer, or basic auth with the token as password). Its actions (POST /console/actions/replay, purge, lock-release, revert; JSON) need the header `x-windfall-console: 1`: a cross-site form or fetch cannot send it, so another site cannot act through a logged-in browser. Each action previews (dryRun) before it is confirmed, answers in words (`message`, besides the CLI's document), and is recorded in the audit trail; the page then refreshes its figures in place. Replay and purge take at most 1,000 ids (400 beyond). Pages are sent with a Content-Security-Policy (only the console's own script and style run) and `X-Content-Type-Options: nosniff`; lists of dead letters and audit records are paginated.",
        security: adminAuth,
        responses: {
          '302': { description: 'to /console/batches' },
          '401': { description: 'asks for basic auth' },
          '403': forbidden,
        },
      },
    },
    '/admin/queues': {
      get: {
        summary: 'The queue dashboard (Bull Board, read-only) over every shard queue and the dead-letter queue',
        security: adminAuth,
        responses: {
          '200': { description: 'HTML', content: { 'text/html': {} } },
          '401': { description: 'asks for basic auth' },
        },
      },
    },
  };
}

/** The routes for machines, without auth: metrics, liveness, readiness, this document. */
export function servicePaths(): PathItems {
  return {
    '/metrics': {
      get: {
        summary: 'Prometheus metrics (no auth)',
        description:
          'The figures read from Redis (queue depths) and PostgreSQL (open dead letters) are refreshed at most every 5 s, at a cost that does not grow with the queues; scrapes in between answer the last figures.',
        responses: { '200': { description: 'Prometheus text format', content: { 'text/plain': {} } } },
      },
    },
    '/healthz': {
      get: {
        summary: 'Liveness: the process answers (no auth)',
        responses: {
          '200': { description: 'alive', content: json({ type: 'object', properties: { status: { const: 'ok' } } }) },
        },
      },
    },
    '/readyz': {
      get: {
        summary: 'Readiness: Redis and PostgreSQL answer (no auth)',
        description:
          'Each check gets the readiness timeout (2 s). A failed check says which service failed (`Redis does not answer`, `PostgreSQL does not answer`), never ' +
          "the driver's error: hosts, ports, user and database names stay in the server log, which records the error once when a check starts failing and once when it passes again.",
        responses: {
          '200': { description: 'both answer', content: json(ref('Readiness')) },
          '503': { description: 'one of them does not', content: json(ref('Readiness')) },
        },
      },
    },
    '/openapi.json': {
      get: {
        summary: 'This document (no auth)',
        responses: { '200': { description: 'OpenAPI 3.1', content: json({ type: 'object' }) } },
      },
    },
  };
}
