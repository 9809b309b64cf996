import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DETAIL_TYPES, TaskEndedSchema, TaskStartedSchema } from '../../shared/events/schemas.ts';
import type { TaskStarted } from '../../shared/events/schemas.ts';
import type { BusEvent } from '../../shared/events/routing.ts';
import { InvalidEventError } from '../../shared/lease/errors.ts';
import { FaultInjector, NO_FAULTS, createFaultyBroker } from '../../chaos/faults.ts';
import type { FaultyBroker } from '../../chaos/faults.ts';
import { hostileKey, hostileValue, keysOf, validDetails, withOwnKey } from './arbitraries.ts';
import { READ, READER, ofType, startHarness } from './support.ts';
import type { Harness } from './support.ts';

/*
 * Issue 5 §6: hostile input. Generators derived from the zod schemas (valid details, then
 * mutated) and hand-written cases. Each gets a clear rejection naming the field, nothing is
 * issued (no role, no ledger credential, no lease beyond a denied record), no prototype is
 * polluted, and the bus goes on: a good event in the same burst still gets its lease.
 */

/** A rejection must say what is wrong without echoing unbounded attacker input. */
const MAX_REASON = 2_048;

let h: Harness;
let broker: FaultyBroker;
const brokerEvents: BusEvent[] = [];

beforeAll(async () => {
  h = await startHarness();
  broker = createFaultyBroker(h.rt, new FaultInjector({ seed: 6, rates: NO_FAULTS }), h.clock, { dynamoFaults: false });
  broker.bus.bus.watch((e) => brokerEvents.push(e));
});

afterAll(async () => {
  await broker?.close();
  await h?.stop();
});

const nothingIssued = () => {
  expect(broker.recorder.issues.size).toBe(0);
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  expect(Object.prototype).not.toHaveProperty('polluted');
  expect(Object.prototype).not.toHaveProperty('admin');
};

async function rejection(p: Promise<unknown>): Promise<InvalidEventError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof InvalidEventError) return err;
    throw new Error(`expected InvalidEventError, got ${String(err)}`);
  }
  throw new Error('expected a rejection, the event was accepted');
}

let counter = 0;
/** Unique task ids per generated sample, so ledger checks see only that sample. */
const uniqueTask = <T extends { taskId: string }>(d: T): T => ({ ...d, taskId: `h${counter++}-${d.taskId}`.slice(0, 128) });

