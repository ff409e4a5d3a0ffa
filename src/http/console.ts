import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { httpActor, listAudit } from '../audit/audit-trail.js';
import { AUDIT_ACTIONS, BATCH_STATUSES, DEAD_LETTER_REASONS, DEAD_LETTER_STATES } from '../db/stored-values.js';
import { BatchRevertRefusedError, revertBatch, RevertRequestError, UnknownBatchError } from '../revert/batch-revert.js';
import { getBatchReport, listRecentBatchReports, type BatchReport } from '../status/batch-status.js';
import { listDeadLetters, type ListedDeadLetter } from '../dead-letters/dead-letter-store.js';
import { MAX_IDS_PER_REQUEST } from '../dead-letters/dead-letter-selection.js';
import { UserLocks } from '../lock/user-locks.js';
import type { Logger } from '../log/logger.js';
import type { Windfall } from '../runtime/windfall.js';
import type { TokenGuard } from './auth.js';
import { browserAdminGuard, DASHBOARD_PATH } from './dashboard.js';

/** Where the console lives. */
export const CONSOLE_PATH = '/console';
/**
 * The console's own request marker: every state-changing request must carry it. A cross-site form cannot set a
 * header, and a cross-site `fetch` that sets one is stopped by the browser's preflight (the server allows no other
 * origin), so another site cannot make a logged-in browser replay, purge, release or revert.
 */
export const CONSOLE_MARKER = 'x-windfall-console';

/** HTML-escapes text. */
function h(value: unknown): string {
  return String(value ?? '').replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}

/** `text` cut to at most `length` characters (an ellipsis marks the cut); cut before escaping, never inside an entity. */
function shortened(text: string, length: number): string {
  if (text.length <= length) return text;
  let end = length - 1;
  // nor inside a surrogate pair
  if (/[\uD800-\uDBFF]/.test(text.charAt(end - 1))) end -= 1;
  return `${text.slice(0, end)}…`;
}

