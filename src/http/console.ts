import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { httpActor, listAudit } from '../audit/audit-trail.js';
import { AUDIT_ACTIONS, BATCH_STATUSES, DEAD_LETTER_REASONS, DEAD_LETTER_STATES } from '../db/stored-values.js';
import { revertBatch } from '../revert/batch-revert.js';
import { getBatchReport, listBatchReports, type BatchReport } from '../status/batch-status.js';
import { listDeadLetters, type ListedDeadLetter } from '../dead-letters/dead-letter-store.js';
import { MAX_IDS_PER_REQUEST } from '../dead-letters/dead-letter-selection.js';
import { UserLocks } from '../lock/user-locks.js';
import { getRewardReport, unknownRewardMessage, type RewardReport } from '../status/reward-status.js';
import { cancelWords, lockReleaseWords, purgeWords, replayWords, revertWords } from './console-words.js';
import { cancelBatch } from '../cancel/batch-cancel.js';
import { httpAnswer } from '../errors/error-answers.js';
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
.s-completed,.s-applied{color:#16794a}.s-dead_lettered,.s-purged,.s-duplicate{color:#a15c00}.s-completed_with_failures,.s-partially_reverted{color:#a15c00}.s-reverted,.s-cancelled{color:#6b3fa0}.s-processing,.s-pending{color:#1f5fbf}
form.filters{display:flex;gap:8px;flex-wrap:wrap;align-items:end;margin:8px 0}
label{display:flex;flex-direction:column;font-size:12px;color:#555}
input,select,button,textarea{font:inherit;padding:4px 8px}button{cursor:pointer}
button:focus,input:focus,select:focus,a:focus{outline:2px solid #1f5fbf;outline-offset:1px}
.actions{background:#fff;border:1px solid #e3e6ea;padding:10px;margin:10px 0}
pre{background:#0f1720;color:#d6e2f0;padding:10px;overflow:auto;max-height:320px}
.muted{color:#666}output{display:block;margin-top:8px}output p{margin:4px 0;font-weight:600}output.muted p{font-weight:400}
details summary{cursor:pointer;color:#555}dl.fields{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;background:#fff;padding:10px;border:1px solid #e3e6ea}
dl.fields dt{font-weight:600}dl.fields dd{margin:0}progress{width:120px;height:8px;vertical-align:middle;accent-color:#16794a}
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
// the page again, from the server: its live parts (figures, states, lists) replace the ones shown; the batch's status
async function refresh() {
  let response;
  try { response = await fetch(location.href, { headers: { accept: 'text/html' }, cache: 'no-store' }); } catch { return undefined; }
  if (!response.ok) return undefined;
  const fresh = new DOMParser().parseFromString(await response.text(), 'text/html');
  for (const part of document.querySelectorAll('[data-live]')) {
    const next = fresh.querySelector('[data-live="' + part.dataset.live + '"]');
    if (next) part.replaceWith(document.importNode(next, true));
  }
  const batch = fresh.querySelector('[data-batch-status]');
  document.body.dataset.inFlight = fresh.body.dataset.inFlight || '';
  return batch ? batch.dataset.batchStatus : null;
}
const settled = (status) => status !== 'pending' && status !== 'processing';
function show(output, words, json) {
  output.replaceChildren();
  const line = document.createElement('p');
  line.textContent = words;
  output.append(line);
  if (json) {
    const details = document.createElement('details');
    const summary = document.createElement('summary');
    summary.textContent = 'Details';
    const pre = document.createElement('pre');
    pre.textContent = JSON.stringify(json, null, 2);
    details.append(summary, pre);
    output.append(details);
  }
}
// after an action: the page's figures refreshed until its batch settles (two minutes at most), its status in the words
async function follow(output, words, json) {
  for (let round = 0; round < 120; round += 1) {
    const status = await refresh();
    if (status === undefined || status === null) { show(output, words + '.', json); return; }
    show(output, words + '; the batch is ' + status + (settled(status) ? '.' : ' …'), json);
    if (settled(status)) return;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
for (const form of document.querySelectorAll('form[data-action]')) {
  const output = form.querySelector('output');
  const confirmButton = form.querySelector('button[data-mode=confirm]');
  const body = () => {
    const data = {};
    for (const field of form.querySelectorAll('[data-field]')) data[field.dataset.field] = field.value;
    const boxes = document.querySelectorAll('input[name=entry]:checked');
    if (form.dataset.ids !== undefined) data.ids = form.dataset.ids ? form.dataset.ids.split(',') : [...boxes].map((box) => box.value);
    return data;
  };
  const refused = (json) => 'Refused: ' + (json.message || json.error || 'no answer');
  form.addEventListener('submit', (event) => event.preventDefault());
  form.querySelector('button[data-mode=preview]')?.addEventListener('click', async () => {
    const { ok, json } = await act(form.dataset.action, { ...body(), dryRun: true });
    output.classList.remove('muted');
    show(output, ok ? 'Preview, nothing changed yet: ' + json.message + '.' : refused(json), ok ? json : null);
    if (confirmButton) confirmButton.disabled = !ok;
    if (ok && confirmButton) confirmButton.focus();
  });
  confirmButton?.addEventListener('click', async () => {
    confirmButton.disabled = true;
    const { ok, json } = await act(form.dataset.action, { ...body(), dryRun: false });
    if (!ok) { show(output, refused(json), null); return; }
    show(output, json.message + ' …', json);
    await follow(output, json.message, json);
  });
}
// while batches are in flight, their figures follow without reloading the page
setInterval(() => { if (document.body.dataset.inFlight === '1') refresh(); }, 3000);`;

/**
 * A refused action as the console's script reads it: `{error, message}` with the error table's status and word; an
 * error the table does not answer is thrown on (a logged 500).
 */
function refusal(reply: FastifyReply, error: unknown): FastifyReply {
  const answer = httpAnswer(error);
  if (!answer) throw error;
  return reply.code(answer.status).send({ error: answer.body.error, message: answer.body.message });
}

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

/**
 * A console page. `inFlight`: batches shown are still settling, and the page's script refreshes its live parts
 * (`data-live`) every 3 s — in place, so that a selection or an action's answer stays on the page.
 */
function page(title: string, body: string, options: { inFlight?: boolean } = {}): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${h(title)} · Windfall console</title><style>${STYLE}</style></head>
<body data-in-flight="${options.inFlight ? '1' : ''}"><header><strong>Windfall console</strong>
<a href="${CONSOLE_PATH}/batches">Batches</a><a href="${CONSOLE_PATH}/rewards">Rewards</a><a href="${CONSOLE_PATH}/dead-letters">Dead letters</a><a href="${CONSOLE_PATH}/locks">Locks</a><a href="${CONSOLE_PATH}/audit">Audit trail</a><a href="${DASHBOARD_PATH}">Queues (Bull Board)</a>
<label class="actor">Your name (audit trail)<input id="actor" autocomplete="name" placeholder="operator"></label></header>
<main><h1>${h(title)}</h1>${body}</main><script>${SCRIPT}</script></body></html>`;
}

/** An action form: preview (dry run) first, then confirm. */
function actionForm(action: string, label: string, fields: string, options: { ids?: string } = {}): string {
  return `<form class="actions" data-action="${CONSOLE_PATH}/actions/${action}"${options.ids !== undefined ? ` data-ids="${h(options.ids)}"` : ''}>
${fields}<button type="button" data-mode="preview">Preview ${h(label)}</button> <button type="button" data-mode="confirm" disabled>Confirm ${h(label)}</button>
<output class="muted" aria-live="polite"><p>Preview first: nothing changes until you confirm.</p></output></form>`;
}

function statusCell(status: string): string {
  return `<span class="s-${h(status)}">${h(status)}</span>`;
}

function progress(report: BatchReport): string {
  const settled = report.total - report.pending;
  const share = report.total === 0 ? 100 : Math.round((settled / report.total) * 100);
  return `<progress max="100" value="${share}" aria-hidden="true"></progress> ${settled}/${report.total}`;
}

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
/*
 * What the console's pages and actions read from a request. They have no JSON schema (a page shows what it
 * understands of its query and ignores the rest; an action answers 400 with words for people), so these are the
 * route's types as fastify's generics declare them: the fields a handler looks at.
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
/** The body of a replay or purge action. */
interface SelectionAction {
  ids?: unknown;
  dryRun?: unknown;
}
/** The body of a lock release action. */
interface LockReleaseAction {
  uid?: unknown;
  reason?: unknown;
  dryRun?: unknown;
}
/** The body of a cancel or revert action. */
interface BatchAction {
  batchId?: unknown;
  reason?: unknown;
  dryRun?: unknown;
}

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

/** Options of {@link registerConsole}. */
export interface ConsoleOptions {
  readonly windfall: Windfall;
  readonly guard: TokenGuard;
  readonly logger: Logger;
}

/**
 * The operator console at {@link CONSOLE_PATH}: server-rendered pages (batches, rewards, dead letters, locks, the audit
 * trail; lists paged and searchable)
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

    scope.get<{ Params: IdParams; Querystring: EntryQuery }>(
      `${CONSOLE_PATH}/dead-letters/:id`,
      async (request, reply) => {
        const { id } = request.params;
        const asked = request.query.rewards;
        const shown =
          asked !== undefined && /^[0-9]{1,9}$/.test(asked) ? Math.min(Number(asked), CONSOLE_MAX_REWARDS) : 100;
        const entry = /^[0-9]{1,18}$/.test(id) ? await windfall.deadLetters.get(id, { rewards: shown }) : null;
        if (!entry)
          return html(reply.code(404), page('Entry not found', `<p>No dead-letter entry has id ${h(id)}.</p>`));
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
            ? actionForm('replay', 'replay', '', { ids: entry.id }) +
              actionForm('purge', 'purge', '', { ids: entry.id })
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
    const idsOf = (body: SelectionAction): string[] | string => {
      const ids: unknown = body.ids;
      if (!Array.isArray(ids) || ids.length === 0) return 'select at least one entry';
      if (ids.length > MAX_IDS_PER_REQUEST)
        return `at most ${MAX_IDS_PER_REQUEST} entries in one action, got ${ids.length}: select fewer`;
      const entryId = (id: unknown): id is string => typeof id === 'string' && /^[0-9]{1,18}$/.test(id);
      return ids.every(entryId) ? ids : 'entry ids are whole numbers';
    };

    scope.post<{ Body: SelectionAction | undefined }>(
      `${CONSOLE_PATH}/actions/replay`,
      { preHandler: guardAction },
      async (request, reply) => {
        const body: SelectionAction = request.body ?? {};
        const ids = idsOf(body);
        if (typeof ids === 'string') return reply.code(400).send({ error: 'invalid request', message: ids });
        const report = await windfall.deadLetters.replay(
          { ids },
          { dryRun: body.dryRun !== false, actor: actorOf(request) },
        );
        return { ...report, message: replayWords(report) };
      },
    );

    scope.post<{ Body: SelectionAction | undefined }>(
      `${CONSOLE_PATH}/actions/purge`,
      { preHandler: guardAction },
      async (request, reply) => {
        const body: SelectionAction = request.body ?? {};
        const ids = idsOf(body);
        if (typeof ids === 'string') return reply.code(400).send({ error: 'invalid request', message: ids });
        const report = await windfall.deadLetters.purge(
          { ids },
          { dryRun: body.dryRun !== false, actor: actorOf(request) },
        );
        return { ...report, message: purgeWords(report) };
      },
    );

    scope.post<{ Body: LockReleaseAction | undefined }>(
      `${CONSOLE_PATH}/actions/lock-release`,
      { preHandler: guardAction },
      async (request, reply) => {
        const body: LockReleaseAction = request.body ?? {};
        if (typeof body.uid !== 'string' || body.uid === '')
          return reply.code(400).send({ error: 'invalid request', message: 'uid is required' });
        const reason =
          typeof body.reason === 'string' && body.reason.trim() !== '' ? body.reason.trim().slice(0, 500) : null;
        if (body.dryRun !== false) {
          const preview = { dryRun: true as const, uid: body.uid, wouldRelease: await locks.status(body.uid) };
          return { ...preview, message: lockReleaseWords(preview) };
        }
        if (!reason)
          return reply
            .code(400)
            .send({ error: 'invalid request', message: 'say why the lock is force-released (reason)' });
        const previous = await windfall.wallet.forceReleaseLock(body.uid, { actor: actorOf(request), reason });
        const result = { uid: body.uid, released: previous.locked, previous };
        return { ...result, message: lockReleaseWords(result) };
      },
    );

    scope.post<{ Body: BatchAction | undefined }>(
      `${CONSOLE_PATH}/actions/cancel`,
      { preHandler: guardAction },
      async (request, reply) => {
        const body: BatchAction = request.body ?? {};
        if (typeof body.batchId !== 'string' || body.batchId === '')
          return reply.code(400).send({ error: 'invalid request', message: 'batchId is required' });
        const reason =
          typeof body.reason === 'string' && body.reason.trim() !== '' ? body.reason.trim().slice(0, 500) : undefined;
        if (body.dryRun !== false) {
          const report = await getBatchReport(pool, body.batchId);
          if (!report)
            return reply
              .code(404)
              .send({ error: 'not found', message: `no batch has id ${JSON.stringify(body.batchId)}` });
          const preview = {
            dryRun: true as const,
            batchId: report.batchId,
            cancelled: report.status === 'cancelled' ? report.cancelled : report.pending,
            applied: report.applied,
            status: report.status,
            noop: report.pending === 0,
          };
          return { ...preview, message: cancelWords(preview, true) };
        }
        try {
          const report = await cancelBatch({ pool, logger: options.logger, events: windfall.events }, body.batchId, {
            actor: actorOf(request),
            ...(reason !== undefined ? { reason } : {}),
          });
          return { ...report, message: cancelWords(report) };
        } catch (error) {
          return refusal(reply, error);
        }
      },
    );

    scope.post<{ Body: BatchAction | undefined }>(
      `${CONSOLE_PATH}/actions/revert`,
      { preHandler: guardAction },
      async (request, reply) => {
        const body: BatchAction = request.body ?? {};
        if (typeof body.batchId !== 'string' || body.batchId === '')
          return reply.code(400).send({ error: 'invalid request', message: 'batchId is required' });
        const reason =
          typeof body.reason === 'string' && body.reason.trim() !== '' ? body.reason.trim().slice(0, 500) : undefined;
        try {
          const report = await revertBatch(
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
          return { ...report, message: revertWords(report) };
        } catch (error) {
          return refusal(reply, error);
        }
      },
    );
  });
}
