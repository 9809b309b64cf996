import type * as z from 'zod';
import { ConfigError } from '../lease/errors.ts';

/* How config problems are reported: each with the path of the bad field and, when the config came from text, its line. */

export type PathKey = PropertyKey;

/** `rules[2].spiffeId`, `targets.orders-db.settings.port`, `trustDomains["example.org"].bundle`. */
export function formatPath(path: readonly PathKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else {
      const s = String(key);
      if (/^[A-Za-z_$][\w$-]*$/.test(s)) out += out ? `.${s}` : s;
      else out += `[${JSON.stringify(s)}]`;
    }
  }
  return out || '(top level)';
}

/** Maps a config path to a line of its source file, when the file was YAML/JSON text. */
export type Locator = (path: readonly PathKey[]) => number | undefined;

// Keeps the source position of a parsed config for the second validation pass, without
// adding fields to the config object itself.
export const locators = new WeakMap<object, { source: string; locate: Locator }>();

export interface Issue {
  path: readonly PathKey[];
  message: string;
}

/** Zod issues as path + message; an unknown key is reported at its own path, where the typo is. */
export function flattenIssues(issues: readonly z.core.$ZodIssue[], prefix: readonly PathKey[] = []): Issue[] {
  return issues.flatMap((issue): Issue[] =>
    issue.code === 'unrecognized_keys'
      ? issue.keys.map((key) => ({ path: [...prefix, ...issue.path, key], message: 'unknown field (check its spelling and indentation)' }))
      : [{ path: [...prefix, ...issue.path], message: issue.message }],
  );
}

/** Says "is required" instead of zod's "expected string, received undefined". */
export const parseErrors: z.core.$ZodErrorMap = (issue) =>
  issue.code === 'invalid_type' && issue.input === undefined ? 'is required' : undefined;

export function configError(source: string, issues: readonly Issue[], locate?: Locator): ConfigError {
  const located = issues.map((issue) => ({ ...issue, line: locate?.(issue.path) }));
  // In file order, like a compiler; issues without a line (missing top-level fields) first.
  located.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
  const lines = located.map((i) => `  ${formatPath(i.path)}: ${i.message}${i.line !== undefined ? ` (line ${i.line})` : ''}`);
  return new ConfigError(`invalid tasklease config ${source}:\n${lines.join('\n')}`);
}
