import type { FastifyInstance } from 'fastify';
import { listAudit } from '../audit/audit-trail.js';
import { AUDIT_ACTIONS, BATCH_STATUSES, DEAD_LETTER_REASONS, DEAD_LETTER_STATES } from '../db/stored-values.js';
import { getBatchReport, listBatchReports } from '../status/batch-status.js';
import { listDeadLetters, type ListedDeadLetter } from '../dead-letters/dead-letter-store.js';
import { getRewardReport, unknownRewardMessage, type RewardReport } from '../status/reward-status.js';
import type { ConsoleContext } from './console.js';
import {
  actionForm,
  age,
  CONSOLE_MAX_REWARDS,
  CONSOLE_PAGE_SIZE,
  CONSOLE_PATH,
  cursor,
  h,
  html,
  page,
  pageOf,
  pager,
  progress,
  shortened,
  statusCell,
  withQuery,
} from './console-html.js';

/** How the batches page searches: by the start of a batch id, by a user, by a rewardId. */
const BATCH_SEARCHES = [
  { key: 'batch', label: 'batch id', filter: 'batchIdPrefix', placeholder: 'the id, or how it starts', note: '' },
  {
    key: 'uid',
    label: 'uid',
    filter: 'uid',
    placeholder: 'a user id',
    note: 'Batches that credited or debited the user, or hold a dead-letter entry of theirs (a reward not settled yet: search by its rewardId).',
  },
  { key: 'reward', label: 'rewardId', filter: 'rewardId', placeholder: 'a rewardId', note: '' },
] as const;

/*
 * What the console's pages read from a request. They have no JSON schema (a page shows what it understands of its
 * query and ignores the rest), so these are the route's types as fastify's generics declare them: the fields a
 * handler looks at.
 */
interface IdParams {
  id: string;
}
interface PageQuery {
  after?: string;
}
interface BatchesQuery {
  status?: string;
  by?: string;
  q?: string;
  at?: string;
  id?: string;
}
interface DeadLettersQuery {
  reason?: string;
  batchId?: string;
  uid?: string;
  rewardId?: string;
  state?: string;
  after?: string;
}
interface EntryQuery {
  rewards?: string;
}
interface RewardQuery {
  rewardId?: unknown;
}
interface LockQuery {
  uid?: string;
}
interface AuditQuery {
  action?: string;
  target?: string;
  q?: string;
  before?: string;
}

function deadLetterRows(entries: readonly ListedDeadLetter[], selectable: boolean): string {
  if (entries.length === 0) return '<p class="muted">No entries.</p>';
  return `<table><thead><tr>${selectable ? '<th>Select</th>' : ''}<th>id</th><th>batch</th><th>uid</th><th>rewards</th><th>amount</th><th>reason</th><th>state</th><th>attempts</th><th>error</th><th>failed</th></tr></thead><tbody>
${entries
  .map(
    (
      entry,
    ) => `<tr>${selectable ? `<td>${entry.state === 'open' ? `<input type="checkbox" name="entry" value="${h(entry.id)}" aria-label="select entry ${h(entry.id)}">` : ''}</td>` : ''}
<td><a href="${CONSOLE_PATH}/dead-letters/${h(entry.id)}">${h(entry.id)}</a></td><td><a href="${CONSOLE_PATH}/batches/${encodeURIComponent(entry.batchId)}">${h(entry.batchId)}</a></td>
<td>${h(entry.uid)}</td><td>${entry.rewardCount}</td><td>${h(entry.amount)}</td><td>${h(entry.reason)}</td><td>${h(entry.state)}</td><td>${entry.attempts}</td><td>${h(entry.error)}</td><td>${h(age(entry.failedAt))} ago</td></tr>`,
  )
  .join('\n')}</tbody></table>`;
}

