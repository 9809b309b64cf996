import fc from 'fast-check';
import { z } from 'zod';

/**
 * fast-check arbitraries derived from the contract's zod schemas, through their JSON Schema
 * (z.toJSONSchema: the same document engines get), so a schema change changes the generators.
 * Covers what the contract uses: objects, arrays, strings with length and pattern, integers,
 * numbers, enums, booleans. Strings are kept short; samples are filtered through the schema itself.
 */

interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  minItems?: number;
  maxItems?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  enum?: unknown[];
  anyOf?: JsonSchema[];
  const?: unknown;
}

const MAX_STRING = 48;
const MAX_ITEMS = 6;

function stringArbitrary(s: JsonSchema): fc.Arbitrary<string> {
  const min = s.minLength ?? 0;
  const max = Math.max(min, Math.min(s.maxLength ?? MAX_STRING, MAX_STRING));
  if (!s.pattern) return fc.string({ minLength: min, maxLength: max });
  const re = new RegExp(s.pattern, 'u');
  // Unicode property classes (\p{…}) are beyond stringMatching: draw graphemes and keep the matches.
  const base = s.pattern.includes('\\p{')
    ? fc.string({ unit: 'grapheme', minLength: min, maxLength: max })
    : fc.stringMatching(new RegExp(s.pattern));
  return base.map((x) => x.slice(0, s.maxLength ?? x.length)).filter((x) => x.length >= min && re.test(x));
}

export function arbitraryFromJsonSchema(s: JsonSchema): fc.Arbitrary<unknown> {
  if (s.enum) return fc.constantFrom(...s.enum);
  if ('const' in s) return fc.constant(s.const);
  if (s.anyOf) return fc.oneof(...s.anyOf.map(arbitraryFromJsonSchema));
  switch (s.type) {
    case 'object': {
      const props = Object.entries(s.properties ?? {}).map(([k, v]) => [k, arbitraryFromJsonSchema(v)] as const);
      return fc.record(Object.fromEntries(props), { requiredKeys: s.required ?? [] });
    }
    case 'array':
      return fc.array(arbitraryFromJsonSchema(s.items ?? {}), {
        minLength: s.minItems ?? 0,
        maxLength: Math.min(s.maxItems ?? MAX_ITEMS, MAX_ITEMS),
      });
    case 'string':
      return stringArbitrary(s);
    case 'integer':
      return fc.integer({ min: s.minimum ?? Number.MIN_SAFE_INTEGER, max: s.maximum ?? Number.MAX_SAFE_INTEGER });
    case 'number':
      return fc.double({ min: s.minimum ?? -1e12, max: s.maximum ?? 1e12, noNaN: true });
    case 'boolean':
      return fc.boolean();
    default:
      return fc.anything();
  }
}

/** Values the schema accepts, generated from its JSON Schema and confirmed by the schema itself. */
export function validDetails<T>(schema: z.ZodType<T>): fc.Arbitrary<T> {
  const json = z.toJSONSchema(schema, { target: 'draft-2020-12', unrepresentable: 'any' }) as JsonSchema;
  return arbitraryFromJsonSchema(json).filter((v) => schema.safeParse(v).success) as fc.Arbitrary<T>;
}

/** The keys of an object schema and which of them are required. */
export function keysOf(schema: z.ZodType): { all: string[]; required: string[] } {
  const json = z.toJSONSchema(schema, { target: 'draft-2020-12', unrepresentable: 'any' }) as JsonSchema;
  return { all: Object.keys(json.properties ?? {}), required: json.required ?? [] };
}

function nested(depth: number, leaf: unknown, asArray: boolean): unknown {
  let v: unknown = leaf;
  for (let i = 0; i < depth; i++) v = asArray ? [v] : { a: v };
  return v;
}

/** Field values an attacker or a buggy engine might send in place of a good one. */
export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 1e308, -0),
  fc.integer().map(String), // numbers as strings
  fc.constantFrom('600', '1e3', '0x258', ' 600 ', ''),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 20 }), // any code points, lone surrogates included
  fc.constantFrom(
    '\uD800',
    'a\uDC00b',
    '\u0000',
    'line\nbreak',
    '\u202Eevil',
    "x'; DROP ROLE postgres; --",
    '../../etc/passwd',
    'a#b',
    'A/B',
  ),
  fc.uint8Array({ minLength: 1, maxLength: 12 }).map((b) => Buffer.from([0xff, ...b]).toString('utf8')), // invalid UTF-8, decoded
  fc.constant(Buffer.from([0xc3, 0x28, 0xff])), // raw bytes
  fc.integer({ min: 10_000, max: 300_000 }).map((n) => 'x'.repeat(n)), // oversized
  fc.array(fc.anything({ maxDepth: 2 }), { maxLength: 4 }),
  fc.object({ maxDepth: 2 }),
  fc.integer({ min: 1_000, max: 50_000 }).map((d) => nested(d, 'deep', false)), // deep nesting
  fc.integer({ min: 1_000, max: 50_000 }).map((d) => nested(d, 'deep', true)),
);

/** Keys that pollute prototypes when merged carelessly, plus near-miss spellings of real keys. */
export const hostileKey = fc.constantFrom(
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  'valueOf',
  'TaskId',
  'task_id',
  'grants ',
  '',
  '\uD800',
  'k'.repeat(5_000),
);

/** Adds `key` as an own property even when it is `__proto__` (as JSON.parse does). */
export function withOwnKey(obj: Record<string, unknown>, key: string, value: unknown): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...obj };
  Object.defineProperty(copy, key, { value, enumerable: true, configurable: true, writable: true });
  return copy;
}
