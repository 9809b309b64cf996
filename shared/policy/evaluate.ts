import { grantKey } from '../events/schemas.ts';
import type { EndDecision, PolicyDecision, PolicyEvaluator, PolicyRequest } from '../lease/ports.ts';
import type { RuleConfig, TaskLeaseConfig } from './config.ts';
import { compilePattern, matchesPattern, parseWorkload } from './pattern.ts';
import type { CompiledPattern } from './pattern.ts';

/*
 * Default-deny policy over the config's rules. Pattern semantics are documented in pattern.ts:
 * exact `spiffe://td/a/b`; prefix `spiffe://td/a/*` (paths under `/a/`, not `/a` itself, not
 * `/ab`); `spiffe://td/*` for every workload of td.
 *
 * Exactly one rule decides: the most specific matching one (exact beats prefix; a longer prefix
 * beats a shorter one). A broader rule is never consulted as a fallback, so a specific rule can
 * narrow what a whole namespace may do. The request is then allowed only if every requested
 * grant is in that rule, the duration is within its maxLeaseSeconds and, when the rule lists
 * initiators, the request's initiator is one of them (exact string match) and proven. Today every
 * initiator is only asserted (the sender's word), so a rule with `initiators` refuses a request
 * that names one (`policy-initiator-unproven`). Otherwise the whole request is denied.
 *
 * `mayEnd` answers who besides the workload may end its tasks: an engine whose SPIFFE ID matches
 * one of its rule's `endedBy` patterns.
 */

interface CompiledRule {
  readonly rule: RuleConfig;
  readonly index: number;
  readonly pattern: CompiledPattern;
  readonly grants: ReadonlySet<string>;
  readonly initiators?: ReadonlySet<string>;
  readonly endedBy: readonly CompiledPattern[];
}

const MAX_LISTED = 10;
const list = (items: readonly string[]): string =>
  items.length <= MAX_LISTED ? items.join(', ') : `${items.slice(0, MAX_LISTED).join(', ')} and ${items.length - MAX_LISTED} more`;

export class ConfigPolicy implements PolicyEvaluator {
  private readonly rules: readonly CompiledRule[];

  constructor(config: Pick<TaskLeaseConfig, 'rules'>) {
    this.rules = config.rules.map((rule, index) => ({
      rule,
      index,
      pattern: compilePattern(rule.spiffeId),
      grants: new Set(rule.grants),
      ...(rule.initiators ? { initiators: new Set(rule.initiators) } : {}),
      endedBy: (rule.endedBy ?? []).map(compilePattern),
    }));
  }

  /** The rule that decides for this workload (most specific match), if any. */
  ruleFor(workload: string): RuleConfig | undefined {
    return this.match(workload)?.rule;
  }

  evaluate(request: PolicyRequest): PolicyDecision {
    const match = this.match(request.workload);
    if (!match) {
      return {
        allowed: false,
        code: 'policy-no-rule',
        message: `no rule matches workload ${request.workload}; add a rule whose spiffeId is this ID or a prefix pattern covering it (spiffe://<trust-domain>/<path>/*)`,
      };
    }
    const { rule, index } = match;
    const where = `rule '${rule.id}' (rules[${index}])`;

    const requested = request.grants.map(grantKey);
    if (requested.length === 0) {
      return {
        allowed: false,
        code: 'policy-grant-not-allowed',
        rule: rule.id,
        message: `the request names no grants; ${where} allows: ${list(rule.grants)}`,
      };
    }
    const notAllowed = [...new Set(requested.filter((g) => !match.grants.has(g)))];
    if (notAllowed.length > 0) {
      return {
        allowed: false,
        code: 'policy-grant-not-allowed',
        rule: rule.id,
        message:
          `grant${notAllowed.length > 1 ? 's' : ''} ${list(notAllowed)} not allowed for ${request.workload} by ${where}, ` +
          `which allows: ${list(rule.grants)}; request only those, or add the grant to rules[${index}].grants. No grant was issued.`,
      };
    }

    const duration = request.durationSeconds;
    if (!Number.isFinite(duration) || duration <= 0 || duration > rule.maxLeaseSeconds) {
      return {
        allowed: false,
        code: 'policy-duration-exceeded',
        rule: rule.id,
        message:
          `requested duration ${duration}s exceeds the ${rule.maxLeaseSeconds}s limit of ${where}; ` +
          `request at most ${rule.maxLeaseSeconds}s (maxDurationSeconds) or raise rules[${index}].maxLeaseSeconds`,
      };
    }

    if (match.initiators && request.initiator !== undefined && (request.initiatorProof ?? 'asserted') === 'asserted') {
      // An allow-list over a name anyone may write is no check at all: refuse rather than trust it.
      return {
        allowed: false,
        code: 'policy-initiator-unproven',
        rule: rule.id,
        message:
          `${where} allows only listed initiators, but the initiator in Task Started is only asserted by its sender ` +
          `(nothing signed proves it) and tasklease does not verify initiators yet; remove rules[${index}].initiators ` +
          `to allow this workload on its SVID alone (the initiator is still recorded, marked asserted)`,
      };
    }
    if (match.initiators && (request.initiator === undefined || !match.initiators.has(request.initiator))) {
      return {
        allowed: false,
        code: 'policy-initiator-not-allowed',
        rule: rule.id,
        message:
          request.initiator === undefined
            ? `${where} requires an initiator from its allow-list, and the request named none; initiators cannot be proven yet, so remove rules[${index}].initiators`
            : `initiator ${request.initiator} is not in the allow-list of ${where} (${list(rule.initiators ?? [])}); add it to rules[${index}].initiators`,
      };
    }

    return {
      allowed: true,
      rule: rule.id,
      maxLeaseSeconds: rule.maxLeaseSeconds,
      ...(rule.awsPrincipal !== undefined ? { readerPrincipal: rule.awsPrincipal } : {}),
    };
  }

  mayEnd(ender: string, workload: string): EndDecision {
    const match = this.match(workload);
    if (!match) return { allowed: false, message: `no rule matches workload ${workload}, so no engine may end its tasks` };
    const id = parseWorkload(ender);
    if (id && match.endedBy.some((p) => matchesPattern(p, id))) return { allowed: true };
    const where = `rule '${match.rule.id}' (rules[${match.index}])`;
    return {
      allowed: false,
      message:
        `${ender} may not end tasks of ${workload}: only the workload itself, or an engine listed in ${where}.endedBy` +
        (match.rule.endedBy ? ` (${list(match.rule.endedBy)})` : ', which lists none') +
        `; send Task Ended with the workload's own SVID, or add the engine's SPIFFE ID to rules[${match.index}].endedBy`,
    };
  }

  private match(workload: string): CompiledRule | undefined {
    // Parsed strictly once; an invalid ID matches no rule (default deny).
    const id = parseWorkload(workload);
    if (!id) return undefined;
    let best: CompiledRule | undefined;
    for (const r of this.rules) {
      if (!matchesPattern(r.pattern, id)) continue;
      // Patterns are unique (config check), so equal specificity among matches cannot happen;
      // keep the first anyway for a deterministic answer with hand-built configs.
      if (!best || r.pattern.specificity > best.pattern.specificity) best = r;
    }
    return best;
  }
}
