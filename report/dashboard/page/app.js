// The dashboard page: plain DOM and SVG, no build step, no external resources.
// Everything from the ledger is inserted as text (textContent / attributes), never as markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

// Timeline geometry, in SVG user units (the SVG scales to the page width).
const W = 1240;
const PLOT_X0 = 300; // left of this: task and grant labels
const PLOT_X1 = 955; // the linear time axis ends here
const BREAK_X0 = 965; // the axis break: natural expiry is minutes away, debts are milliseconds
const BREAK_X1 = 985;
const EXPIRY_X = 1075; // where a natural expiry beyond the axis is drawn
const AXIS_H = 26;
const TASK_H = 22;
const CRED_H = 17;
const BAR_H = 8;
const OPEN_REDRAW_MS = 250;
const MAX_ACTIVITY = 36;

let data = null;
let serverOffsetMs = 0; // server clock − browser clock, so open debts grow in server time
let redrawTimer = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Same wording as the report: `183 ms`, `4.20 s`, `14m 59s`, `2h 05m`. */
function fmtDuration(ms) {
  if (ms === undefined || ms === null || !Number.isFinite(ms)) return '—';
  const sign = ms < 0 ? '-' : '';
  const a = Math.abs(ms);
  if (a < 1000) return `${sign}${Math.round(a)} ms`;
  if (a < 60000) return `${sign}${(a / 1000).toFixed(a < 10000 ? 2 : 1)} s`;
  // Whole seconds down: 899.8 s of avoided debt is 14m 59s, not a rounded-up 15 minutes.
  const s = Math.floor(a / 1000);
  const pad = (n) => String(n).padStart(2, '0');
  if (s < 3600) return `${sign}${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  if (s < 86400) return `${sign}${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
  return `${sign}${Math.floor(s / 86400)}d ${pad(Math.floor((s % 86400) / 3600))}h`;
}

function fmtClock(ms) {
  if (ms === undefined || ms === null) return '—';
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** `spiffe://demo.tasklease.local/etl/nightly` → `/etl/nightly` (the trust domain is on the hover). */
const shortWorkload = (id) => (id ? id.replace(/^spiffe:\/\/[^/]+/, '') || id : '(unverified workload)');

const serverNow = () => Date.now() + serverOffsetMs;

function setMetric(testId, ms, text) {
  const node = document.querySelector(`[data-testid="${testId}"]`);
  node.textContent = text ?? fmtDuration(ms);
  node.dataset.value = ms === undefined || ms === null ? '' : String(ms);
}

function renderHeadline(d) {
  const s = d.summary;
  setMetric('metric-credentials', s.credentials, String(s.credentials));
  setMetric('metric-verified', s.verifiedRejected, `${s.verifiedRejected}`);
  setMetric('metric-p50', s.trustDebtMs.p50);
  setMetric('metric-p90', s.trustDebtMs.p90);
  setMetric('metric-p99', s.trustDebtMs.p99);
  setMetric('metric-max', s.trustDebtMs.max);
  setMetric('metric-avoided', s.avoidedDebtMs.p50);
  // Where the debt went (trust-debt.ts debtSplit, computed by the server).
  setMetric('metric-pipeline', s.split?.pipelineMs.p50);
  setMetric('metric-revoke', s.split?.revokeMs.p50);
  setMetric('metric-proof', s.split?.proofMs.p50);
  setMetric('metric-exposure', s.split?.exposureMs.p99);
  const open = d.openDebt;
  const oldest = open.count > 0 ? (open.oldestMs ?? 0) + (serverNow() - d.generatedAt) : undefined;
  setMetric('metric-open', open.count, String(open.count));
  const hint = $('open-oldest');
  hint.textContent = open.count > 0 ? `oldest ${fmtDuration(oldest)}` : 'all proven';
  hint.dataset.value = oldest === undefined ? '' : String(Math.round(oldest));
  $('open-card').classList.toggle('alarm', open.count > 0);
}

/** Ticks at 1/2/5 × 10^k ms, about `target` of them across the span. */
function ticks(span, target = 7) {
  const raw = span / target;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw) ?? 10 * pow;
  const out = [];
  for (let t = 0; t <= span + 1e-9; t += step) out.push(t);
  return out;
}

/** The `//` of a broken axis, at height `y`: time skips from the plot to the natural expiry. */
const breakMarks = (y) => `M${BREAK_X0 - 3},${y + 5} L${BREAK_X0 + 3},${y - 5} M${BREAK_X1 - 3},${y + 5} L${BREAK_X1 + 3},${y - 5}`;

function fmtOffset(ms) {
  if (ms === 0) return '0';
  if (ms < 1000) return `+${Math.round(ms)} ms`;
  if (ms < 60000) return `+${(ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1)} s`;
  return `+${fmtDuration(ms)}`;
}

function renderTimeline(d) {
  const host = $('timeline');
  const leases = d.leases;
  const credCount = leases.reduce((n, l) => n + l.credentials.length, 0);
  $('timeline-note').textContent =
    d.totalLeases > leases.length
      ? `${credCount} credentials of the ${leases.length} most recent of ${d.totalLeases} tasks`
      : `${credCount} credentials in ${leases.length} task${leases.length === 1 ? '' : 's'}`;
  if (leases.length === 0) {
    host.replaceChildren(el('p', { class: 'empty' }, 'Waiting for the first task…'));
    return;
  }
  const now = serverNow();
  const anyLive = leases.some((l) => l.credentials.some((c) => c.state !== 'verified' && c.issuedAt !== undefined));
  const instants = [];
  for (const l of leases) {
    instants.push(l.requestedAt);
    for (const t of [l.issuedAt, l.endedAt]) if (t !== undefined) instants.push(t);
    for (const c of l.credentials) for (const t of [c.issuedAt, c.endedAt, c.verifiedAt]) if (t !== undefined) instants.push(t);
  }
  const t0 = Math.min(...instants);
  let t1 = Math.max(...instants, anyLive ? now : -Infinity);
  t1 = Math.max(t1, t0 + 100);
  // Room on the right for the last debt label before the axis break.
  const span = (t1 - t0) * 1.1;
  const x = (t) => PLOT_X0 + ((Math.min(Math.max(t, t0), t0 + span) - t0) / span) * (PLOT_X1 - PLOT_X0);
  // An expiry inside the data's own range is drawn where it falls; later ones go past the axis break.
  const inPlot = (t) => t <= t1;

  const rows = leases.reduce((h, l) => h + TASK_H + l.credentials.length * CRED_H, 0);
  const H = AXIS_H + rows + 6;
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'credential timeline' });

  // Axis: linear from the first event, then a break, then a zone for natural expiries.
  const axis = svg('g', { class: 'axis' });
  for (const t of ticks(span)) {
    const tx = x(t0 + t);
    axis.append(svg('line', { x1: tx, x2: tx, y1: AXIS_H - 6, y2: H }));
    axis.append(svg('text', { x: tx, y: AXIS_H - 10, 'text-anchor': 'middle' }, fmtOffset(t)));
  }
  axis.append(svg('text', { x: 4, y: AXIS_H - 10 }, `from ${fmtClock(t0)}`));
  root.append(axis);
  root.append(svg('rect', { class: 'zone', x: BREAK_X1, y: AXIS_H - 6, width: W - BREAK_X1, height: H - AXIS_H + 6 }));
  root.append(svg('text', { class: 'zone-label', x: EXPIRY_X, y: AXIS_H - 10, 'text-anchor': 'middle' }, 'natural expiry'));
  root.append(svg('path', { class: 'axis-break', d: breakMarks(AXIS_H - 6) }));
  root.append(svg('text', { class: 'zone-label', x: (BREAK_X0 + BREAK_X1) / 2, y: AXIS_H - 10, 'text-anchor': 'middle' }, '≈'));

  let y = AXIS_H;
  for (const lease of leases) {
    const g = svg('g', { class: 'task-row', 'data-testid': 'task-row', 'data-task': lease.taskId, 'data-state': lease.state });
    const h = TASK_H + lease.credentials.length * CRED_H;
    g.append(svg('rect', { class: 'task-band', x: 0, y: y + 1, width: W, height: h - 2, rx: 4 }));
    g.append(svg('text', { class: 'task-id', x: 6, y: y + 15 }, lease.taskId));
    const meta = `${shortWorkload(lease.workload)} · ${lease.denial ? 'denied' : (lease.outcome ?? lease.state)}`;
    g.append(svg('text', { class: 'task-meta', x: 6 + lease.taskId.length * 7 + 10, y: y + 15 }, meta));
    if (lease.denial) {
      g.append(
        svg('text', { class: 'denied', x: Math.min(x(lease.requestedAt), PLOT_X1 - 200), y: y + 15 }, `denied — ${lease.denial.code}`),
      );
    } else {
      // The task's life: Task Started (requested) → Task Ended.
      const start = lease.requestedAt;
      const end = lease.endedAt ?? now;
      g.append(svg('line', { class: 'task-line', x1: x(start), x2: Math.max(x(end), x(start) + 1), y1: y + 11, y2: y + 11 }));
    }
    const title = svg(
      'title',
      {},
      `${lease.taskId}\n${lease.workload ?? ''}\nrule ${lease.rule ?? '—'}\nrequested ${fmtClock(lease.requestedAt)}, ended ${fmtClock(lease.endedAt)}`,
    );
    g.prepend(title);
    root.append(g);
    y += TASK_H;

    for (const c of lease.credentials) {
      root.append(credentialBar(c, y, x, inPlot, now));
      y += CRED_H;
    }
  }
  host.replaceChildren(root);
}

