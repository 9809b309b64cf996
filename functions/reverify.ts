/**
 * Re-verify queue → one more revoke-and-verify of a credential not yet proven rejected (IAM
 * propagation, a target outage). The delay is the message's SQS DelaySeconds, never a sleep.
 * When this proves the lease's last open credential, the lease is closed (`Lease Revoked`).
 */
import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import type { Context, SQSEvent } from 'aws-lambda';
import { grantKey } from '../shared/events/schemas.ts';
import { ReverifyMessageSchema } from '../shared/aws/sqs-reverify.ts';
import type { ReverifyMessage } from '../shared/aws/sqs-reverify.ts';
import { logger, metrics, tracer } from './lib/powertools.ts';
import { getRuntime } from './lib/runtime.ts';
import type { Runtime } from './lib/runtime.ts';
import { parseJsonBody, processSqsBatch } from './lib/sqs.ts';

/** States a re-verify may act on: only revocations already under way, never a live credential. */
const REVOCATION_STATES = new Set(['revoking', 'still-valid']);
const SUPERSEDED_SLACK_MS = 1_000;

export async function reverifyOne(rt: Runtime, message: ReverifyMessage): Promise<Record<string, unknown>> {
  const { taskId, grant } = message;
  const now = rt.clock.now();
  if (message.notBefore !== undefined && message.notBefore > now + 1000) {
    // Longer than SQS's 15-minute delay: hop again.
    await rt.reverify.schedule(taskId, grant, message.notBefore - now);
    return { taskId, grant: grantKey(grant), status: 'rescheduled' };
  }
  const found = await rt.ledger.getLease(taskId);
  const cred = found?.credentials.find((c) => grantKey(c.grant) === grantKey(grant));
  if (!found || !cred) return { taskId, grant: grantKey(grant), status: 'unknown-credential' };
  const { lease } = found;
  if (!REVOCATION_STATES.has(cred.state)) return { taskId, grant: grantKey(grant), status: `skipped-${cred.state}` };
  // A later attempt (the reaper, another message) already scheduled the next check: this message
  // is stale. Dropping it keeps one chain of messages per credential instead of one per attempt.
  if (cred.nextCheckAt !== undefined && cred.nextCheckAt > now + SUPERSEDED_SLACK_MS) {
    return { taskId, grant: grantKey(grant), status: 'superseded' };
  }

  const done = await rt.lifecycle.revokeAndVerify(cred, cred.endedAt ?? lease.endedAt ?? now);
  // The last credential of an ending lease proven dead closes the lease (as the reaper does).
  let leaseStatus: string | undefined;
  if (done.state === 'verified' && lease.state === 'ending') {
    leaseStatus = (await rt.lifecycle.endLease(taskId, lease.outcome ?? 'expired', lease.endedAt ?? now)).status;
  }
  return { taskId, grant: grantKey(grant), status: done.state, verifyAttempts: done.verifyAttempts, ...(leaseStatus ? { lease: leaseStatus } : {}) };
}

export const lambdaHandler = async (event: SQSEvent, context: Context) => {
  const rt = getRuntime();
  return processSqsBatch(event, context, async (record) => reverifyOne(rt, parseJsonBody(record.body, ReverifyMessageSchema, 're-verify message')));
};

export const handler = middy(lambdaHandler)
  .use(captureLambdaHandler(tracer, { captureResponse: false }))
  .use(injectLambdaContext(logger))
  .use(logMetrics(metrics, { captureColdStartMetric: true }));
