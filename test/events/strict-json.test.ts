import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseJsonDetail } from '../../shared/events/parse.ts';
import { TaskStartedSchema } from '../../shared/events/schemas.ts';
import { findKeyProblem, parseJsonStrict } from '../../shared/events/strict-json.ts';
import { InvalidEventError } from '../../shared/lease/errors.ts';

const SVID = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzcGlmZmU6Ly9hLmV4YW1wbGUvdyJ9.c2lnbmF0dXJlLXZhbHVl';

/** The reason `text` is refused with; fails the test if it is accepted. */
function reason(text: string, what = 'Task Started'): string {
  try {
    parseJsonStrict(text, what);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidEventError);
    const message = (err as Error).message;
    // No value, and no piece of an SVID, ever reaches a reason.
    for (const part of SVID.split('.')) expect(message).not.toContain(part);
    return message;
  }
  throw new Error(`accepted: ${text}`);
}

/** An SQS body holding an EventBridge event whose detail is `detail` (raw JSON text). */
const envelope = (detail: string) =>
  `{"version":"0","id":"6a7e8feb-b491-4cf7-a9f1-bf3703467718","detail-type":"Task Started","source":"engine","account":"111122223333",` +
  `"time":"2030-01-01T00:00:00Z","region":"eu-west-1","resources":[],"detail":${detail}}`;

const detail = (taskIdMembers: string) =>
  `{${taskIdMembers},"svid":"${SVID}","grants":[{"target":"orders-db","access":"read"}],"maxDurationSeconds":900}`;