function age(iso: string): string {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86_400)} d`;
}

const STYLE = `
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:10px 20px;display:flex;gap:18px;align-items:center;flex-wrap:wrap}
header a{color:#cfe3ff;text-decoration:none}header a:focus,header a:hover{text-decoration:underline}
header strong{margin-right:12px}main{padding:16px 20px;max-width:1200px}
table{border-collapse:collapse;width:100%;background:#fff;margin:8px 0 16px}
th,td{border-bottom:1px solid #e3e6ea;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}
.s-completed{color:#16794a}.s-completed_with_failures,.s-partially_reverted{color:#a15c00}.s-reverted{color:#6b3fa0}.s-processing,.s-pending{color:#1f5fbf}
form.filters{display:flex;gap:8px;flex-wrap:wrap;align-items:end;margin:8px 0}
label{display:flex;flex-direction:column;font-size:12px;color:#555}
input,select,button,textarea{font:inherit;padding:4px 8px}button{cursor:pointer}
button:focus,input:focus,select:focus,a:focus{outline:2px solid #1f5fbf;outline-offset:1px}
.actions{background:#fff;border:1px solid #e3e6ea;padding:10px;margin:10px 0}
pre{background:#0f1720;color:#d6e2f0;padding:10px;overflow:auto;max-height:320px}
.muted{color:#666}progress{width:120px;height:8px;vertical-align:middle;accent-color:#16794a}
header label.actor{color:#cfe3ff;margin-left:auto}nav.pager{display:flex;gap:16px;margin:4px 0 16px}`;

const SCRIPT = `
const marker = { 'content-type': 'application/json', '${CONSOLE_MARKER}': '1' };
const actorInput = document.getElementById('actor');
if (actorInput) { actorInput.value = localStorage.getItem('windfall-actor') || ''; actorInput.addEventListener('change', () => localStorage.setItem('windfall-actor', actorInput.value.trim())); }
async function act(path, body) {
  const response = await fetch(path, { method: 'POST', headers: { ...marker, 'x-windfall-actor': (actorInput && actorInput.value.trim()) || '' }, body: JSON.stringify(body) });
  let json; try { json = await response.json(); } catch { json = { error: 'no answer' }; }
  return { ok: response.ok, status: response.status, json };
}
for (const form of document.querySelectorAll('form[data-action]')) {
  const output = form.querySelector('output pre');
  const confirmButton = form.querySelector('button[data-mode=confirm]');
  const body = () => {
    const data = {};
    for (const field of form.querySelectorAll('[data-field]')) data[field.dataset.field] = field.value;
    const boxes = document.querySelectorAll('input[name=entry]:checked');
    if (form.dataset.ids !== undefined) data.ids = form.dataset.ids ? form.dataset.ids.split(',') : [...boxes].map((box) => box.value);
    return data;
  };
  form.addEventListener('submit', (event) => event.preventDefault());
  form.querySelector('button[data-mode=preview]')?.addEventListener('click', async () => {
    const { ok, json } = await act(form.dataset.action, { ...body(), dryRun: true });
    output.classList.remove('muted'); output.textContent = (ok ? 'Preview — nothing changed yet:\\n' : 'Refused:\\n') + JSON.stringify(json, null, 2);
    if (confirmButton) confirmButton.disabled = !ok;
    if (ok && confirmButton) confirmButton.focus();
  });
  confirmButton?.addEventListener('click', async () => {
    confirmButton.disabled = true;
    const { ok, json } = await act(form.dataset.action, { ...body(), dryRun: false });
    output.textContent = (ok ? 'Done:\\n' : 'Refused:\\n') + JSON.stringify(json, null, 2);
    if (ok) setTimeout(() => location.reload(), 1500);
  });
}`;

/** `'sha256-…'`: a CSP source allowing exactly this inline script or style. */
function inlineHash(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
}

/**
 * The console pages' Content-Security-Policy: nothing loads from anywhere but this server, and only the console's own
 * script and style run (by hash: an injected `<script>` or `style` attribute would not), fetches go back to this
 * origin only, forms submit only here, and no other site may frame a page.
 */
export const CONSOLE_CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  `script-src ${inlineHash(SCRIPT)}`,
  `style-src ${inlineHash(STYLE)}`,
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

function page(title: string, body: string, options: { refresh?: boolean } = {}): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
${options.refresh ? '<meta http-equiv="refresh" content="3">' : ''}<title>${h(title)} · Windfall console</title><style>${STYLE}</style></head>
<body><header><strong>Windfall console</strong>
<a href="${CONSOLE_PATH}/batches">Batches</a><a href="${CONSOLE_PATH}/dead-letters">Dead letters</a><a href="${CONSOLE_PATH}/locks">Locks</a><a href="${CONSOLE_PATH}/audit">Audit trail</a><a href="${DASHBOARD_PATH}">Queues (Bull Board)</a>
<label class="actor">Your name (audit trail)<input id="actor" autocomplete="name" placeholder="operator"></label></header>
<main><h1>${h(title)}</h1>${body}</main><script>${SCRIPT}</script></body></html>`;
}

/** An action form: preview (dry run) first, then confirm. */
function actionForm(action: string, label: string, fields: string, options: { ids?: string } = {}): string {
  return `<form class="actions" data-action="${CONSOLE_PATH}/actions/${action}"${options.ids !== undefined ? ` data-ids="${h(options.ids)}"` : ''}>
${fields}<button type="button" data-mode="preview">Preview ${h(label)}</button> <button type="button" data-mode="confirm" disabled>Confirm ${h(label)}</button>
<output><pre class="muted">Preview first: nothing changes until you confirm.</pre></output></form>`;
}

function statusCell(status: string): string {
  return `<span class="s-${h(status)}">${h(status)}</span>`;
}

function progress(report: BatchReport): string {
  const settled = report.total - report.pending;
  const share = report.total === 0 ? 100 : Math.round((settled / report.total) * 100);
  return `<progress max="100" value="${share}" aria-hidden="true"></progress> ${settled}/${report.total}`;
}

/** Entries (or audit records) per console page. */
const CONSOLE_PAGE_SIZE = 50;
/** Most rewards the console lists on an entry's page (`windfall dlq show --rewards all` lists every one). */
const CONSOLE_MAX_REWARDS = 10_000;

/** `path?query`, leaving out empty parameters. */
function withQuery(path: string, query: Record<string, string | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) if (value !== undefined && value !== '') search.set(key, value);
  const text = search.toString();
  return text ? `${path}?${text}` : path;
}

/**
 * Links between the pages of a list: to its first page (when this is not it) and to the next (when `next` is given:
 * the parameter that starts it, such as `{after: <last id>}`), keeping the list's filters.
 */
function pager(
  path: string,
  filters: Record<string, string | undefined>,
  options: { readonly first: boolean; readonly next: Record<string, string> | null },
): string {
  const links = [
    options.first ? '' : `<a href="${h(withQuery(path, filters))}">← First page</a>`,
    options.next === null ? '' : `<a href="${h(withQuery(path, { ...filters, ...options.next }))}">Next page →</a>`,
  ].filter(Boolean);
  return links.length === 0 ? '' : `<nav class="pager">${links.join(' ')}</nav>`;
}

/** A page of a list read with one row more than it shows: the rows to show, and whether more follow. */
function pageOf<T>(rows: readonly T[]): { rows: readonly T[]; more: boolean } {
  return { rows: rows.slice(0, CONSOLE_PAGE_SIZE), more: rows.length > CONSOLE_PAGE_SIZE };
}

/** A page cursor from the query string: a whole id, or none. */
function cursor(value: string | undefined): string | undefined {
  return value !== undefined && /^[0-9]{1,18}$/.test(value) ? value : undefined;
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

/** Options of {@link registerConsole}. */
export interface ConsoleOptions {
  readonly windfall: Windfall;
  readonly guard: TokenGuard;
  readonly logger: Logger;
}

/**
 * The operator console at {@link CONSOLE_PATH}: server-rendered pages (batches, dead letters, locks, the audit trail)
 * behind the admin token (bearer, or basic auth with the token as password), and JSON actions that need the
 * console's request marker ({@link CONSOLE_MARKER}). Served entirely by the package: no CDN, no network fetch.
 */
export async function registerConsole(app: FastifyInstance, options: ConsoleOptions): Promise<void> {
  const { windfall, guard } = options;
  const pool = windfall.database.pool;
  const locks = new UserLocks(windfall.redis, { prefix: windfall.config.prefix, logger: windfall.logger });
  const actorOf = (request: FastifyRequest): string =>
    httpActor('console', request.ip, request.headers['x-windfall-actor']);

  await app.register(async (scope) => {
    scope.addHook('onRequest', browserAdminGuard(guard));
    const html = (reply: FastifyReply, body: string): FastifyReply =>
      reply
        .type('text/html; charset=utf-8')
        .header('cache-control', 'no-store')
        .header('x-frame-options', 'DENY')
        .header('content-security-policy', CONSOLE_CONTENT_SECURITY_POLICY)
        .header('x-content-type-options', 'nosniff')
        .send(body);

    scope.get(CONSOLE_PATH, async (_request, reply) => reply.redirect(`${CONSOLE_PATH}/batches`));

    scope.get(`${CONSOLE_PATH}/batches`, async (request, reply) => {
      const { status } = request.query as { status?: string };
      const wanted = BATCH_STATUSES.find((s) => s === status);
      const reports = await listRecentBatchReports(pool, wanted === undefined ? {} : { status: wanted });
      const inFlight = reports.some((report) => report.pending > 0);
      const filter = `<form class="filters" method="get"><label>Status<select name="status"><option value="">any</option>${BATCH_STATUSES.map(
        (s) => `<option${s === wanted ? ' selected' : ''}>${s}</option>`,
      ).join('')}</select></label><button>Filter</button></form>`;
      const table =
        reports.length === 0
          ? '<p class="muted">No batches.</p>'
          : `<table><thead><tr><th>batch</th><th>status</th><th>progress</th><th>applied</th><th>duplicate</th><th>dead-lettered</th><th>reverted</th><th>age</th></tr></thead><tbody>
${reports
  .map(
    (
      report,
    ) => `<tr><td><a href="${CONSOLE_PATH}/batches/${encodeURIComponent(report.batchId)}">${h(report.batchId)}</a></td><td>${statusCell(report.status)}</td><td>${progress(report)}</td>
<td>${report.applied}</td><td>${report.duplicate}</td><td>${report.deadLettered}</td><td>${report.reverted}</td><td>${h(age(report.createdAt))}</td></tr>`,
  )
  .join('\n')}</tbody></table>`;
      return html(
        reply,
        page(
          'Batches',
          `${filter}${inFlight ? '<p class="muted">Refreshing every 3 s while batches are in flight.</p>' : ''}${table}`,
          { refresh: inFlight },
        ),
      );
    });

    scope.get(`${CONSOLE_PATH}/batches/:id`, async (request, reply) => {
      const { id } = request.params as { id: string };
      const after = cursor((request.query as { after?: string }).after);
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
      const counts = `<table><tbody>${(
        [
          ['status', statusCell(report.status)],
          ['progress', progress(report)],
          ['total', report.total],
          ['applied', report.applied],
          ['duplicate', report.duplicate],
          ['dead-lettered', report.deadLettered],
          ['pending', report.pending],
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
      const deadLetters = `<h2>Dead letters</h2>${deadLetterRows(entries, true)}${pages}${
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
      return html(reply, page(`Batch ${id}`, `${counts}${deadLetters}${revert}`, { refresh: report.pending > 0 }));
    });

    scope.get(`${CONSOLE_PATH}/dead-letters`, async (request, reply) => {
      const q = request.query as { reason?: string; batchId?: string; state?: string; after?: string };
      const reason = DEAD_LETTER_REASONS.find((r) => r === q.reason);
      const state = ([...DEAD_LETTER_STATES, 'any'] as const).find((s) => s === q.state) ?? 'open';
      const after = cursor(q.after);
      const { rows: entries, more } = pageOf(
        await listDeadLetters(pool, {
          ...(reason ? { reason } : {}),
          ...(q.batchId ? { batchId: q.batchId } : {}),
          ...(after !== undefined ? { after } : {}),
          state,
          limit: CONSOLE_PAGE_SIZE + 1,
          rewards: 0,
        }),
      );
      const pages = pager(
        `${CONSOLE_PATH}/dead-letters`,
        { reason, batchId: q.batchId, state },
        { first: after === undefined, next: more ? { after: entries.at(-1)!.id } : null },
      );
      const filter = `<form class="filters" method="get"><label>Reason<select name="reason"><option value="">any</option>${DEAD_LETTER_REASONS.map(
        (r) => `<option${r === reason ? ' selected' : ''}>${r}</option>`,
      ).join(
        '',
      )}</select></label><label>Batch<input name="batchId" value="${h(q.batchId ?? '')}"></label><label>State<select name="state">${[
        'open',
        'replayed',
        'purged',
        'any',
      ]
        .map((s) => `<option${s === state ? ' selected' : ''}>${s}</option>`)
        .join('')}</select></label><button>Filter</button></form>`;
      const actions = entries.some((entry) => entry.state === 'open')
        ? actionForm('replay', 'replay of the selected entries', '', { ids: '' }) +
          actionForm('purge', 'purge of the selected entries', '', { ids: '' })
        : '';
      return html(reply, page('Dead letters', `${filter}${deadLetterRows(entries, true)}${pages}${actions}`));
    });

    scope.get(`${CONSOLE_PATH}/dead-letters/:id`, async (request, reply) => {
      const { id } = request.params as { id: string };
      const asked = (request.query as { rewards?: string }).rewards;
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
            `<tr><td>${h(reward.rewardId)}</td><td>${h(reward.uid)}</td><td>${h(reward.amount)}</td><td>${h(reward.description ?? '')}</td></tr>`,
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
          `${deadLetterRows([entry], false)}<h2>Rewards (${entry.rewardCount})</h2>${rewards}${more}${actions}`,
        ),
      );
    });

    scope.get(`${CONSOLE_PATH}/locks`, async (request, reply) => {
      const { uid } = request.query as { uid?: string };
      const lookup = `<form class="filters" method="get"><label>User id<input name="uid" value="${h(uid ?? '')}" required></label><button>Look up</button></form>`;
      if (!uid) return html(reply, page('Locks', lookup));
      const status = await locks.status(uid);
      const table = `<table><tbody><tr><th>uid</th><td>${h(status.uid)}</td></tr><tr><th>locked</th><td>${status.locked ? 'yes' : 'no'}</td></tr><tr><th>holder</th><td>${h(status.owner ?? '')}</td></tr><tr><th>since</th><td>${h(status.acquiredAt ?? '')}</td></tr><tr><th>TTL</th><td>${status.ttlMs === null ? '' : `${status.ttlMs} ms`}</td></tr></tbody></table>`;
      const release = status.locked
        ? actionForm(
            'lock-release',
            'force release',
            `<input type="hidden" data-field="uid" value="${h(uid)}"><label>Reason<input data-field="reason" maxlength="500" placeholder="why" required></label>`,
          )
        : '';
      return html(reply, page(`Lock of ${uid}`, `${lookup}${table}${release}`));
    });

    scope.get(`${CONSOLE_PATH}/audit`, async (request, reply) => {
      const q = request.query as { action?: string; target?: string; before?: string };
      const action = AUDIT_ACTIONS.find((a) => a === q.action);
      const before = cursor(q.before);
      const { rows: records, more } = pageOf(
        await listAudit(pool, {
          ...(action ? { action } : {}),
          ...(q.target ? { target: q.target } : {}),
          ...(before !== undefined ? { before } : {}),
          limit: CONSOLE_PAGE_SIZE + 1,
        }),
      );
      const pages = pager(
        `${CONSOLE_PATH}/audit`,
        { action, target: q.target },
        { first: before === undefined, next: more ? { before: records.at(-1)!.id } : null },
      );
      const filter = `<form class="filters" method="get"><label>Action<select name="action"><option value="">any</option>${AUDIT_ACTIONS.map(
        (a) => `<option${a === action ? ' selected' : ''}>${a}</option>`,
      ).join(
        '',
      )}</select></label><label>Target<input name="target" value="${h(q.target ?? '')}" placeholder="batch:… uid:…"></label><button>Filter</button></form>`;
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

    // ---- actions (JSON, with the console's request marker)
    const guardAction = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
      const crossSite = request.headers['sec-fetch-site'] === 'cross-site';
      if (request.headers[CONSOLE_MARKER] !== '1' || crossSite) {
        return reply.code(403).send({
          error: 'forbidden',
          message: `console actions need the console's request marker (${CONSOLE_MARKER}) and a same-site request`,
        });
      }
      if (!String(request.headers['content-type'] ?? '').startsWith('application/json')) {
        return reply
          .code(415)
          .send({ error: 'unsupported media type', message: 'console actions take application/json' });
      }
      return undefined;
    };
    /** The ids of a replay or purge: 1 to {@link MAX_IDS_PER_REQUEST} entry ids, or why not. */
    const idsOf = (body: { ids?: unknown }): string[] | string => {
      if (!Array.isArray(body.ids) || body.ids.length === 0) return 'select at least one entry';
      if (body.ids.length > MAX_IDS_PER_REQUEST)
        return `at most ${MAX_IDS_PER_REQUEST} entries in one action, got ${body.ids.length}: select fewer`;
      if (!body.ids.every((id) => typeof id === 'string' && /^[0-9]{1,18}$/.test(id)))
        return 'entry ids are whole numbers';
      return body.ids as string[];
    };

    scope.post(`${CONSOLE_PATH}/actions/replay`, { preHandler: guardAction }, async (request, reply) => {
      const body = (request.body ?? {}) as { ids?: unknown; dryRun?: unknown };
      const ids = idsOf(body);
      if (typeof ids === 'string') return reply.code(400).send({ error: 'invalid request', message: ids });
      return windfall.deadLetters.replay({ ids }, { dryRun: body.dryRun !== false, actor: actorOf(request) });
    });

    scope.post(`${CONSOLE_PATH}/actions/purge`, { preHandler: guardAction }, async (request, reply) => {
      const body = (request.body ?? {}) as { ids?: unknown; dryRun?: unknown };
      const ids = idsOf(body);
      if (typeof ids === 'string') return reply.code(400).send({ error: 'invalid request', message: ids });
      return windfall.deadLetters.purge({ ids }, { dryRun: body.dryRun !== false, actor: actorOf(request) });
    });

    scope.post(`${CONSOLE_PATH}/actions/lock-release`, { preHandler: guardAction }, async (request, reply) => {
      const body = (request.body ?? {}) as { uid?: unknown; reason?: unknown; dryRun?: unknown };
      if (typeof body.uid !== 'string' || body.uid === '')
        return reply.code(400).send({ error: 'invalid request', message: 'uid is required' });
      const reason =
        typeof body.reason === 'string' && body.reason.trim() !== '' ? body.reason.trim().slice(0, 500) : null;
      if (body.dryRun !== false) return { dryRun: true, uid: body.uid, wouldRelease: await locks.status(body.uid) };
      if (!reason)
        return reply
          .code(400)
          .send({ error: 'invalid request', message: 'say why the lock is force-released (reason)' });
      const previous = await windfall.wallet.forceReleaseLock(body.uid, { actor: actorOf(request), reason });
      return { uid: body.uid, released: previous.locked, previous };
    });

    scope.post(`${CONSOLE_PATH}/actions/revert`, { preHandler: guardAction }, async (request, reply) => {
      const body = (request.body ?? {}) as { batchId?: unknown; reason?: unknown; dryRun?: unknown };
      if (typeof body.batchId !== 'string' || body.batchId === '')
        return reply.code(400).send({ error: 'invalid request', message: 'batchId is required' });
      const reason =
        typeof body.reason === 'string' && body.reason.trim() !== '' ? body.reason.trim().slice(0, 500) : undefined;
      try {
        return await revertBatch(
          {
            pool,
            wallet: windfall.wallet,
            logger: options.logger,
            deadLetters: windfall.deadLetters,
            events: windfall.events,
          },
          body.batchId,
          {
            dryRun: body.dryRun !== false,
            actor: actorOf(request),
            ...(reason !== undefined ? { reason } : {}),
          },
        );
      } catch (error) {
        if (error instanceof UnknownBatchError)
          return reply.code(404).send({ error: 'not found', message: error.message });
        if (error instanceof BatchRevertRefusedError)
          return reply.code(409).send({ error: 'batch processing', message: error.message });
        if (error instanceof RevertRequestError)
          return reply.code(400).send({ error: 'invalid request', message: error.message });
        throw error;
      }
    });
  });
}