/** What a state means, for the reward page. */
const REWARD_STATE_WORDS: Record<RewardReport['state'], string> = {
  pending: 'not settled yet',
  applied: 'credited by this batch',
  duplicate: 'already credited before, by another batch or a wallet call: not credited again',
  dead_lettered: 'in an open dead-letter entry: replay or purge it',
  purged: 'its dead-letter entry was purged (or closed by a revert): it will not be paid',
  cancelled: 'its batch was cancelled before it was settled: it will not be paid',
  reverted: 'credited by this batch, then debited back by its revert',
};

/** The reward page's body: the reward in the answered batch, then every batch holding its id. */
function rewardView(report: RewardReport): string {
  const batchLink = (batchId: string): string =>
    `<a href="${CONSOLE_PATH}/batches/${encodeURIComponent(batchId)}">${h(batchId)}</a>`;
  const fields: [string, string][] = [
    [
      'state',
      `<span class="s-${h(report.state)}" data-reward-state="${h(report.state)}">${h(report.state)}</span> — ${h(REWARD_STATE_WORDS[report.state])}`,
    ],
    ['batch', batchLink(report.batchId)],
    ['uid', h(report.uid)],
    ['amount', h(report.amount)],
    [
      'ledger entry',
      report.ledgerEntryId === null ? '—' : `${h(report.ledgerEntryId)} at ${h(report.appliedAt ?? '')}`,
    ],
    [
      'dead-letter entry',
      report.deadLetterId === null
        ? '—'
        : `<a href="${CONSOLE_PATH}/dead-letters/${h(report.deadLetterId)}">${h(report.deadLetterId)}</a> (${h(report.reason ?? '')})`,
    ],
  ];
  if (report.revertedAt !== null) fields.push(['reverted at', h(report.revertedAt)]);
  const list = `<dl class="fields" data-live="reward">${fields.map(([name, value]) => `<dt>${name}</dt><dd>${value}</dd>`).join('')}</dl>`;
  const batches =
    report.batches.length > 1
      ? `<h2>Every batch holding it (${report.batches.length})</h2><table><thead><tr><th>batch</th><th>state</th></tr></thead><tbody>${report.batches
          .map((batch) => `<tr><td>${batchLink(batch.batchId)}</td><td>${h(batch.state)}</td></tr>`)
          .join('')}</tbody></table>`
      : '';
  return `${list}${batches}`;
}

/** `GET /console/batches`: the batches, newest first, paged, searchable by batch id, uid or rewardId. */
function batchesPage(scope: FastifyInstance, context: ConsoleContext): void {
  const { pool } = context;
  scope.get<{ Querystring: BatchesQuery }>(`${CONSOLE_PATH}/batches`, async (request, reply) => {
    const q = request.query;
    const wanted = BATCH_STATUSES.find((s) => s === q.status);
    const by = BATCH_SEARCHES.find((search) => search.key === q.by) ?? BATCH_SEARCHES[0];
    const text = typeof q.q === 'string' ? q.q.trim() : '';
    const after =
      typeof q.at === 'string' && /^-?[0-9]{1,20}$/.test(q.at) && typeof q.id === 'string' && q.id !== ''
        ? { createdAtUs: q.at, batchId: q.id }
        : undefined;
    const { reports, next } = await listBatchReports(pool, {
      ...(wanted !== undefined ? { status: wanted } : {}),
      ...(text !== '' ? { [by.filter]: text } : {}),
      ...(after !== undefined ? { after } : {}),
      limit: CONSOLE_PAGE_SIZE,
    });
    const inFlight = reports.some((report) => report.pending > 0);
    const filters = { status: wanted, by: text !== '' ? by.key : undefined, q: text || undefined };
    const search = `<form class="filters" method="get" role="search"><label>Search by<select name="by">${BATCH_SEARCHES.map(
      (search) => `<option value="${search.key}"${search === by ? ' selected' : ''}>${search.label}</option>`,
    ).join('')}</select></label><label>Batch id, uid or rewardId<input name="q" value="${h(text)}" placeholder="${h(
      by.placeholder,
    )}"></label><label>Status<select name="status"><option value="">any</option>${BATCH_STATUSES.map(
      (s) => `<option${s === wanted ? ' selected' : ''}>${s}</option>`,
    ).join('')}</select></label><button>Search</button></form>`;
    const table =
      reports.length === 0
        ? `<p class="muted">${text !== '' ? `No batch found by ${h(by.label)} ${h(JSON.stringify(text))}.` : 'No batches.'}</p>`
        : `<table><thead><tr><th>batch</th><th>status</th><th>progress</th><th>applied</th><th>duplicate</th><th>dead-lettered</th><th>reverted</th><th>age</th></tr></thead><tbody>
${reports
  .map(
    (
      report,
    ) => `<tr><td><a href="${CONSOLE_PATH}/batches/${encodeURIComponent(report.batchId)}">${h(report.batchId)}</a></td><td>${statusCell(report.status)}</td><td>${progress(report)}</td>
<td>${report.applied}</td><td>${report.duplicate}</td><td>${report.deadLettered}</td><td>${report.reverted}</td><td>${h(age(report.createdAt))}</td></tr>`,
  )
  .join('\n')}</tbody></table>`;
    const pages = pager(`${CONSOLE_PATH}/batches`, filters, {
      first: after === undefined,
      next: next === null ? null : { at: next.createdAtUs, id: next.batchId },
    });
    const note = by.note && text !== '' ? `<p class="muted">${by.note}</p>` : '';
    return html(
      reply,
      page('Batches', `${search}${note}<div data-live="batches">${table}</div>${pages}`, { inFlight }),
    );
  });
}