describe('parseJsonStrict', () => {
  it('refuses {"taskId":"d1","taskId":"d2",…}, naming the key and quoting neither value', () => {
    const text = detail('"taskId":"d1","taskId":"d2"');
    // What JSON.parse alone would have done: lease d2 while an engine reading the first key ends d1.
    expect((JSON.parse(text) as { taskId: string }).taskId).toBe('d2');
    const why = reason(text);
    expect(why).toBe('Task Started: duplicate key taskId; each key may appear once (parsers disagree about which copy counts)');
    expect(why).not.toMatch(/d1|d2/);
  });

  it('finds duplicates at any depth and names their path', () => {
    expect(reason(envelope(detail('"taskId":"d1","taskId":"d2"')), 'message body')).toMatch(/^message body: duplicate key detail\.taskId;/);
    expect(reason(envelope(detail('"taskId":"d1"')).replace('"version":"0"', '"version":"0","source":"spoof"'))).toMatch(
      /duplicate key source;/,
    );
    const nested = detail('"taskId":"d1"').replace(
      '{"target":"orders-db","access":"read"}',
      '{"target":"orders-db","access":"read"},{"target":"x","target":"orders-db","access":"write"}',
    );
    expect(reason(envelope(nested))).toMatch(/duplicate key detail\.grants\[1\]\.target;/);
    expect(reason('{"a":[[1,{"b":{"c":1,"c":2}}]]}')).toMatch(/duplicate key a\[0\]\[1\]\.b\.c;/);
  });

  it('compares keys after unescaping', () => {
    expect(reason('{"taskId":"d1","task\\u0049d":"d2"}')).toMatch(/duplicate key taskId;/);
  });

  it('an SVID used as a duplicated key or value stays out of the reason', () => {
    expect(reason(detail('"taskId":"d1"').replace('"svid"', '"svid":"x","svid"'))).toMatch(/duplicate key svid;/);
    // A key that is itself a token is not shown, only its length.
    const why = reason(`{"detail":{"${SVID}":1,"${SVID}":2}}`);
    expect(why).toBe(
      `Task Started: duplicate key detail[key of ${SVID.length} characters]; each key may appear once (parsers disagree about which copy counts)`,
    );
    // Nor a key with a line break (it would start a fake log line), nor a long one.
    expect(reason('{"a\\nlevel=info":1,"a\\nlevel=info":2}')).toMatch(/duplicate key \[key of 12 characters\];/);
    expect(reason(`{"${'k'.repeat(41)}":1,"${'k'.repeat(41)}":2}`)).toMatch(/duplicate key \[key of 41 characters\];/);
  });

  it('refuses __proto__ keys, which Object.assign would turn into a prototype', () => {
    expect(reason('{"taskId":"t","__proto__":{"admin":true}}')).toBe('Task Started: key __proto__ is not allowed');
    expect(reason('{"detail":{"grants":[{"__proto__":1}]}}')).toBe('Task Started: key detail.grants[0].__proto__ is not allowed');
  });

  it('says where text that is not JSON breaks, without quoting it', () => {
    const text = `{"svid":${SVID}}`; // an unquoted token
    expect(() => JSON.parse(text)).toThrow(SVID.slice(0, 10)); // JSON.parse's own message would leak it
    expect(reason(text)).toMatch(new RegExp(`^Task Started: not JSON \\(${text.length} bytes(, broken at character 8)?\\)$`));
    expect(reason('{"taskId":"t"')).toBe('Task Started: not JSON (13 bytes, broken at character 13)');
    expect(reason('')).toMatch(/^Task Started: not JSON \(0 bytes/);
    expect(reason('{"é":')).toMatch(/not JSON \(6 bytes/); // bytes, not the 5 characters
  });

  it('keeps equal keys in different objects, strings that look like structure, and escapes', () => {
    const text = '{"a":{"k":1},"b":{"k":2},"c":[{"k":1},{"k":2}],"s":"{\\"k\\":1,\\"k\\":2}","t":"\\\\","k":["\\"",","]}';
    expect(parseJsonStrict(text, 'x')).toEqual(JSON.parse(text));
    expect(parseJsonStrict(' [1, "a", null, {"x": [ ]}] ', 'x')).toEqual([1, 'a', null, { x: [] }]);
    expect(parseJsonStrict('"just a string"', 'x')).toBe('just a string');
  });

  it('findKeyProblem ends on text that is not JSON (an unterminated string)', () => {
    expect(findKeyProblem('{"a":1,"a')).toBeUndefined();
    expect(findKeyProblem('{"a\\')).toBeUndefined();
  });

  it('property: whatever JSON.stringify writes parses to the same value', () => {
    const noProto = fc.jsonValue().filter((v) => !JSON.stringify(v).includes('"__proto__"'));
    fc.assert(
      fc.property(noProto, (value) => {
        const text = JSON.stringify(value);
        expect(parseJsonStrict(text, 'x')).toEqual(JSON.parse(text));
      }),
      { numRuns: 500, seed: 7 },
    );
  });

  it('property: a key repeated in any object at any depth is found, with its path', () => {
    // A tree of objects and arrays; one object gets a copy of one of its own keys.
    const tree = fc.letrec((tie) => ({
      node: fc.oneof({ depthSize: 'small', withCrossShrink: true }, fc.integer(), fc.string(), tie('obj'), tie('arr')),
      obj: fc.dictionary(
        fc.string({ minLength: 1, maxLength: 6 }).filter((k) => k !== '__proto__'),
        tie('node'),
        { minKeys: 1, maxKeys: 4 },
      ),
      arr: fc.array(tie('node'), { maxLength: 3 }),
    })).obj;
    fc.assert(
      fc.property(tree, fc.nat(), fc.jsonValue(), (root, pick, extra) => {
        const objects: Array<Record<string, unknown>> = [];
        const walk = (v: unknown) => {
          if (Array.isArray(v)) v.forEach(walk);
          else if (v && typeof v === 'object') {
            objects.push(v as Record<string, unknown>);
            Object.values(v).forEach(walk);
          }
        };
        walk(root);
        const target = objects[pick % objects.length]!;
        const key = Object.keys(target)[0]!;
        // Serialize with a marker member in the chosen object, then turn it into a duplicate of `key`.
        const marker = '\u0000dup-marker\u0000';
        target[marker] = extra;
        const text = JSON.stringify(root).replace(JSON.stringify(marker), JSON.stringify(key));
        const problem = findKeyProblem(text);
        expect(problem?.kind).toBe('duplicate-key');
        const shown = /^[A-Za-z_$][\w$-]*$/.test(key) ? key : `[key of ${key.length} characters]`;
        expect(problem!.path.endsWith(shown)).toBe(true);
      }),
      { numRuns: 300, seed: 11 },
    );
  });
});

describe('parseJsonDetail', () => {
  const good = `{"taskId":"t-1","svid":"${SVID}","grants":[{"target":"orders-db","access":"read"}],"maxDurationSeconds":900}`;

  it('parses strictly, then validates with the schema', () => {
    expect(parseJsonDetail(TaskStartedSchema, good, 'Task Started')).toMatchObject({
      taskId: 't-1',
      grants: [{ target: 'orders-db', access: 'read' }],
    });
    expect(() =>
      parseJsonDetail(TaskStartedSchema, good.replace('"taskId":"t-1"', '"taskId":"t-1","taskId":"t-2"'), 'Task Started'),
    ).toThrow(/^Task Started: duplicate key taskId;/);
    expect(() => parseJsonDetail(TaskStartedSchema, good.replace('"orders-db"', '"Orders DB"'), 'Task Started')).toThrow(
      /^Task Started: grants\[0\]\.target/,
    );
  });
});
