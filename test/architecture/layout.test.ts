import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TARGET_KINDS } from '../../shared/targets/index.ts';

/* The shape docs/architecture.md promises, checked so that it stays true as the code grows. */

const ROOT = join(import.meta.dirname, '..', '..');
const SOURCE_DIRS = ['infra', 'functions', 'shared', 'local', 'cli', 'report', 'demo', 'chaos', 'bench'];

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const path = join(dir, name);
    if (statSync(join(ROOT, path)).isDirectory()) out.push(...sources(path));
    else if (/\.(ts|mjs|js)$/.test(name)) out.push(path);
  }
  return out;
}

const all = SOURCE_DIRS.flatMap(sources);
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

describe('layout', () => {
  it('keeps every source file under shared/ to about 400 lines', () => {
    const long = all
      .filter((f) => f.startsWith('shared/'))
      .flatMap((f) => {
        const lines = read(f).split('\n').length;
        return lines > 420 ? [`${f}: ${lines}`] : [];
      });
    expect(long).toEqual([]);
  });

  it('names a target kind only inside its own folder (runtimes read the kinds’ declarations)', () => {
    const kinds = TARGET_KINDS.map((k) => k.kind);
    expect(kinds.length).toBeGreaterThan(1);
    // The runtimes and the product code; the demo, chaos and bench drive the demo's database on purpose.
    const checked = all.filter(
      (f) => /^(infra|functions|shared|local|cli|report)\//.test(f) && !kinds.some((k) => f.startsWith(`shared/targets/${k}/`)),
    );
    const found = checked.flatMap((f) => {
      const text = read(f);
      return kinds.filter((k) => text.includes(`'${k}'`) || text.includes(`"${k}"`)).map((k) => `${f}: '${k}'`);
    });
    expect(checked.length).toBeGreaterThan(50);
    expect(found).toEqual([]);
  });

  it('registers each kind folder with one line and gives every kind a folder', () => {
    const folders = readdirSync(join(ROOT, 'shared/targets')).filter((n) => statSync(join(ROOT, 'shared/targets', n)).isDirectory());
    expect(folders.sort()).toEqual(TARGET_KINDS.map((k) => k.kind).sort());
    const registry = read('shared/targets/index.ts');
    for (const folder of folders) expect(registry).toContain(`./${folder}/index.ts`);
  });

  it('cites no design document outside the repository', () => {
    const cites = all.filter((f) => /DESIGN §/.test(read(f)));
    expect(cites).toEqual([]);
  });

  it("lists every folder in the README's folder table", () => {
    const readme = read('README.md');
    const top = readdirSync(ROOT).filter(
      (n) => !n.startsWith('.') && n !== 'node_modules' && n !== 'cdk.out' && statSync(join(ROOT, n)).isDirectory(),
    );
    const shared = readdirSync(join(ROOT, 'shared'))
      .filter((n) => statSync(join(ROOT, 'shared', n)).isDirectory())
      .map((n) => relative(ROOT, join(ROOT, 'shared', n)));
    const missing = [...top.filter((n) => n !== 'shared' && n !== 'test-output'), ...shared].filter(
      (n) => !readme.includes(`| \`${n}\` |`),
    );
    expect(missing).toEqual([]);
  });
});
