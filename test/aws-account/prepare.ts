/**
 * Writes the emulated deployment's config into a work dir: `tsx prepare.ts <dir>`. The ports of
 * the embedded PostgreSQL (standing in for RDS) and of the SPIFFE bundle endpoint are picked here,
 * before synth, because the config (and with it the functions' environment) carries them; the
 * global setup starts both on exactly these ports.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { findFreePort } from '../../shared/targets/local-server.ts';
import { emulatedConfig } from './config.ts';
import type { HarnessPorts } from './config.ts';

const dir = process.argv[2];
if (!dir) throw new Error('usage: prepare.ts <work dir>');
const ports: HarnessPorts = { postgres: await findFreePort(), bundle: await findFreePort() };
writeFileSync(join(dir, 'ports.json'), JSON.stringify(ports));
writeFileSync(join(dir, 'tasklease.config.yaml'), stringify(emulatedConfig(ports)));
