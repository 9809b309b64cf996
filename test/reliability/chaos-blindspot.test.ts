import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { runChaos } from '../../chaos/chaos.ts';
import type { ChaosResult } from '../../chaos/chaos.ts';
import { demoPostgres } from '../../shared/targets/postgres/local.ts';
import { READ, ROLE_PATTERN } from './support.ts';

/*
 * The chaos checker must see what the driver cannot (issue 13 §3). A planted violation: right
 * after issue, the role is renamed and a session logs in under the new name with the issued
 * password. The driver's revoke drops a role of the old name (none), matches sessions by that name
 * or by oid once dropped (the renamed role still exists, so its usename is not NULL) and verifies
 * `rejected`; counting by `usename ~ '^tl_'` finds nothing either. The old checker passed this
 * run. The new one matches by the oid it read itself at issue and re-checks every proof with its
 * own SQL, so the run must fail, naming the planted task.
 */

const planted: { taskId?: string; client?: pg.Client; renamed?: string } = {};
const oldChecker: { verify?: string; sessionsByName?: number; rolesByName?: number; plantedUser?: string } = {};
let result: ChaosResult;

afterAll(async () => {
  await planted.client?.end().catch(() => undefined);
});

describe('chaos checker: a session the driver does not know', () => {
  it('a role renamed after issue, logged in by its new name, fails the run (and the old checks do not see it)', async () => {
    result = await runChaos({
      tasks: 24,
      seed: 4242,
      concurrency: 4,
      rates: {},
      sampleEveryMs: 50,
      plant: async ({ admin, taskId, secret }) => {
        const renamed = `planted_${String(secret.username).slice(3, 11)}`;
        try {
          await admin.query(`ALTER ROLE ${pg.escapeIdentifier(secret.username as string)} RENAME TO ${pg.escapeIdentifier(renamed)}`);
        } catch {
          return false; // this lease already ended under load: plant on the next one
        }
        // SCRAM verifiers survive a rename: the issued password logs in as the new name.
        const c = new pg.Client({
          host: secret.host,
          port: Number(secret.port),
          database: secret.database,
          user: renamed,
          password: secret.password,
        });
        c.on('error', () => undefined);
        await c.connect();
        Object.assign(planted, { taskId, renamed, client: c });
        return true;
      },
      beforeChecks: async ({ rt, broker }) => {
        // What the checker used to do: ask the driver, count sessions and roles by usename.
        const taskId = planted.taskId as string;
        const lease = await rt.ledger.getLease(taskId);
        const cred = lease?.credentials[0];
        const rec = [...broker.recorder.issues.values()].find((r) => r.taskId === taskId);
        const pw = broker.recorder.passwords.get(`${rec?.target}/${rec?.externalId}`)?.at(-1);
        const pgc = demoPostgres(rt);
        oldChecker.verify = await rt.targets.get('orders-db')?.verify({
          taskId,
          grant: cred?.grant ?? READ,
          externalId: rec?.externalId as string,
          metadata: cred?.metadata,
          secret: {
            host: pgc.host,
            port: String(pgc.port),
            database: pgc.database,
            username: rec?.externalId as string,
            password: pw as string,
          },
        });
        const q = async (sql: string) => {
          const r = await planted.client?.query<{ n: number }>(sql, [ROLE_PATTERN]);
          return r?.rows[0]?.n ?? -1;
        };
        oldChecker.sessionsByName = await q('SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename ~ $1');
        oldChecker.rolesByName = await q('SELECT count(*)::int AS n FROM pg_roles WHERE rolname ~ $1');
        // The planted session is still alive after the run, under the role the driver lost.
        oldChecker.plantedUser = (await planted.client?.query<{ u: string }>('SELECT current_user AS u'))?.rows[0]?.u;
      },
    });

    expect(planted.taskId).toBeDefined();
    expect(oldChecker.plantedUser).toBe(planted.renamed);

    // The old checker's view: the driver says rejected, nothing matches by name.
    expect(oldChecker.verify).toBe('rejected');
    expect(oldChecker.sessionsByName).toBe(0);
    expect(oldChecker.rolesByName).toBe(0);

    // The new checker fails the run, on the proof, the sampler and the leftovers, naming the task.
    const failed = result.invariants.filter((i) => !i.ok);
    expect(result.ok).toBe(false);
    const proof = result.invariants.find((i) => i.name.startsWith('every credential that ever existed'));
    expect(proof?.ok).toBe(false);
    expect(proof?.detail).toContain(planted.taskId);
    expect(proof?.detail).toMatch(/backends of its name or oid are alive|a role with its name or oid can log in/);
    const sampled = result.invariants.find((i) => i.name.startsWith('no session sampled'));
    expect(sampled?.ok).toBe(false);
    expect(sampled?.detail).toContain(planted.taskId);
    const left = result.invariants.find((i) => i.name.startsWith('no tasklease role left'));
    expect(left?.ok).toBe(false);
    expect(left?.detail).toMatch(/^1 roles, [1-9]\d* sessions/);
    // Only the planted task is to blame: nothing else in this fault-free run fails.
    expect(failed.map((i) => i.name).sort()).toEqual([proof?.name, sampled?.name, left?.name].sort());
  }, 120_000);
});
