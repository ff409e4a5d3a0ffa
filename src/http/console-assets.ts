import { createHash } from 'node:crypto';

/**
 * The console's own request marker: every state-changing request must carry it. A cross-site form cannot set a
 * header, and a cross-site `fetch` that sets one is stopped by the browser's preflight (the server allows no other
 * origin), so another site cannot make a logged-in browser replay, purge, release or revert.
 */
export const CONSOLE_MARKER = 'x-windfall-console';

/** The console pages' style sheet (inline, allowed by its hash in {@link CONSOLE_CONTENT_SECURITY_POLICY}). */
export const STYLE = `
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

/**
 * The console pages' script (inline, allowed by its hash): actions previewed then confirmed, answers in words, live
 * parts of a page refreshed in place.
 */
export const SCRIPT = `
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