describe('hostile input, property-based from the schemas', () => {
  const started = validDetails(TaskStartedSchema);
  const startedKeys = keysOf(TaskStartedSchema);
  const ended = validDetails(TaskEndedSchema);

  it('schema-valid Task Started details with forged SVIDs are denied, never issued', async () => {
    await fc.assert(
      fc.asyncProperty(started, async (raw) => {
        const d = uniqueTask(raw);
        const result = await broker.lifecycle.taskStarted(d);
        expect(result.status).toBe('denied');
        const record = await h.rt.ledger.getLease(d.taskId);
        expect(record?.lease.state).toBe('denied');
        expect(record?.credentials).toEqual([]);
      }),
      { numRuns: 60 },
    );
    nothingIssued();
  });

  it('mutated Task Started details are rejected with the field named, and leave no trace in the ledger', async () => {
    type Mutation = { what: string; apply: (d: Record<string, unknown>) => Record<string, unknown> };
    const mutation: fc.Arbitrary<Mutation> = fc.oneof(
      fc.constantFrom(...startedKeys.required).map((k) => ({ what: `drop ${k}`, apply: (d: Record<string, unknown>) => withoutKey(d, k) })),
      fc
        .record({ k: fc.constantFrom(...startedKeys.all), v: hostileValue })
        .map(({ k, v }) => ({ what: `replace ${k}`, apply: (d: Record<string, unknown>) => ({ ...d, [k]: v }) })),
      fc
        .record({ k: hostileKey, v: hostileValue })
        .map(({ k, v }) => ({ what: `add key ${k.slice(0, 20)}`, apply: (d: Record<string, unknown>) => withOwnKey(d, k, v) })),
      fc.record({ k: hostileKey, v: hostileValue }).map(({ k, v }) => ({
        what: `grant key ${k.slice(0, 20)}`,
        apply: (d: Record<string, unknown>) => ({ ...d, grants: [withOwnKey({ ...READ }, k, v)] }),
      })),
      fc.integer({ min: 17, max: 200_000 }).map((n) => ({
        what: `grants x${n}`,
        apply: (d: Record<string, unknown>) => ({ ...d, grants: Array.from({ length: n }, () => READ) }),
      })),
    );
    await fc.assert(
      fc.asyncProperty(started, mutation, async (raw, m) => {
        const d = m.apply(uniqueTask(raw) as unknown as Record<string, unknown>);
        fc.pre(!TaskStartedSchema.safeParse(d).success); // some replacements are still valid
        const err = await rejection(broker.lifecycle.taskStarted(d));
        expect(err.message).toMatch(/^Task Started: /);
        expect(err.message.length).toBeLessThanOrEqual(MAX_REASON);
        if (typeof d.taskId === 'string') expect(await h.rt.ledger.getLease(d.taskId)).toBeUndefined();
      }),
      { numRuns: 250 },
    );
    nothingIssued();
  });

  it('mutated Task Ended details are rejected and change no lease', async () => {
    await fc.assert(
      fc.asyncProperty(
        ended,
        fc.record({ k: fc.oneof(hostileKey, fc.constantFrom('taskId', 'outcome', 'svid')), v: hostileValue }),
        async (raw, { k, v }) => {
          const d = withOwnKey(uniqueTask(raw), k, v);
          fc.pre(!TaskEndedSchema.safeParse(d).success);
          const err = await rejection(broker.lifecycle.taskEnded(d));
          expect(err.message).toMatch(/^Task Ended: /);
          expect(err.message.length).toBeLessThanOrEqual(MAX_REASON);
          if (typeof d.taskId === 'string') expect(await h.rt.ledger.getLease(d.taskId)).toBeUndefined();
        },
      ),
      { numRuns: 120 },
    );
    nothingIssued();
  });

  it('well-formed Task Ended details whose SVID nobody trusted signed are refused end-unauthenticated and leave no tombstone', async () => {
    await fc.assert(
      fc.asyncProperty(ended, async (raw) => {
        const d = uniqueTask(raw);
        const r = await broker.lifecycle.taskEnded(d);
        expect(r).toMatchObject({ status: 'rejected', code: 'end-unauthenticated' });
        expect(await h.rt.ledger.getLease(d.taskId as string)).toBeUndefined();
      }),
      { numRuns: 60 },
    );
    nothingIssued();
  });
});

function withoutKey(d: Record<string, unknown>, k: string): Record<string, unknown> {
  const copy = { ...d };
  delete copy[k];
  return copy;
}

const good = (taskId: string, svid: string): TaskStarted => ({
  taskId,
  svid,
  grants: [READ],
  maxDurationSeconds: 600,
  initiator: 'hostile@tasklease.local',
});