function credentialBar(c, y, x, inPlot, now) {
  const g = svg('g', {
    class: `cred-bar state-${c.state}`,
    'data-testid': 'credential-bar',
    'data-task': c.taskId,
    'data-grant': c.grant,
    'data-state': c.state,
    'data-trust-debt-ms': c.trustDebtMs ?? '',
    'data-pipeline-ms': c.pipelineMs ?? '',
    'data-revoke-ms': c.revokeMs ?? '',
    'data-proof-ms': c.proofMs ?? '',
    'data-exposure-ms': c.exposureMs ?? '',
  });
  const mid = y + CRED_H / 2;
  const top = mid - BAR_H / 2;
  g.append(svg('text', { class: 'grant', x: 22, y: mid + 4 }, `${c.grant}${c.state === 'verified' ? '' : `  [${c.state}]`}`));
  if (c.issuedAt === undefined) return g;

  const verified = c.verifiedAt;
  const ended = c.endedAt;
  const useEnd = ended ?? verified ?? now;
  const xIssued = x(c.issuedAt);
  const xUseEnd = Math.max(x(useEnd), xIssued + 1);
  g.append(svg('rect', { class: 'seg-use', x: xIssued, y: top, width: xUseEnd - xIssued, height: BAR_H, rx: 2 }));

  let xDebtEnd = xUseEnd;
  let debtText = '';
  if (ended !== undefined) {
    const open = verified === undefined;
    const debtEnd = verified ?? now;
    xDebtEnd = Math.max(x(debtEnd), xUseEnd + 1.5);
    g.append(svg('rect', { class: open ? 'seg-open' : 'seg-debt', x: xUseEnd, y: top, width: xDebtEnd - xUseEnd, height: BAR_H, rx: 1 }));
    // The exposure inside it: ended → the target refuses (the rest is proving it).
    if (c.revokedAt !== undefined && c.revokedAt > ended) {
      const xRevoked = Math.min(Math.max(x(c.revokedAt), xUseEnd + 1), xDebtEnd);
      g.append(svg('rect', { class: 'seg-exposure', x: xUseEnd, y: top, width: xRevoked - xUseEnd, height: BAR_H, rx: 1 }));
    }
    debtText = open ? `open ${fmtDuration(Math.max(0, now - ended))}` : fmtDuration(c.trustDebtMs);
  }
  if (verified !== undefined)
    g.append(svg('line', { class: 'verified-tick', x1: xDebtEnd, x2: xDebtEnd, y1: top - 2, y2: top + BAR_H + 2 }));

  // The faint tail: how long the credential would have stayed usable had we only waited for expiry.
  if (c.naturalExpiry !== undefined) {
    const from = verified ?? now;
    const remaining = c.naturalExpiry - from;
    if (remaining > 0) {
      if (inPlot(c.naturalExpiry)) {
        const xe = x(c.naturalExpiry);
        g.append(svg('line', { class: 'seg-avoided', x1: xDebtEnd + 2, x2: xe, y1: mid, y2: mid }));
        g.append(svg('line', { class: 'expiry-mark', x1: xe, x2: xe, y1: top, y2: top + BAR_H }));
      } else {
        g.append(svg('line', { class: 'seg-avoided', x1: xDebtEnd + 2, x2: BREAK_X0, y1: mid, y2: mid }));
        g.append(svg('line', { class: 'seg-avoided', x1: BREAK_X1, x2: EXPIRY_X, y1: mid, y2: mid }));
        g.append(svg('path', { class: 'axis-break', d: breakMarks(mid) }));
        g.append(svg('line', { class: 'expiry-mark', x1: EXPIRY_X, x2: EXPIRY_X, y1: top, y2: top + BAR_H }));
      }
      const label =
        verified !== undefined ? `avoided ${fmtDuration(c.avoidedDebtMs ?? remaining)}` : `expires in ${fmtDuration(remaining)}`;
      const labelX = inPlot(c.naturalExpiry) ? x(c.naturalExpiry) + 6 : EXPIRY_X + 8;
      g.append(svg('text', { class: 'avoided-label', x: labelX, y: mid + 4 }, label));
    }
  }
  if (debtText)
    g.append(svg('text', { class: `debt-label${verified === undefined ? ' open' : ''}`, x: xDebtEnd + 6, y: mid + 4 }, debtText));

  const lines = [
    `${c.taskId} · ${c.grant} (${c.kind} on ${c.target})`,
    `state ${c.state}, verification attempts ${c.verifyAttempts}`,
    `issued ${fmtClock(c.issuedAt)}`,
    `task ended ${fmtClock(c.endedAt)}${c.endedAtSource ? ` (from ${c.endedAtSource}${c.endedAtClamped ? ', clamped' : ''})` : ''}`,
    `revoke started ${fmtClock(c.revokeStartedAt)}, target refuses ${fmtClock(c.revokedAt)}`,
    `proven rejected ${fmtClock(c.verifiedAt)}`,
    `trust debt ${fmtDuration(c.trustDebtMs ?? c.openDebtMs)}${c.trustDebtMs === undefined && c.openDebtMs !== undefined ? ' (open)' : ''}`,
    `natural expiry ${fmtClock(c.naturalExpiry)}; avoided ${fmtDuration(c.avoidedDebtMs)}`,
  ];
  if (c.trustDebtMs !== undefined)
    lines.splice(
      7,
      0,
      `split: pipeline ${fmtDuration(c.pipelineMs)} + revoke ${fmtDuration(c.revokeMs)} + proof ${fmtDuration(c.proofMs)}; exposure ${fmtDuration(c.exposureMs)}`,
    );
  if (c.lastError) lines.push(`last error: ${c.lastError}`);
  g.prepend(svg('title', {}, lines.join('\n')));
  return g;
}

