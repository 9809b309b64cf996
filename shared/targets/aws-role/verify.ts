import type { VerifyContext, VerifyResult } from '../../lease/ports.ts';
import { runProbe } from './probes.ts';
import { sessionExpiry } from './role.ts';
import type { AwsRoleTarget } from './role.ts';

/** Clock slack when bounding a session by its intent's time. */
const INTENT_SLACK_MS = 5 * 60_000;

/** Expired is rejected; otherwise the probe, made with the session's own credentials, decides. */
export async function verifySession(t: AwsRoleTarget, ctx: VerifyContext): Promise<VerifyResult> {
  const now = t.now();
  const expiresAt = sessionExpiry(ctx);
  if (expiresAt !== undefined && expiresAt <= now) return 'rejected';
  // Nothing is known of the session (an ambiguous AssumeRole failure): none issued after the
  // intent can outlive the longest session STS would grant, plus clock slack.
  if (
    expiresAt === undefined &&
    ctx.intentAt !== undefined &&
    ctx.intentAt + t.settings.maxSessionSeconds * 1000 + INTENT_SLACK_MS <= now
  ) {
    return 'rejected';
  }
  if (t.refused.has(ctx.externalId) && !ctx.metadata?.sessionName) return 'rejected';
  const s = ctx.secret;
  if (!s?.accessKeyId || !s.secretAccessKey || !s.sessionToken) return 'inconclusive';
  return runProbe(t.probe, { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey, sessionToken: s.sessionToken });
}