/** Hand-written cases: each with the words its rejection must contain. */
function handWritten(svid: string): Array<{ name: string; detail: unknown; reason: RegExp }> {
  const base = good('hand-case', svid);
  const json = (text: string) => JSON.parse(text) as unknown;
  let deep: unknown = 'x';
  for (let i = 0; i < 100_000; i++) deep = { workflow: deep };
  let deepArray: unknown = [];
  for (let i = 0; i < 100_000; i++) deepArray = [deepArray];
  return [
    {
      name: '__proto__ at the top',
      detail: json(
        `{"taskId":"hand-proto","svid":"${svid}","grants":[{"target":"orders-db","access":"read"}],"maxDurationSeconds":600,"__proto__":{"polluted":true,"admin":true}}`,
      ),
      reason: /Unrecognized key.*__proto__/,
    },
    {
      name: '__proto__ inside a grant',
      detail: json(
        `{"taskId":"hand-proto-grant","svid":"${svid}","grants":[{"target":"orders-db","access":"read","__proto__":{"admin":true}}],"maxDurationSeconds":600}`,
      ),
      reason: /grants\[0\].*__proto__/,
    },
    {
      name: 'constructor.prototype',
      detail: json(
        `{"taskId":"hand-ctor","svid":"${svid}","grants":[{"target":"orders-db","access":"read"}],"maxDurationSeconds":600,"constructor":{"prototype":{"polluted":true}}}`,
      ),
      reason: /constructor/,
    },
    {
      name: 'a million grants',
      detail: { ...base, taskId: 'hand-huge', grants: Array.from({ length: 1_000_000 }, () => READ) },
      reason: /grants: .*16/,
    },
    { name: 'grants repeated', detail: { ...base, taskId: 'hand-repeat', grants: [READ, READ] }, reason: /must not repeat/ },
    { name: 'deep nesting in a field', detail: { ...base, taskId: 'hand-deep', workflow: deep }, reason: /workflow/ },
    { name: 'deep nesting as the detail', detail: deepArray, reason: /expected object/ },
    { name: 'lone surrogate in the task id', detail: { ...base, taskId: 'hand-\uD800' }, reason: /taskId: must be printable text/ },
    {
      name: 'lone surrogate in the initiator',
      detail: { ...base, taskId: 'hand-surrogate', initiator: 'eve\uDC00' },
      reason: /initiator: must not contain control characters or lone surrogates/,
    },
    {
      name: 'invalid UTF-8 (decoded) in the task id',
      detail: { ...base, taskId: Buffer.from([0x68, 0xff, 0xfe, 0x31]).toString('utf8') },
      reason: /taskId: must be printable text/,
    },
    {
      name: 'invalid UTF-8 (decoded) in a grant',
      detail: { ...base, taskId: 'hand-utf8', grants: [{ target: Buffer.from([0x6f, 0xc3, 0x28]).toString('utf8'), access: 'read' }] },
      reason: /grants\[0\]\.target/,
    },
    { name: 'raw bytes as the SVID', detail: { ...base, taskId: 'hand-bytes', svid: Buffer.from(svid) }, reason: /svid/ },
    {
      name: 'number as a string',
      detail: { ...base, taskId: 'hand-numstr', maxDurationSeconds: '600' },
      reason: /maxDurationSeconds: .*expected number/,
    },
    { name: 'task id as a number', detail: { ...base, taskId: 12345 }, reason: /taskId: .*expected string/ },
    { name: 'NaN duration', detail: { ...base, taskId: 'hand-nan', maxDurationSeconds: Number.NaN }, reason: /maxDurationSeconds/ },
    {
      name: 'SQL in a grant',
      detail: { ...base, taskId: 'hand-sql', grants: [{ target: 'orders-db', access: "read'; DROP ROLE postgres; --" }] },
      reason: /grants\[0\]\.access/,
    },
    { name: 'a bidi override in the task id', detail: { ...base, taskId: 'hand-\u202Eevil' }, reason: /taskId: must be printable text/ },
    {
      name: 'whole EventBridge envelope as the detail',
      detail: {
        version: '0',
        id: 'e1',
        'detail-type': 'Task Started',
        source: 'engine',
        account: '1',
        time: '2026-01-01T00:00:00Z',
        region: 'eu-west-1',
        resources: [],
        detail: base,
      },
      reason: /Unrecognized key|taskId/,
    },
    { name: 'detail double-encoded as a JSON string', detail: JSON.stringify(base), reason: /expected object, received string/ },
    { name: 'detail null', detail: null, reason: /expected object/ },
    { name: 'detail an array', detail: [base], reason: /expected object, received array/ },
    { name: 'detail over 10 KiB at every field maximum', detail: oversized(svid), reason: /detail must serialise to at most 10240 bytes/ },
    {
      name: 'a 100 000-character key',
      detail: withOwnKey({ ...base, taskId: 'hand-longkey' }, 'k'.repeat(100_000), 1),
      reason: /Unrecognized key/,
    },
    {
      name: '100 000 unknown keys',
      detail: Object.fromEntries([
        ...Object.entries({ ...base, taskId: 'hand-manykeys' }),
        ...Array.from({ length: 100_000 }, (_, i) => [`k${i}`, i]),
      ]),
      reason: /Unrecognized key/,
    },
    { name: 'a 20 MB SVID', detail: { ...base, taskId: 'hand-bigsvid', svid: `a.b.${'c'.repeat(20_000_000)}` }, reason: /svid: .*8192/ },
  ];
}

function oversized(svid: string): unknown {
  const grants = Array.from({ length: 16 }, (_, i) => ({
    target: `t${String(i).padStart(2, '0')}${'x'.repeat(60)}`,
    access: `a${'y'.repeat(31)}`,
  }));
  return {
    taskId: 'hand-oversized',
    svid: `${svid}${'A'.repeat(Math.max(0, 8_192 - svid.length))}`.slice(0, 8_192),
    grants,
    maxDurationSeconds: 600,
    initiator: 'i'.repeat(256),
    taskToken: 't'.repeat(1_024),
    workflow: { engine: 'e'.repeat(32), runId: 'r'.repeat(256) },
  };
}