/** `GET /console/batches/:id`: a batch's figures, its dead letters (replay, purge), cancel or revert. */
function batchPage(scope: FastifyInstance, context: ConsoleContext): void {
  const { pool } = context;
  scope.get<{ Params: IdParams; Querystring: PageQuery }>(`${CONSOLE_PATH}/batches/:id`, async (request, reply) => {
    const { id } = request.params;
    const after = cursor(request.query.after);
    const report = await getBatchReport(pool, id);
    if (!report) return html(reply.code(404), page('Batch not found', `<p>No batch has id ${h(id)}.</p>`));
    const { rows: entries, more } = pageOf(
      await listDeadLetters(pool, {
        batchId: id,
        state: 'any',
        limit: CONSOLE_PAGE_SIZE + 1,
        rewards: 0,
        ...(after !== undefined ? { after } : {}),
      }),
    );
    const counts = `<table data-live="batch" data-batch-status="${h(report.status)}"><tbody>${(
      [
        ['status', statusCell(report.status)],
        ['progress', progress(report)],
        ['total', report.total],
        ['applied', report.applied],
        ['duplicate', report.duplicate],
        ['dead-lettered', report.deadLettered],
        ['pending', report.pending],
        ['cancelled', report.cancelled],
        ['reverted', report.reverted],
        ['created', `${h(report.createdAt)} (${h(age(report.createdAt))} ago)`],
      ] as const
    )
      .map(([name, value]) => `<tr><th>${name}</th><td>${value}</td></tr>`)
      .join('')}</tbody></table>`;
    const open = entries.filter((entry) => entry.state === 'open');
    const pages = pager(
      `${CONSOLE_PATH}/batches/${encodeURIComponent(id)}`,
      {},
      { first: after === undefined, next: more ? { after: entries.at(-1)!.id } : null },
    );
    const deadLetters = `<h2>Dead letters</h2><div data-live="dead-letters">${deadLetterRows(entries, true)}</div>${pages}${
      open.length > 0
        ? actionForm('replay', 'replay of the selected entries', '', { ids: '' }) +
          actionForm('purge', 'purge of the selected entries', '', { ids: '' })
        : ''
    }`;
    const revert =
      report.pending === 0
        ? `<h2>Revert</h2><p class="muted">Debits back every reward this batch applied (never below a zero balance) and closes its open dead-letter entries.</p>${actionForm(
            'revert',
            'revert',
            `<input type="hidden" data-field="batchId" value="${h(id)}"><label>Reason<input data-field="reason" maxlength="500" placeholder="why"></label>`,
          )}`
        : '';
    const cancel =
      report.pending > 0
        ? `<h2>Cancel</h2><p class="muted">Stops the batch: no new chunk starts, users in flight finish whole, what was applied stays (revert is a separate choice); the rewards not settled yet are never paid by it.</p>${actionForm(
            'cancel',
            'cancel',
            `<input type="hidden" data-field="batchId" value="${h(id)}"><label>Reason<input data-field="reason" maxlength="500" placeholder="why"></label>`,
          )}`
        : '';
    return html(
      reply,
      page(`Batch ${id}`, `${counts}${deadLetters}${cancel}${revert}`, { inFlight: report.pending > 0 }),
    );
  });
}

