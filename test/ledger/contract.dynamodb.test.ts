import { afterAll, beforeAll } from 'vitest';
import { startTestDynalite } from '../support/dynalite.ts';
import type { TestDynalite } from '../support/dynalite.ts';
import { ledgerContract } from './contract.ts';

let dyn: TestDynalite;

beforeAll(async () => {
  dyn = await startTestDynalite();
});

afterAll(async () => {
  await dyn?.close();
});

ledgerContract('DynamoDB (dynalite)', { create: async (options) => (await dyn.newLedger(options)).ledger });