describe('hostile input, hand-written', () => {
  it('each case is rejected with a clear, bounded reason and nothing is issued', async () => {
    const svid = await h.rt.mintSvid(READER);
    for (const c of handWritten(svid)) {
      const started = Date.now();
      const err = await rejection(broker.lifecycle.taskStarted(c.detail));
      expect(err.message, c.name).toMatch(c.reason);
      expect(err.message.length, `${c.name}: reason length`).toBeLessThanOrEqual(MAX_REASON);
      expect(Date.now() - started, `${c.name}: rejected quickly`).toBeLessThan(5_000);
    }
    // Each rejection was announced (Lease Denied, invalid-event) with a bounded message too.
    const denied = ofType(brokerEvents, DETAIL_TYPES.leaseDenied).map(
      (e) => e.detail as { taskId: string; reason: { code: string; message: string } },
    );
    expect(denied.filter((d) => d.reason.code === 'invalid-event').length).toBeGreaterThanOrEqual(handWritten(svid).length);
    for (const d of denied) {
      expect(d.reason.message.length).toBeLessThanOrEqual(MAX_REASON);
      expect(d.taskId.length).toBeLessThanOrEqual(128); // an unreadable task id is reported as such
    }
    nothingIssued();
    expect(await h.roles()).toEqual([]);
  });

  it('a burst of hostile events on the bus is dead-lettered while a good event in the same burst gets its lease', async () => {
    const svid = await h.rt.mintSvid(READER);
    const cases = handWritten(await h.rt.mintSvid(READER));
    const seen: Array<{ type: string; detail: { taskId?: string; reason?: { code: string; message: string } } }> = [];
    const unwatch = broker.bus.bus.watch((e) => seen.push({ type: e['detail-type'], detail: e.detail as { taskId?: string } }));
    for (const c of cases.slice(0, 12)) broker.bus.bus.put(DETAIL_TYPES.taskStarted, c.detail);
    broker.bus.bus.put(DETAIL_TYPES.taskStarted, good('hostile-burst-good', svid));
    for (const c of cases.slice(12)) broker.bus.bus.put(DETAIL_TYPES.taskStarted, c.detail);
    broker.bus.bus.put(
      DETAIL_TYPES.taskEnded,
      JSON.parse('{"taskId":"hostile-burst-good","outcome":"succeeded","__proto__":{"polluted":true}}'),
    );
    broker.bus.bus.put(DETAIL_TYPES.taskEnded, { taskId: 'hostile-burst-good', outcome: 'exploded' });
    broker.bus.bus.put('Task Started ', good('hostile-burst-misrouted', svid)); // no rule matches: never delivered
    await broker.bus.drained();
    unwatch();

    expect(seen.filter((e) => e.type === DETAIL_TYPES.leaseIssued).map((e) => e.detail.taskId)).toEqual(['hostile-burst-good']);
    const dead = broker.bus.bus.deadLetters;
    expect(dead.length).toBe(cases.length + 2);
    for (const d of dead) {
      expect(d.receiveCount).toBe(1); // malformed: straight to the dead letters, no retries
      expect(d.reason).toMatch(/^invalid-event: Task (Started|Ended): /);
      expect(d.reason.length).toBeLessThanOrEqual(MAX_REASON + 20);
    }
    const invalid = seen.filter((e) => e.type === DETAIL_TYPES.leaseDenied && e.detail.reason?.code === 'invalid-event');
    // Every malformed start and both malformed ends get a reasoned rejection.
    expect(invalid.length).toBe(cases.length + 2);
    for (const e of invalid) expect(e.detail.reason?.message.length).toBeLessThanOrEqual(MAX_REASON);
    expect(broker.recorder.issues.size).toBe(1);
    expect(await h.rt.ledger.getLease('hostile-burst-misrouted')).toBeUndefined();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();

    // The good lease is intact and ends normally.
    expect((await broker.lifecycle.taskEnded(await h.ended('hostile-burst-good', 'succeeded'))).status).toBe('closed');
    expect(await h.roles()).toEqual([]);
  });
});