/** `GET /console/dead-letters`: dead-letter entries by reason, batch, uid, rewardId and state, paged. */
function deadLettersPage(scope: FastifyInstance, context: ConsoleContext): void {
  const { pool } = context;
  scope.get<{ Querystring: DeadLettersQuery }>(`${CONSOLE_PATH}/dead-letters`, async (request, reply) => {
    const q = request.query;
    const reason = DEAD_LETTER_REASONS.find((r) => r === q.reason);
    const state = ([...DEAD_LETTER_STATES, 'any'] as const).find((s) => s === q.state) ?? 'open';
    const text = (value: unknown): string | undefined =>
      typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
    const [batchId, uid, rewardId] = [text(q.batchId), text(q.uid), text(q.rewardId)];
    const after = cursor(q.after);
    const { rows: entries, more } = pageOf(
      await listDeadLetters(pool, {
        ...(reason ? { reason } : {}),
        ...(batchId !== undefined ? { batchId } : {}),
        ...(uid !== undefined ? { uid } : {}),
        ...(rewardId !== undefined ? { rewardId } : {}),
        ...(after !== undefined ? { after } : {}),
        state,
        limit: CONSOLE_PAGE_SIZE + 1,
        rewards: 0,
      }),
    );
    const pages = pager(
      `${CONSOLE_PATH}/dead-letters`,
      { reason, batchId, uid, rewardId, state },
      { first: after === undefined, next: more ? { after: entries.at(-1)!.id } : null },
    );
    const filter = `<form class="filters" method="get" role="search"><label>Reason<select name="reason"><option value="">any</option>${DEAD_LETTER_REASONS.map(
      (r) => `<option${r === reason ? ' selected' : ''}>${r}</option>`,
    ).join(
      '',
    )}</select></label><label>Batch<input name="batchId" value="${h(batchId ?? '')}"></label><label>uid<input name="uid" value="${h(
      uid ?? '',
    )}"></label><label>rewardId<input name="rewardId" value="${h(rewardId ?? '')}"></label><label>State<select name="state">${[
      'open',
      'replayed',
      'purged',
      'any',
    ]
      .map((s) => `<option${s === state ? ' selected' : ''}>${s}</option>`)
      .join('')}</select></label><button>Search</button></form>`;
    const actions = entries.some((entry) => entry.state === 'open')
      ? actionForm('replay', 'replay of the selected entries', '', { ids: '' }) +
        actionForm('purge', 'purge of the selected entries', '', { ids: '' })
      : '';
    return html(
      reply,
      page(
        'Dead letters',
        `${filter}<div data-live="dead-letters">${deadLetterRows(entries, true)}</div>${pages}${actions}`,
      ),
    );
  });
}

