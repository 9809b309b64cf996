/** The cost tables of `npm run bench` (console and bench/README.md). */
import type { CostEstimate, CostSummary } from './model.ts';
import { PRICE_REGION, PRICES, PRICES_READ_ON } from './prices.ts';

const usd = (n: number): string => {
  if (n < 0) return `−${usd(-n)}`;
  return n === 0
    ? '$0'
    : n >= 100
      ? `$${n.toFixed(0)}`
      : n >= 1
        ? `$${n.toFixed(2)}`
        : n >= 0.01
          ? `$${n.toFixed(3)}`
          : `$${n.toPrecision(2)}`;
};
const qty = (n: number) => (n === 0 ? '0' : n >= 100 ? n.toFixed(0) : n >= 1 ? n.toFixed(2) : n.toPrecision(3));

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

function breakdown(proof: CostEstimate, ttl: CostEstimate): string {
  const ttlByItem = new Map(ttl.lines.map((l) => [`${l.service}/${l.item.replace(/\(.*\)/, '')}`, l]));
  return table(
    ['service', 'what', 'basis', 'per task (proof)', 'per million tasks (proof)', 'per task (TTL-only)', 'per million tasks (TTL-only)'],
    [
      ...proof.lines.map((l) => {
        const t = ttlByItem.get(`${l.service}/${l.item.replace(/\(.*\)/, '')}`);
        return [l.service, l.item, l.basis, qty(l.quantity), usd(l.usd * 1e6), t ? qty(t.quantity) : '0', t ? usd(t.usd * 1e6) : '$0'];
      }),
      ...ttl.lines
        .filter(
          (l) =>
            !proof.lines.some((p) => `${p.service}/${p.item.replace(/\(.*\)/, '')}` === `${l.service}/${l.item.replace(/\(.*\)/, '')}`),
        )
        .map((l) => [l.service, l.item, l.basis, '0', '$0', qty(l.quantity), usd(l.usd * 1e6)]),
      ['**total**', '', '', '', `**${usd(proof.usdPerMillionTasks)}**`, '', `**${usd(ttl.usdPerMillionTasks)}**`],
    ],
  );
}

export function renderCost(s: CostSummary): string {
  const a = s.assumptions;
  const out: string[] = [];
  out.push(
    `Deployed shape read from infra/: ${s.shape.memoryMb} MB ${s.shape.architecture} functions, SQS batches of up to ${s.shape.batchSize}, reaper every ${s.shape.reaperIntervalSeconds} s. Prices: on-demand, ${PRICE_REGION}, read ${PRICES_READ_ON}, no free tier. Assumed: a task holds its credential ${a.taskSeconds} s; leases are ${a.leaseSeconds} s (TTL-only keeps the secret that long); X-Ray records ${a.xraySampled * 100} % of invocations.`,
  );
  out.push('');
  out.push(
    table(
      [
        'workload',
        'credentials',
        'records per invocation',
        'proof: $ per million tasks',
        'TTL-only: $ per million tasks',
        'what proof adds',
      ],
      [...s.mix, ...s.rows].map(({ proof, ttlOnly }) => [
        proof.workload,
        qty(proof.credentialsPerTask),
        String(proof.batchSize),
        usd(proof.usdPerMillionTasks),
        usd(ttlOnly.usdPerMillionTasks),
        `${usd(proof.usdPerMillionTasks - ttlOnly.usdPerMillionTasks)} (${((proof.usdPerMillionTasks / ttlOnly.usdPerMillionTasks - 1) * 100).toFixed(0)} %)`,
      ]),
    ),
  );
  for (const m of s.mix) {
    out.push('');
    out.push(`Demo mix, ${m.proof.batchSize} record(s) per invocation, by service:`);
    out.push('');
    out.push(breakdown(m.proof, m.ttlOnly));
  }
  out.push('');
  out.push(
    `Requests per lifecycle (demo mix, one record per invocation): ${Object.entries(s.callsPerLifecycle)
      .map(
        ([service, ops]) =>
          `${service} ${Object.entries(ops)
            .map(([op, n]) => `${op} ${qty(n)}`)
            .join(', ')}`,
      )
      .join('; ')}.`,
  );
  out.push('');
  out.push(
    `Scheduled reaper (fixed, whatever the number of tasks): ${usd(s.reaper.usdPerRun)} per run × ${Math.round(s.reaper.runsPerMonth).toLocaleString('en-US')} runs a month = **${usd(s.reaper.usdPerMonth)} a month** (one run with nothing open, counted: ${
      Object.entries(s.reaper.calls)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || 'no SDK call'
    }).`,
  );
  if (s.writeUnitMismatches)
    out.push(`\n${s.writeUnitMismatches} DynamoDB writes: computed table units differ from dynalite's own figure.`);
  if (s.errors.length) out.push(`\nErrors: ${s.errors.slice(0, 5).join('; ')}`);
  return out.join('\n');
}

export function renderPrices(): string {
  return table(
    ['price', 'USD', 'per', 'source (read 2026-12-02)'],
    Object.entries(PRICES).map(([name, p]) => [
      name,
      p.usd === 0 ? '0' : p.usd < 0.001 ? p.usd.toExponential(4) : String(p.usd),
      p.per,
      `${p.source}${'note' in p ? ` (${p.note})` : ''}`,
    ]),
  );
}
