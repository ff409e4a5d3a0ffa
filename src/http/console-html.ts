import type { FastifyReply } from 'fastify';
import type { BatchReport } from '../status/batch-status.js';
import { CONSOLE_CONTENT_SECURITY_POLICY, SCRIPT, STYLE } from './console-assets.js';
import { DASHBOARD_PATH } from './dashboard.js';

/*
 * What every console page is made of: the layout, escaping, action forms, paging links; and how a page is sent.
 */

/** Where the console lives. */
export const CONSOLE_PATH = '/console';

/** HTML-escapes text. */
export function h(value: unknown): string {
  return String(value ?? '').replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}

/** `text` cut to at most `length` characters (an ellipsis marks the cut); cut before escaping, never inside an entity. */
export function shortened(text: string, length: number): string {
  if (text.length <= length) return text;
  let end = length - 1;
  // nor inside a surrogate pair
  if (/[\uD800-\uDBFF]/.test(text.charAt(end - 1))) end -= 1;
  return `${text.slice(0, end)}…`;
}

/** How long ago `iso` was, in round seconds, minutes, hours or days (`42 s`, `3 min`, `5 h`, `2 d`). */
export function age(iso: string): string {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86_400)} d`;
}

/**
 * A console page. `inFlight`: batches shown are still settling, and the page's script refreshes its live parts
 * (`data-live`) every 3 s — in place, so that a selection or an action's answer stays on the page.
 */
export function page(title: string, body: string, options: { inFlight?: boolean } = {}): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${h(title)} · Windfall console</title><style>${STYLE}</style></head>
<body data-in-flight="${options.inFlight ? '1' : ''}"><header><strong>Windfall console</strong>
<a href="${CONSOLE_PATH}/batches">Batches</a><a href="${CONSOLE_PATH}/rewards">Rewards</a><a href="${CONSOLE_PATH}/dead-letters">Dead letters</a><a href="${CONSOLE_PATH}/locks">Locks</a><a href="${CONSOLE_PATH}/audit">Audit trail</a><a href="${DASHBOARD_PATH}">Queues (Bull Board)</a>
<label class="actor">Your name (audit trail)<input id="actor" autocomplete="name" placeholder="operator"></label></header>
<main><h1>${h(title)}</h1>${body}</main><script>${SCRIPT}</script></body></html>`;
}

/** An action form: preview (dry run) first, then confirm. */
export function actionForm(action: string, label: string, fields: string, options: { ids?: string } = {}): string {
  return `<form class="actions" data-action="${CONSOLE_PATH}/actions/${action}"${options.ids !== undefined ? ` data-ids="${h(options.ids)}"` : ''}>
${fields}<button type="button" data-mode="preview">Preview ${h(label)}</button> <button type="button" data-mode="confirm" disabled>Confirm ${h(label)}</button>
<output class="muted" aria-live="polite"><p>Preview first: nothing changes until you confirm.</p></output></form>`;
}

/** A status (of a batch or a reward), coloured by its class `s-<status>`. */
export function statusCell(status: string): string {
  return `<span class="s-${h(status)}">${h(status)}</span>`;
}

/** A batch's progress: a bar and `settled/total`. */
export function progress(report: BatchReport): string {
  const settled = report.total - report.pending;
  const share = report.total === 0 ? 100 : Math.round((settled / report.total) * 100);
  return `<progress max="100" value="${share}" aria-hidden="true"></progress> ${settled}/${report.total}`;
}

/** Entries (or audit records) per console page. */
export const CONSOLE_PAGE_SIZE = 50;
/** Most rewards the console lists on an entry's page (`windfall dlq show --rewards all` lists every one). */
export const CONSOLE_MAX_REWARDS = 10_000;

/** `path?query`, leaving out empty parameters. */
export function withQuery(path: string, query: Record<string, string | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) if (value !== undefined && value !== '') search.set(key, value);
  const text = search.toString();
  return text ? `${path}?${text}` : path;
}

/**
 * Links between the pages of a list: to its first page (when this is not it) and to the next (when `next` is given:
 * the parameter that starts it, such as `{after: <last id>}`), keeping the list's filters.
 */
export function pager(
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
export function pageOf<T>(rows: readonly T[]): { rows: readonly T[]; more: boolean } {
  return { rows: rows.slice(0, CONSOLE_PAGE_SIZE), more: rows.length > CONSOLE_PAGE_SIZE };
}

/** A page cursor from the query string: a whole id, or none. */
export function cursor(value: string | undefined): string | undefined {
  return value !== undefined && /^[0-9]{1,18}$/.test(value) ? value : undefined;
}

/** Sends a console page: HTML, never cached nor framed, under the console's Content-Security-Policy. */
export function html(reply: FastifyReply, body: string): FastifyReply {
  return reply
    .type('text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .header('x-frame-options', 'DENY')
    .header('content-security-policy', CONSOLE_CONTENT_SECURITY_POLICY)
    .header('x-content-type-options', 'nosniff')
    .send(body);
}