function renderDenials(d) {
  const host = $('denials');
  $('denials-note').textContent = d.denials.total ? `${d.denials.total} in total` : '';
  if (d.denials.total === 0) {
    host.replaceChildren(el('p', { class: 'empty' }, 'none'));
    return;
  }
  const chips = el(
    'div',
    {},
    ...d.denials.byReason.map((r) =>
      el('span', { class: 'chip', 'data-testid': 'denial-reason', 'data-code': r.code }, `${r.code} × ${r.count}`),
    ),
  );
  const body = el('tbody');
  for (const item of d.denials.items.slice(-20).reverse()) {
    body.append(
      el(
        'tr',
        { 'data-testid': 'denial' },
        el('td', { class: 'mono' }, item.taskId),
        el('td', { title: item.workload ?? '' }, shortWorkload(item.workload)),
        el('td', {}, el('div', { class: 'mono' }, item.code), el('div', { class: 'denial-msg' }, item.message)),
      ),
    );
  }
  const table = el(
    'table',
    {},
    el('thead', {}, el('tr', {}, el('th', {}, 'task'), el('th', {}, 'workload'), el('th', {}, 'reason'))),
    body,
  );
  host.replaceChildren(chips, table);
}

function renderBlast(d) {
  const host = $('blast');
  if (d.blastRadius.length === 0) {
    host.replaceChildren(el('p', { class: 'empty' }, 'no issued credentials'));
    return;
  }
  const body = el('tbody');
  for (const b of d.blastRadius) {
    body.append(
      el(
        'tr',
        { 'data-testid': 'blast-row', 'data-workload': b.workload },
        el('td', { title: b.workload }, shortWorkload(b.workload)),
        el('td', { class: 'num', 'data-testid': 'blast-peak-credentials' }, String(b.peakCredentials)),
        el('td', { class: 'num' }, String(b.peakTargets)),
        el('td', { class: 'num', 'data-testid': 'blast-now-credentials' }, String(b.now.credentials)),
        el('td', {}, b.now.targets === 0 ? '0' : `${b.now.targets} (${b.targetsNow.join(', ')})`),
      ),
    );
  }
  const head = el(
    'tr',
    {},
    el('th', {}, 'workload'),
    el('th', { class: 'num' }, 'peak credentials'),
    el('th', { class: 'num' }, 'peak targets'),
    el('th', { class: 'num' }, 'credentials now'),
    el('th', {}, 'targets now'),
  );
  host.replaceChildren(el('table', {}, el('thead', {}, head), body));
}

