import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderJsonSchemas } from './json-schema.ts';

const out = join(dirname(fileURLToPath(import.meta.url)), 'json-schema');
mkdirSync(out, { recursive: true });
for (const [name, text] of Object.entries(renderJsonSchemas())) {
  writeFileSync(join(out, `${name}.schema.json`), text);
  console.log(`wrote shared/events/json-schema/${name}.schema.json`);
}