/** `GET /console/dead-letters/:id`: one entry and its rewards, with replay and purge while it is open. */
function deadLetterPage(scope: FastifyInstance, context: ConsoleContext): void {
  const { windfall } = context;
  scope.get<{ Params: IdParams; Querystring: EntryQuery }>(
    `${CONSOLE_PATH}/dead-letters/:id`,
    async (request, reply) => {
      const { id } = request.params;
      const asked = request.query.rewards;
      const shown =
        asked !== undefined && /^[0-9]{1,9}$/.test(asked) ? Math.min(Number(asked), CONSOLE_MAX_REWARDS) : 100;
      const entry = /^[0-9]{1,18}$/.test(id) ? await windfall.deadLetters.get(id, { rewards: shown }) : null;
      if (!entry) return html(reply.code(404), page('Entry not found', `<p>No dead-letter entry has id ${h(id)}.</p>`));
      const more =
        entry.rewards.length < entry.rewardCount
          ? `<p class="muted">The first ${entry.rewards.length} of ${entry.rewardCount} rewards.${
              entry.rewards.length < CONSOLE_MAX_REWARDS
                ? ` <a href="${h(withQuery(`${CONSOLE_PATH}/dead-letters/${entry.id}`, { rewards: String(Math.min(entry.rewardCount, CONSOLE_MAX_REWARDS)) }))}">Show ${entry.rewardCount <= CONSOLE_MAX_REWARDS ? 'all' : `the first ${CONSOLE_MAX_REWARDS}`}</a>`
                : ''
            } (\`windfall dlq show ${entry.id} --rewards all\` lists every one.)</p>`
          : '';
      const rewards = `<table><thead><tr><th>rewardId</th><th>uid</th><th>amount</th><th>description</th></tr></thead><tbody>${entry.rewards
        .map(
          (reward) =>
            `<tr><td><a href="${h(withQuery(`${CONSOLE_PATH}/rewards`, { rewardId: reward.rewardId }))}">${h(reward.rewardId)}</a></td><td>${h(reward.uid)}</td><td>${h(reward.amount)}</td><td>${h(reward.description ?? '')}</td></tr>`,
        )
        .join('')}</tbody></table>`;
      const actions =
        entry.state === 'open'
          ? actionForm('replay', 'replay', '', { ids: entry.id }) + actionForm('purge', 'purge', '', { ids: entry.id })
          : `<p class="muted">This entry is ${h(entry.state)}.</p>`;
      return html(
        reply,
        page(
          `Dead-letter entry ${entry.id}`,
          `<div data-live="entry">${deadLetterRows([entry], false)}</div><h2>Rewards (${entry.rewardCount})</h2>${rewards}${more}${actions}`,
        ),
      );
    },
  );
}

/** `GET /console/rewards`: where one reward stands. */
function rewardsPage(scope: FastifyInstance, context: ConsoleContext): void {
  const { pool } = context;
  scope.get<{ Querystring: RewardQuery }>(`${CONSOLE_PATH}/rewards`, async (request, reply) => {
    const asked = request.query.rewardId;
    const rewardId = typeof asked === 'string' ? asked.trim() : '';
    const lookup = `<form class="filters" method="get" role="search"><label>rewardId<input name="rewardId" value="${h(
      rewardId,
    )}" required maxlength="128"></label><button>Look up</button></form>`;
    if (rewardId === '')
      return html(
        reply,
        page(
          'Rewards',
          `${lookup}<p class="muted">Where one reward stands: its batch, user, amount and state, as \`windfall reward\` answers.</p>`,
        ),
      );
    const report = await getRewardReport(pool, rewardId);
    if (!report)
      return html(
        reply.code(404),
        page('Reward not found', `${lookup}<p>${h(await unknownRewardMessage(pool, rewardId))}.</p>`),
      );
    // a reward not settled yet is followed on the page until it is
    return html(
      reply,
      page(`Reward ${rewardId}`, `${lookup}${rewardView(report)}`, { inFlight: report.state === 'pending' }),
    );
  });
}