function render() {
  if (!data) return;
  renderHeadline(data);
  renderTimeline(data);
  renderDenials(data);
  renderBlast(data);
  document.body.dataset.generatedAt = String(data.generatedAt);
  // Open debt grows every moment: keep redrawing while there is any.
  const live =
    data.openDebt.count > 0 || data.leases.some((l) => l.credentials.some((c) => c.state !== 'verified' && c.issuedAt !== undefined));
  if (live && !redrawTimer) {
    redrawTimer = setInterval(() => {
      renderHeadline(data);
      renderTimeline(data);
    }, OPEN_REDRAW_MS);
  } else if (!live && redrawTimer) {
    clearInterval(redrawTimer);
    redrawTimer = null;
  }
}

function accept(next) {
  if (data && next.generatedAt < data.generatedAt) return; // an older read arrived late
  serverOffsetMs = next.generatedAt - Date.now();
  data = next;
  render();
}

function setStatus(state, text) {
  const node = $('status');
  node.dataset.state = state;
  node.textContent = text;
}

function addActivity(a) {
  const list = $('activity');
  const time = el('time', {}, fmtClock(Date.parse(a.time)));
  list.prepend(el('li', {}, time, `${a.type}${a.taskId ? ` · ${a.taskId}` : ''}`));
  while (list.children.length > MAX_ACTIVITY) list.lastElementChild.remove();
}

async function load() {
  try {
    const res = await fetch('/api/ledger', { cache: 'no-store' });
    if (res.ok) accept(await res.json());
  } catch {
    // The event stream below retries and reports the state.
  }
}

function connect() {
  const es = new EventSource('/api/events');
  es.addEventListener('open', () => setStatus('live', 'live'));
  es.addEventListener('error', () => setStatus('down', 'reconnecting…'));
  es.addEventListener('ledger', (e) => {
    accept(JSON.parse(e.data));
    setStatus('live', `live · updated ${fmtClock(Date.now())}`);
  });
  es.addEventListener('status', (e) => {
    const s = JSON.parse(e.data);
    if (s.ledger === 'unreachable') setStatus('down', 'ledger unreachable — showing the last data');
    else setStatus('live', 'live');
  });
  es.addEventListener('activity', (e) => addActivity(JSON.parse(e.data)));
}

void load();
connect();
