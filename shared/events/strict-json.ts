/**
 * JSON input that means one thing to every parser. `JSON.parse` keeps the last of two equal keys,
 * other parsers the first, so `{"taskId":"d1","taskId":"d2"}` could lease d2 while an engine ends
 * d1: duplicate keys are refused at any depth, and so is `__proto__` (Object.assign would turn it
 * into a prototype). Reasons name the key path and never quote a value (a value may be an SVID).
 */
import { InvalidEventError } from '../lease/errors.ts';

/** Why a JSON text is refused; `path` is a display path such as `detail.grants[0].target`. */
export interface StrictJsonProblem {
  kind: 'duplicate-key' | 'forbidden-key';
  path: string;
}

type Frame = { kind: 'object'; keys: Set<string>; key: string | undefined; expectKey: boolean } | { kind: 'array'; index: number };

const FORBIDDEN_KEYS = new Set(['__proto__']);
const MAX_KEY_SHOWN = 40;
const PLAIN_KEY = /^[A-Za-z_$][\w$-]*$/;

/**
 * The first duplicate or forbidden key of `text`, or undefined. Call it on text `JSON.parse`
 * accepted: the scan trusts its structure and only tracks keys (on other text its answer means nothing).
 */
export function findKeyProblem(text: string): StrictJsonProblem | undefined {
  const stack: Frame[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const end = endOfString(text, i);
      if (end >= text.length) return undefined;
      const top = stack.at(-1);
      if (top?.kind === 'object' && top.expectKey) {
        // Keys compare after unescaping: "taskId" and "task\u0049d" are the same key.
        const key = JSON.parse(text.slice(i, end + 1)) as string;
        if (FORBIDDEN_KEYS.has(key)) return { kind: 'forbidden-key', path: pathOf(stack, key) };
        if (top.keys.has(key)) return { kind: 'duplicate-key', path: pathOf(stack, key) };
        top.keys.add(key);
        top.key = key;
        top.expectKey = false;
      }
      i = end;
    } else if (c === 0x7b /* { */) {
      stack.push({ kind: 'object', keys: new Set(), key: undefined, expectKey: true });
    } else if (c === 0x5b /* [ */) {
      stack.push({ kind: 'array', index: 0 });
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      const top = stack.at(-1);
      if (top?.kind === 'object') top.expectKey = true;
      else if (top?.kind === 'array') top.index += 1;
    }
  }
  return undefined;
}

/** Index of the closing quote of the string opening at `start`. */
function endOfString(text: string, start: number): number {
  let j = start + 1;
  // Bounded even for text that is not JSON, so a wrong call cannot spin forever.
  for (; j < text.length;) {
    const c = text.charCodeAt(j);
    if (c === 0x22) return j;
    j += c === 0x5c /* \ */ ? 2 : 1;
  }
  return text.length;
}

/**
 * `detail.grants[0].target`. Only identifier-like keys are shown; any other key (a pasted token, a
 * line break that would forge a log line, 100 KB of text) appears as its length alone.
 */
function pathOf(stack: Frame[], last: string): string {
  let out = '';
  const add = (key: string) => {
    out += PLAIN_KEY.test(key) && key.length <= MAX_KEY_SHOWN ? `${out ? '.' : ''}${key}` : `[key of ${key.length} characters]`;
  };
  // Every frame but the innermost contributes the member or element it is in.
  for (let f = 0; f < stack.length - 1; f++) {
    const frame = stack[f]!;
    if (frame.kind === 'array') out += `[${frame.index}]`;
    else add(frame.key ?? '');
  }
  add(last);
  return out;
}

/**
 * `JSON.parse`, refusing duplicate keys at any depth and `__proto__`, with an
 * {@link InvalidEventError} whose reason starts with `what` and never repeats the text.
 */
export function parseJsonStrict(text: string, what: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    // JSON.parse's message quotes the text; keep only the position.
    const at = /at position (\d+)/.exec((err as Error).message)?.[1];
    throw new InvalidEventError(
      `${what}: not JSON (${Buffer.byteLength(text)} bytes${at !== undefined ? `, broken at character ${at}` : ''})`,
    );
  }
  const problem = findKeyProblem(text);
  if (problem?.kind === 'duplicate-key') {
    throw new InvalidEventError(
      `${what}: duplicate key ${problem.path}; each key may appear once (parsers disagree about which copy counts)`,
    );
  }
  if (problem) throw new InvalidEventError(`${what}: key ${problem.path} is not allowed`);
  return value;
}
