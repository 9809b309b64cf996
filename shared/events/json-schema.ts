import * as z from 'zod';
import { CONTRACT_SCHEMAS } from './schemas.ts';

/** JSON Schema text for each contract schema, as checked in under `json-schema/`. */
export function renderJsonSchemas(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, schema] of Object.entries(CONTRACT_SCHEMAS)) {
    const json = z.toJSONSchema(schema, { target: 'draft-2020-12', unrepresentable: 'any' });
    out[name] = `${JSON.stringify({ $id: `https://tasklease.dev/schemas/${name}.schema.json`, ...json }, null, 2)}\n`;
  }
  return out;
}
