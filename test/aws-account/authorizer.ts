/**
 * An IAM authorizer in front of moto. moto's own access control ignores `Condition` and session
 * policies, so it cannot tell a revoked STS session from a live one, nor a workload from a stranger
 * behind a secret's resource policy. Every request of the functions, engines and workloads goes
 * through this proxy; for the principals and calls whose allow/deny matters to tasklease it asks
 * `@cloud-copilot/iam-simulate` (identity, session, resource and bus policies, with `aws:userid`,
 * `aws:TokenIssueTime`, `aws:SourceIdentity` and session tags in the request context) and answers
 * AccessDenied itself; everything else is forwarded unchanged.
 *
 * Policy changes take effect after `propagationDelayMs` (IAM is eventually consistent): the
 * authorizer evaluates a role against the policies it read before a change until the delay has
 * passed, so a revocation's probe is allowed for a while, as in AWS, and verify has to poll.
 *
 * It also records every call (principal, service, operation, parameters) so tests can evaluate
 * the functions' own calls against their deployed role policies (iam.test.ts).
 */
import { randomUUID } from 'node:crypto';
import { createServer, request as httpRequest } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  GetRoleCommand,
  GetRolePolicyCommand,
  GetPolicyCommand,
  GetPolicyVersionCommand,
  IAMClient,
  ListAttachedRolePoliciesCommand,
  ListRolePoliciesCommand,
} from '@aws-sdk/client-iam';
import { DescribeEventBusCommand, EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { DescribeSecretCommand, GetResourcePolicyCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { runSimulation } from '@cloud-copilot/iam-simulate';
import type { Simulation } from '@cloud-copilot/iam-simulate';
import { ACCOUNT, REGION, roleArn } from './config.ts';
import { clientOptions } from './sdk.ts';

/** An STS session the proxy saw being created (AssumeRole through it). */
export interface Session {
  accessKeyId: string;
  roleName: string;
  roleArn: string;
  sessionName: string;
  issuedAt: Date;
  sessionPolicy?: unknown;
  sourceIdentity?: string;
  tags: Record<string, string>;
}

/** One request that passed through. `params`: the query/JSON parameters (may hold secrets: tests only read names). */
export interface Call {
  at: number;
  accessKeyId: string;
  session?: Session;
  service: string;
  operation: string;
  params: Record<string, unknown>;
  status: number;
}

export interface Decision {
  at: number;
  principal: string;
  action: string;
  resource: string;
  result: string;
}

export interface PolicyView {
  roleId: string;
  identityPolicies: { name: string; policy: unknown }[];
}

interface CachedView {
  view: Promise<PolicyView>;
  /** Set when a change was seen: the view is read again once this time has passed. */
  staleAfter?: number;
}

const POLICY_CHANGES = new Set(['PutRolePolicy', 'DeleteRolePolicy', 'AttachRolePolicy', 'DetachRolePolicy']);

function scopeOf(headers: IncomingHttpHeaders): { accessKeyId: string; service: string } {
  const m = /Credential=([^/]+)\/[^/]+\/[^/]+\/([^/]+)\//.exec(String(headers.authorization ?? ''));
  return { accessKeyId: m?.[1] ?? '', service: m?.[2] ?? '' };
}

function parseRequest(headers: IncomingHttpHeaders, body: string): { operation: string; params: Record<string, unknown>; json: boolean } {
  const target = headers['x-amz-target'];
  if (typeof target === 'string') {
    return { operation: target.split('.').pop() ?? '', params: body ? (JSON.parse(body) as Record<string, unknown>) : {}, json: true };
  }
  const form = Object.fromEntries(new URLSearchParams(body));
  return { operation: form.Action ?? '', params: form, json: false };
}

const xmlValue = (xml: string, tag: string) => new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(xml)?.[1];

function sessionTags(params: Record<string, unknown>): Record<string, string> {
  const tags: Record<string, string> = {};
  for (let i = 1; params[`Tags.member.${i}.Key`] !== undefined; i++) {
    tags[String(params[`Tags.member.${i}.Key`])] = String(params[`Tags.member.${i}.Value`]);
  }
  return tags;
}

export class Authorizer {
  readonly sessions = new Map<string, Session>();
  readonly calls: Call[] = [];
  readonly decisions: Decision[] = [];
  /** Policy changes of roles seen through the proxy, with when they take effect here. */
  readonly policyChanges: { at: number; effectiveAt: number; roleName: string; operation: string }[] = [];
  private readonly views = new Map<string, CachedView>();
  private readonly iam: IAMClient;
  private readonly secrets: SecretsManagerClient;
  private readonly events: EventBridgeClient;
  private server!: Server;
  endpoint = '';

  private constructor(
    private readonly upstream: URL,
    /** Roles whose sessions are decided here; other callers (the functions' own roles) are forwarded and recorded. */
    private readonly decidedRoles: Set<string>,
    readonly propagationDelayMs: number,
  ) {
    // The authorizer's own reads go to moto directly, as the account's administrator.
    this.iam = new IAMClient(clientOptions(upstream.origin));
    this.secrets = new SecretsManagerClient(clientOptions(upstream.origin));
    this.events = new EventBridgeClient(clientOptions(upstream.origin));
  }

  static async start(motoEndpoint: string, options: { decidedRoles: string[]; propagationDelayMs: number }): Promise<Authorizer> {
    const a = new Authorizer(new URL(motoEndpoint), new Set(options.decidedRoles), options.propagationDelayMs);
    a.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        a.handle(req.method ?? 'GET', req.url ?? '/', req.headers, Buffer.concat(chunks)).then(
          ({ status, headers, body }) => res.writeHead(status, headers).end(body),
          (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`authorizer: ${(err as Error).message}`),
        );
      });
    });
    await new Promise<void>((resolve) => a.server.listen(0, '127.0.0.1', resolve));
    // `localhost`, like moto's endpoint: the SDKs then address S3 path-style, which moto reads.
    a.endpoint = `http://localhost:${(a.server.address() as AddressInfo).port}`;
    return a;
  }

  close(): Promise<void> {
    this.iam.destroy();
    this.secrets.destroy();
    this.events.destroy();
    return new Promise((resolve) => {
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }

  /** The role's policies as IAM currently enforces them here (the view before a change until its delay passes). */
  policies(roleName: string): Promise<PolicyView> {
    const cached = this.views.get(roleName);
    if (cached && (cached.staleAfter === undefined || Date.now() < cached.staleAfter)) return cached.view;
    const view = this.readPolicies(roleName);
    this.views.set(roleName, { view });
    view.catch(() => this.views.delete(roleName));
    return view;
  }

  private async readPolicies(roleName: string): Promise<PolicyView> {
    const role = (await this.iam.send(new GetRoleCommand({ RoleName: roleName }))).Role!;
    const identityPolicies: PolicyView['identityPolicies'] = [];
    for (const name of (await this.iam.send(new ListRolePoliciesCommand({ RoleName: roleName }))).PolicyNames ?? []) {
      const doc = (await this.iam.send(new GetRolePolicyCommand({ RoleName: roleName, PolicyName: name }))).PolicyDocument!;
      identityPolicies.push({ name, policy: JSON.parse(decodeURIComponent(doc)) });
    }
    for (const p of (await this.iam.send(new ListAttachedRolePoliciesCommand({ RoleName: roleName }))).AttachedPolicies ?? []) {
      const meta = (await this.iam.send(new GetPolicyCommand({ PolicyArn: p.PolicyArn }))).Policy!;
      const version = await this.iam.send(new GetPolicyVersionCommand({ PolicyArn: p.PolicyArn, VersionId: meta.DefaultVersionId }));
      identityPolicies.push({ name: p.PolicyName!, policy: JSON.parse(decodeURIComponent(version.PolicyVersion!.Document!)) });
    }
    return { roleId: role.RoleId!, identityPolicies };
  }

  /** The request context IAM builds for a role session (the keys tasklease's policies use). */
  async contextOf(session: Session): Promise<{ principal: string; context: Record<string, string | string[]> }> {
    const { roleId } = await this.policies(session.roleName);
    return {
      principal: `arn:aws:sts::${ACCOUNT}:assumed-role/${session.roleName}/${session.sessionName}`,
      context: {
        // IAM's aws:userid of a role session is `<role id>:<session name>`, the role id being
        // GetRole's RoleId (moto's AssumedRoleId uses a different random id, so it is built here).
        'aws:userid': `${roleId}:${session.sessionName}`,
        'aws:PrincipalArn': session.roleArn,
        'aws:PrincipalAccount': ACCOUNT,
        'aws:PrincipalType': 'AssumedRole',
        'aws:TokenIssueTime': session.issuedAt.toISOString(),
        'aws:CurrentTime': new Date().toISOString(),
        'aws:EpochTime': String(Math.floor(Date.now() / 1000)),
        'aws:SecureTransport': 'true',
        'aws:RequestedRegion': REGION,
        ...(session.sourceIdentity ? { 'aws:SourceIdentity': session.sourceIdentity } : {}),
        ...Object.fromEntries(Object.entries(session.tags).map(([k, v]) => [`aws:PrincipalTag/${k}`, v])),
      },
    };
  }

  /** iam-simulate's verdict (Allowed, ImplicitlyDenied, ExplicitlyDenied) for a session's call. */
  async evaluate(
    session: Session,
    action: string,
    resource: string,
    extra: {
      context?: Record<string, string | string[]>;
      resourcePolicy?: unknown;
      /** Instead of the role's policies as enforced now (what-if: before a change, or another document). */
      identityPolicies?: PolicyView['identityPolicies'];
    } = {},
  ): Promise<string> {
    const identityPolicies = extra.identityPolicies ?? (await this.policies(session.roleName)).identityPolicies;
    const { principal, context } = await this.contextOf(session);
    const simulation: Simulation = {
      request: { principal, action, resource: { resource, accountId: ACCOUNT }, contextVariables: { ...context, ...extra.context } },
      identityPolicies,
      sessionPolicy: session.sessionPolicy,
      resourcePolicy: extra.resourcePolicy,
      serviceControlPolicies: [],
      resourceControlPolicies: [],
    };
    const r = await runSimulation(simulation, {});
    const result = r.resultType === 'error' ? `Error: ${r.errors.message}` : r.overallResult;
    this.decisions.push({ at: Date.now(), principal, action, resource, result });
    return result;
  }

  /** A decision for the calls that matter, or undefined to forward without one. */
  private async decide(session: Session, service: string, operation: string, params: Record<string, unknown>): Promise<string | undefined> {
    if (service === 'iam' && operation === 'GetRole') {
      return this.evaluate(session, 'iam:GetRole', roleArn(String(params.RoleName)));
    }
    if (service === 'secretsmanager' && operation === 'GetSecretValue') {
      const id = String(params.SecretId);
      const arn = (await this.secrets.send(new DescribeSecretCommand({ SecretId: id })).catch(() => undefined))?.ARN;
      if (!arn) return undefined; // moto answers ResourceNotFound itself
      const policy = (await this.secrets.send(new GetResourcePolicyCommand({ SecretId: arn }))).ResourcePolicy;
      return this.evaluate(session, 'secretsmanager:GetSecretValue', arn, policy ? { resourcePolicy: JSON.parse(policy) } : {});
    }
    if (service === 'events' && operation === 'PutEvents') {
      // AWS authorizes each entry; one denied entry denies the call here (engines put one at a time).
      for (const entry of (params.Entries ?? []) as { EventBusName?: string; Source?: string; DetailType?: string }[]) {
        const name = (entry.EventBusName ?? 'default').split('/').pop()!;
        const bus = await this.events.send(new DescribeEventBusCommand({ Name: name }));
        const result = await this.evaluate(session, 'events:PutEvents', bus.Arn!, {
          // Multivalued keys (ArrayOfString in the IAM catalogue): one value per entry.
          context: { 'events:detail-type': [entry.DetailType ?? ''], 'events:source': [entry.Source ?? ''] },
          ...(bus.Policy ? { resourcePolicy: JSON.parse(bus.Policy) } : {}),
        });
        if (result !== 'Allowed') return result;
      }
      return 'Allowed';
    }
    return undefined;
  }

  private async handle(
    method: string,
    path: string,
    headers: IncomingHttpHeaders,
    body: Buffer,
  ): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> {
    const { accessKeyId, service } = scopeOf(headers);
    const text = service === 's3' ? '' : body.toString('utf8');
    const { operation, params, json } = service === 's3' ? { operation: method, params: {}, json: false } : parseRequest(headers, text);
    const session = this.sessions.get(accessKeyId);
    const call: Call = { at: Date.now(), accessKeyId, service, operation, params, status: 0 };
    if (session) call.session = session;
    this.calls.push(call);

    if (session && this.decidedRoles.has(session.roleName)) {
      const result = await this.decide(session, service, operation, params);
      if (result !== undefined && result !== 'Allowed') {
        call.status = json ? 400 : 403;
        const message = `User: arn:aws:sts::${ACCOUNT}:assumed-role/${session.roleName}/${session.sessionName} is not authorized to perform: ${service}:${operation} (${result}, decided by iam-simulate)`;
        return json
          ? {
              status: 400,
              headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': randomUUID() },
              body: Buffer.from(JSON.stringify({ __type: 'AccessDeniedException', message })),
            }
          : {
              status: 403,
              headers: { 'content-type': 'text/xml' },
              body: Buffer.from(
                `<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>${message}</Message></Error><RequestId>${randomUUID()}</RequestId></ErrorResponse>`,
              ),
            };
      }
    }

    const response = await this.forward(method, path, headers, body);
    call.status = response.status;
    if (response.status === 200 && service === 'sts' && operation === 'AssumeRole')
      this.noteSession(params, response.body.toString('utf8'));
    if (response.status === 200 && service === 'iam' && POLICY_CHANGES.has(operation)) {
      const roleName = String(params.RoleName);
      const now = Date.now();
      this.policyChanges.push({ at: now, effectiveAt: now + this.propagationDelayMs, roleName, operation });
      const cached = this.views.get(roleName);
      if (cached) cached.staleAfter = now + this.propagationDelayMs;
    }
    return response;
  }

  private noteSession(params: Record<string, unknown>, xml: string): void {
    const accessKeyId = xmlValue(xml, 'AccessKeyId');
    const arn = String(params.RoleArn);
    if (!accessKeyId) return;
    this.sessions.set(accessKeyId, {
      accessKeyId,
      roleArn: arn,
      roleName: arn.split('/').pop()!,
      sessionName: String(params.RoleSessionName),
      issuedAt: new Date(),
      ...(params.Policy ? { sessionPolicy: JSON.parse(String(params.Policy)) } : {}),
      ...(params.SourceIdentity ? { sourceIdentity: String(params.SourceIdentity) } : {}),
      tags: sessionTags(params),
    });
  }

  private forward(
    method: string,
    path: string,
    headers: IncomingHttpHeaders,
    body: Buffer,
  ): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const req = httpRequest(
        { host: this.upstream.hostname, port: this.upstream.port, method, path, headers: { ...headers, host: this.upstream.host } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const out: Record<string, string> = {};
            for (const [k, v] of Object.entries(res.headers)) {
              if (v !== undefined && k !== 'transfer-encoding' && k !== 'connection') out[k] = Array.isArray(v) ? v.join(', ') : v;
            }
            resolve({ status: res.statusCode ?? 502, headers: out, body: Buffer.concat(chunks) });
          });
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }
}