/** `GET /console/locks`: a user's lock, with a force release while it is held. */
function locksPage(scope: FastifyInstance, context: ConsoleContext): void {
  const { locks } = context;
  scope.get<{ Querystring: LockQuery }>(`${CONSOLE_PATH}/locks`, async (request, reply) => {
    const { uid } = request.query;
    const lookup = `<form class="filters" method="get"><label>User id<input name="uid" value="${h(uid ?? '')}" required></label><button>Look up</button></form>`;
    if (!uid) return html(reply, page('Locks', lookup));
    const status = await locks.status(uid);
    const table = `<table data-live="lock"><tbody><tr><th>uid</th><td>${h(status.uid)}</td></tr><tr><th>locked</th><td>${status.locked ? 'yes' : 'no'}</td></tr><tr><th>holder</th><td>${h(status.owner ?? '')}</td></tr><tr><th>since</th><td>${h(status.acquiredAt ?? '')}</td></tr><tr><th>TTL</th><td>${status.ttlMs === null ? '' : `${status.ttlMs} ms`}</td></tr></tbody></table>`;
    const release = status.locked
      ? actionForm(
          'lock-release',
          'force release',
          `<input type="hidden" data-field="uid" value="${h(uid)}"><label>Reason<input data-field="reason" maxlength="500" placeholder="why" required></label>`,
        )
      : '';
    return html(reply, page(`Lock of ${uid}`, `${lookup}${table}${release}`));
  });
}

/** `GET /console/audit`: the audit trail, newest first, paged, searchable. */
function auditPage(scope: FastifyInstance, context: ConsoleContext): void {
  const { pool } = context;
  scope.get<{ Querystring: AuditQuery }>(`${CONSOLE_PATH}/audit`, async (request, reply) => {
    const q = request.query;
    const action = AUDIT_ACTIONS.find((a) => a === q.action);
    const before = cursor(q.before);
    const search = typeof q.q === 'string' && q.q.trim() !== '' ? q.q.trim() : undefined;
    const { rows: records, more } = pageOf(
      await listAudit(pool, {
        ...(action ? { action } : {}),
        ...(q.target ? { target: q.target } : {}),
        ...(search !== undefined ? { search } : {}),
        ...(before !== undefined ? { before } : {}),
        limit: CONSOLE_PAGE_SIZE + 1,
      }),
    );
    const pages = pager(
      `${CONSOLE_PATH}/audit`,
      { action, target: q.target, q: search },
      { first: before === undefined, next: more ? { before: records.at(-1)!.id } : null },
    );
    const filter = `<form class="filters" method="get" role="search"><label>Action<select name="action"><option value="">any</option>${AUDIT_ACTIONS.map(
      (a) => `<option${a === action ? ' selected' : ''}>${a}</option>`,
    ).join(
      '',
    )}</select></label><label>Target (exact)<input name="target" value="${h(q.target ?? '')}" placeholder="batch:… uid:…"></label><label>Search target or actor<input name="q" value="${h(
      search ?? '',
    )}" placeholder="a batch id, a uid, an entry id, a name"></label><button>Search</button></form>`;
    const table =
      records.length === 0
        ? '<p class="muted">No records.</p>'
        : `<table><thead><tr><th>id</th><th>at</th><th>actor</th><th>action</th><th>target</th><th>details</th><th>result</th></tr></thead><tbody>${records
            .map(
              (record) =>
                `<tr><td>${h(record.id)}</td><td>${h(record.at)}</td><td>${h(record.actor)}</td><td>${h(record.action)}</td><td>${h(record.target)}</td><td><code>${h(shortened(JSON.stringify(record.details), 400))}</code></td><td><code>${h(shortened(JSON.stringify(record.result), 400))}</code></td></tr>`,
            )
            .join('')}</tbody></table>`;
    return html(reply, page('Audit trail', `${filter}${table}${pages}`));
  });
}

/**
 * The console's pages (server-rendered HTML) on `scope`: {@link CONSOLE_PATH} redirects to the batches; then batches,
 * a batch, dead letters, an entry, rewards, locks and the audit trail.
 */
export function registerConsolePages(scope: FastifyInstance, context: ConsoleContext): void {
  scope.get(CONSOLE_PATH, async (_request, reply) => reply.redirect(`${CONSOLE_PATH}/batches`));
  batchesPage(scope, context);
  batchPage(scope, context);
  deadLettersPage(scope, context);
  deadLetterPage(scope, context);
  rewardsPage(scope, context);
  locksPage(scope, context);
  auditPage(scope, context);
}
