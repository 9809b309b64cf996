import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import type { BrowserContext, Page } from 'playwright-core';
import { runDemo } from '../../demo/main.ts';
import type { DemoResult } from '../../demo/main.ts';
import { startLocalRuntime } from '../../local/runtime.ts';
import type { LocalRuntime } from '../../local/runtime.ts';
import { startDashboard } from '../../report/dashboard/server.ts';
import type { DashboardHandle } from '../../report/dashboard/server.ts';
import { grantKey } from '../../shared/events/schemas.ts';
import type { CredentialRecord } from '../../shared/lease/records.ts';
import { summarizeDebt } from '../../shared/lease/trust-debt.ts';

/** Debian's chromium package; CHROMIUM_PATH points elsewhere (another distribution's binary). */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const OUTPUT_DIR = join(import.meta.dirname, '..', '..', 'test-output');
const SCREENSHOT = join(OUTPUT_DIR, 'dashboard.png');
if (!HAVE_CHROMIUM) {
  console.warn(
    `[dashboard] SKIPPED the browser test: ${CHROMIUM} is not installed (Debian: apt-get install chromium; .ci/run installs it).`,
  );
}

describe.skipIf(!HAVE_CHROMIUM)('dashboard page in headless Chromium, live during a demo run', () => {
  let rt: LocalRuntime;
  let dash: DashboardHandle;
  let context: BrowserContext;
  let page: Page;
  let profile: string;
  let result: DemoResult;
  let creds: CredentialRecord[];
  const passwords: string[] = [];
  const requests: string[] = [];
  const pageErrors: string[] = [];
  /** Bar counts the page showed, in order, recorded in the page as it re-rendered. */
  let barCountsSeen: number[] = [];

  beforeAll(async () => {
    rt = await startLocalRuntime({ reaperIntervalMs: false });
    // Record every password the broker delivers, to prove none ever reaches the page.
    const put = rt.secrets.put.bind(rt.secrets);
    rt.secrets.put = async (input) => {
      if (input.value.password) passwords.push(input.value.password);
      return put(input);
    };
    dash = await startDashboard({ ledger: rt.ledger, bus: rt.bus });
    profile = await mkdtemp(join(tmpdir(), 'tasklease-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-quic',
        '--no-first-run',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1320, height: 900 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('request', (r) => requests.push(r.url()));
    page.on('pageerror', (e) => pageErrors.push(e.message));

    // Open the page before any task runs: everything after this arrives live.
    await page.goto(dash.url);
    await page.getByText('Waiting for the first task…').waitFor();
    await page.locator('[data-testid="status"][data-state="live"]').waitFor();
    // In-page code as strings: the project compiles without the DOM library.
    await page.evaluate(`(() => {
      const seen = [];
      window.__barCounts = seen;
      new MutationObserver(() => {
        const n = document.querySelectorAll('[data-testid="credential-bar"]').length;
        if (seen[seen.length - 1] !== n) seen.push(n);
      }).observe(document.getElementById('timeline'), { childList: true, subtree: true });
    })()`);

    expect(dash.viewers()).toBe(1);
    result = await runDemo(rt, { tasks: 4, concurrency: 2 });
    creds = (await rt.ledger.listLeases({})).flatMap((l) => l.credentials);
    // The last bus event is followed by one debounced refresh: wait for the page to show the final ledger.
    await page
      .locator('[data-testid="credential-bar"][data-state="verified"]')
      .nth(creds.length - 1)
      .waitFor({ timeout: 15_000 });
    barCountsSeen = (await page.evaluate('window.__barCounts')) as number[];
    await mkdir(OUTPUT_DIR, { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  });

  afterAll(async () => {
    await context?.close();
    await dash?.close();
    await rt?.stop();
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  it('draws one bar per credential of the run, grouped under its task', async () => {
    expect(creds.length).toBe(result.credentials);
    expect(creds.length).toBeGreaterThanOrEqual(4);
    const bars = await page.$$eval('[data-testid="credential-bar"]', (els) =>
      els.map((e) => `${e.getAttribute('data-task')} ${e.getAttribute('data-grant')}`),
    );
    expect(bars.sort()).toEqual(creds.map((c) => `${c.taskId} ${grantKey(c.grant)}`).sort());
    // Tasks: the four demo tasks and the one the policy denied.
    const tasks = await page.$$eval('[data-testid="task-row"]', (els) => els.map((e) => e.getAttribute('data-task')));
    expect(tasks.sort()).toEqual(['demo-001', 'demo-002', 'demo-003', 'demo-004', 'demo-greedy']);
    // Every verified bar shows issued → ended (use), ended → verified (debt), and the faint tail to expiry.
    const parts = await page.$$eval('[data-testid="credential-bar"]', (els) =>
      els.map((e) =>
        ['.seg-use', '.seg-debt', '.verified-tick', '.seg-avoided', '.expiry-mark'].map((s) => e.querySelectorAll(s).length > 0),
      ),
    );
    for (const p of parts) expect(p).toEqual([true, true, true, true, true]);
  });

  it('updated live while the demo ran, without a reload', () => {
    // The page opened empty and re-rendered as credentials appeared: at least one partial count before the final one.
    expect(barCountsSeen[barCountsSeen.length - 1]).toBe(creds.length);
    expect(barCountsSeen.some((n) => n > 0 && n < creds.length)).toBe(true);
  });

  it('shows the headline percentiles of the ledger (the demo’s figures)', async () => {
    const s = summarizeDebt(creds);
    const value = (id: string) => page.getAttribute(`[data-testid="${id}"]`, 'data-value');
    expect(await value('metric-credentials')).toBe(String(s.credentials));
    expect(await value('metric-verified')).toBe(String(s.verifiedRejected));
    expect(await value('metric-p50')).toBe(String(s.trustDebtMs.p50));
    expect(await value('metric-p90')).toBe(String(s.trustDebtMs.p90));
    expect(await value('metric-p99')).toBe(String(s.trustDebtMs.p99));
    expect(await value('metric-max')).toBe(String(s.trustDebtMs.max));
    expect(await value('metric-avoided')).toBe(String(s.avoidedDebtMs.p50));
    expect(await value('metric-open')).toBe('0');
    // Where the debt went (issue 13): the split cards carry the same figures as the report.
    expect(await value('metric-pipeline')).toBe(String(s.split.pipelineMs.p50));
    expect(await value('metric-revoke')).toBe(String(s.split.revokeMs.p50));
    expect(await value('metric-proof')).toBe(String(s.split.proofMs.p50));
    expect(await value('metric-exposure')).toBe(String(s.split.exposureMs.p99));
    // The demo printed the same numbers.
    expect([s.trustDebtMs.p50, s.trustDebtMs.p99, s.trustDebtMs.max]).toEqual([
      result.trustDebtMs.p50,
      result.trustDebtMs.p99,
      result.trustDebtMs.max,
    ]);
    expect(await page.textContent('[data-testid="metric-p50"]')).toBe(`${s.trustDebtMs.p50} ms`);
  });

  it('lists the denial with its reason, and the blast radius per workload', async () => {
    expect(await page.$$eval('[data-testid="denial-reason"]', (els) => els.map((e) => e.textContent))).toEqual([
      'policy-grant-not-allowed × 1',
    ]);
    const denial = await page.textContent('[data-testid="denial"]');
    expect(denial).toContain('demo-greedy');
    expect(denial).toContain('grant orders-db.write not allowed');
    const workloads = await page.$$eval('[data-testid="blast-row"]', (els) => els.map((e) => e.getAttribute('data-workload')));
    expect(workloads.sort()).toEqual([...new Set(creds.map((c) => c.workload))].sort());
    const nows = await page.$$eval('[data-testid="blast-now-credentials"]', (els) => els.map((e) => e.textContent));
    expect(nows.every((n) => n === '0')).toBe(true);
    expect(await page.locator('[data-testid="activity"] li').count()).toBeGreaterThan(0);
  });

  it('loads nothing from outside the dashboard, throws no script error, and never serves a secret', async () => {
    expect(requests.length).toBeGreaterThan(0);
    for (const url of requests) expect(url.startsWith(dash.url) || url.startsWith('data:')).toBe(true);
    expect(pageErrors).toEqual([]);
    expect(passwords.length).toBe(creds.length);
    const api = await (await fetch(`${dash.url}api/ledger`)).text();
    const html = await page.content();
    for (const p of passwords) {
      expect(api).not.toContain(p);
      expect(html).not.toContain(p);
    }
    for (const field of ['secretName', 'secretArn', 'taskToken', 'metadata', 'externalId']) expect(api).not.toContain(`"${field}"`);
  });

  it('wrote a screenshot', () => {
    expect(existsSync(SCREENSHOT)).toBe(true);
  });
});
