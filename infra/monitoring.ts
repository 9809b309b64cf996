import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { DIMENSION, METRIC, METRICS_NAMESPACE } from '../shared/metrics/names.ts';

/*
 * Dashboard graphs use SEARCH expressions and alarms use Metrics Insights queries, both keyed
 * only on namespace + metric name. The emitters (Powertools EMF) add a `service` dimension and
 * per-target/reason/workload dimensions; matching on name keeps every dimension set visible
 * (a new target appears without a redeploy) and keeps the alarms independent of them.
 */

export interface TaskLeaseMonitoringProps {
  /** @default 'TaskLease' */
  readonly dashboardName?: string;
  /** Open trust debt older than this raises the open-debt alarm. */
  readonly openDebtObjective: Duration;
  /** How often the reaper publishes open debt; the alarm's period follows it. */
  readonly reaperInterval: Duration;
  /** Dead-letter queues: one alarm each on any visible message. */
  readonly deadLetterQueues: Record<string, sqs.IQueue>;
  /** Work queues shown on the dashboard (depth and oldest message age). */
  readonly workQueues: Record<string, sqs.IQueue>;
  readonly functions: Record<string, lambda.IFunction>;
  /** @default - alarms have no actions */
  readonly alarmTopic?: sns.ITopic;
}

/** One SEARCH expression over every dimension set of a tasklease metric. */
export function searchExpression(metricName: string, stat: string, period: Duration): string {
  return `SEARCH('Namespace="${METRICS_NAMESPACE}" MetricName="${metricName}"', '${stat}', ${period.toSeconds()})`;
}

/** Metrics Insights query aggregating a tasklease metric over all its dimension sets (alarmable). */
export function insightsQuery(fn: 'MAX' | 'SUM', metricName: string): string {
  return `SELECT ${fn}(${metricName}) FROM ${METRICS_NAMESPACE}`;
}

const FIVE_MINUTES = Duration.minutes(5);
const ONE_MINUTE = Duration.minutes(1);

function search(metricName: string, stat: string, label: string, period = FIVE_MINUTES): cloudwatch.MathExpression {
  // The label is a dynamic label: one series per dimension set, named by its interesting dimension.
  return new cloudwatch.MathExpression({ expression: searchExpression(metricName, stat, period), label, period, usingMetrics: {} });
}

const byTarget = (prefix: string): string => `${prefix} \${PROP('Dim.${DIMENSION.target}')}`;

export class TaskLeaseMonitoring extends Construct {
  readonly dashboard: cloudwatch.Dashboard;
  /** Open debt older than the objective. */
  readonly openDebtAlarm: cloudwatch.Alarm;
  /** Any verification that found a revoked credential still usable. */
  readonly stillValidAlarm: cloudwatch.Alarm;
  /** Any revocation that failed (and is being retried). */
  readonly revocationFailuresAlarm: cloudwatch.Alarm;
  /** The reaper (the backstop for lost events) failed. */
  readonly reaperErrorsAlarm: cloudwatch.Alarm;
  /** One alarm per dead-letter queue, keyed like `deadLetterQueues`. */
  readonly deadLetterAlarms: Record<string, cloudwatch.Alarm>;
  readonly alarms: cloudwatch.Alarm[];

  constructor(scope: Construct, id: string, props: TaskLeaseMonitoringProps) {
    super(scope, id);
    const objectiveMs = props.openDebtObjective.toMilliseconds();
    // The reaper publishes open debt once per run: one period must contain at least one run.
    const openDebtPeriod = Duration.minutes(Math.max(1, Math.ceil(props.reaperInterval.toSeconds() / 60)));

    this.openDebtAlarm = new cloudwatch.Alarm(this, 'OpenDebtAlarm', {
      alarmDescription: `Trust debt older than the objective (${props.openDebtObjective.toHumanString()}): a credential whose task ended is still not proven revoked.`,
      metric: new cloudwatch.MathExpression({
        expression: insightsQuery('MAX', METRIC.openDebtOldest),
        label: 'Oldest open debt (ms)',
        period: openDebtPeriod,
        usingMetrics: {},
      }),
      threshold: objectiveMs,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      // No data means no reaper report; the reaper's own error alarm covers a reaper that stopped.
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    this.stillValidAlarm = new cloudwatch.Alarm(this, 'StillValidAlarm', {
      alarmDescription: 'A revoked credential was still accepted by its target system (verification found it usable).',
      metric: new cloudwatch.MathExpression({
        expression: insightsQuery('SUM', METRIC.stillValid),
        label: 'Still-valid verifications',
        period: ONE_MINUTE,
        usingMetrics: {},
      }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    this.revocationFailuresAlarm = new cloudwatch.Alarm(this, 'RevocationFailuresAlarm', {
      alarmDescription: 'A revocation failed on its target and is being retried.',
      metric: new cloudwatch.MathExpression({
        expression: insightsQuery('SUM', METRIC.revocationFailures),
        label: 'Revocation failures',
        period: ONE_MINUTE,
        usingMetrics: {},
      }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    const reaper = props.functions.reaper;
    if (!reaper) throw new Error('TaskLeaseMonitoring: functions.reaper is required');
    this.reaperErrorsAlarm = new cloudwatch.Alarm(this, 'ReaperErrorsAlarm', {
      alarmDescription: 'The reaper failed: lost Task Ended events, stale intents and unverified revocations are not being cleaned up.',
      metric: reaper.metricErrors({ period: openDebtPeriod, statistic: cloudwatch.Stats.SUM }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    this.deadLetterAlarms = {};
    for (const [name, dlq] of Object.entries(props.deadLetterQueues)) {
      this.deadLetterAlarms[name] = new cloudwatch.Alarm(this, `${name}DlqAlarm`, {
        alarmDescription: `A message reached the dead-letter queue ${name}: an event could not be processed and needs attention.`,
        metric: dlq.metricApproximateNumberOfMessagesVisible({ period: ONE_MINUTE, statistic: cloudwatch.Stats.MAXIMUM }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }
    this.alarms = [
      this.openDebtAlarm,
      this.stillValidAlarm,
      this.revocationFailuresAlarm,
      this.reaperErrorsAlarm,
      ...Object.values(this.deadLetterAlarms),
    ];
    if (props.alarmTopic) {
      const action = new cwActions.SnsAction(props.alarmTopic);
      for (const alarm of this.alarms) {
        alarm.addAlarmAction(action);
        alarm.addOkAction(action);
      }
    }

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: props.dashboardName ?? 'TaskLease',
      defaultInterval: Duration.hours(3),
    });
    const pct = (stat: string) => search(METRIC.trustDebt, stat, byTarget(stat));
    this.dashboard.addWidgets(
      new cloudwatch.TextWidget({
        markdown:
          '# tasklease: trust debt\n' +
          '**Trust debt** = verified revoked − task ended (how long a credential stayed usable after its task), ' +
          'measured from the engine’s endedAt or the queue’s arrival time, split into pipeline + revoke + proof. ' +
          '**Avoided debt** = natural expiry − verified revoked (what TTL-only expiry would have left open).',
        width: 24,
        height: 2,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Trust debt per target (ms): p50 / p90 / p99 / max',
        left: [pct('p50'), pct('p90'), pct('p99'), search(METRIC.trustDebt, 'Maximum', byTarget('max'))],
        leftYAxis: { min: 0, label: 'ms', showUnits: false },
        width: 12,
        height: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Open debt: credentials past their task, not yet proven revoked',
        left: [search(METRIC.openDebtCount, 'Maximum', 'open credentials', ONE_MINUTE)],
        right: [search(METRIC.openDebtOldest, 'Maximum', 'oldest (ms)', ONE_MINUTE)],
        leftYAxis: { min: 0, label: 'count', showUnits: false },
        rightYAxis: { min: 0, label: 'ms', showUnits: false },
        rightAnnotations: [
          { value: objectiveMs, label: `objective ${props.openDebtObjective.toHumanString()}`, color: cloudwatch.Color.RED },
        ],
        width: 12,
        height: 8,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        // The part of the debt spent before the broker starts revoking: queueing and delivery (issue 13).
        title: 'Pipeline delay (ms, task ended → revocation starts): p50 / p99',
        left: [search(METRIC.pipelineDelay, 'p50', byTarget('p50')), search(METRIC.pipelineDelay, 'p99', byTarget('p99'))],
        leftYAxis: { min: 0, label: 'ms', showUnits: false },
        width: 12,
        height: 6,
      }),
      new cloudwatch.GraphWidget({
        title: 'Trust debt split (ms, p99): revoke, proof; exposure = task ended → target refuses',
        left: [
          search(METRIC.revokeTime, 'p99', byTarget('revoke p99')),
          search(METRIC.proofTime, 'p99', byTarget('proof p99')),
          search(METRIC.exposure, 'p99', byTarget('exposure p99')),
        ],
        leftYAxis: { min: 0, label: 'ms', showUnits: false },
        width: 12,
        height: 6,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Avoided debt per target (ms): p50 / p99',
        left: [search(METRIC.avoidedDebt, 'p50', byTarget('p50')), search(METRIC.avoidedDebt, 'p99', byTarget('p99'))],
        leftYAxis: { min: 0, label: 'ms', showUnits: false },
        width: 8,
        height: 6,
      }),
      new cloudwatch.GraphWidget({
        title: 'Revocation failures and still-valid verifications',
        left: [
          search(METRIC.revocationFailures, 'Sum', byTarget('failures')),
          search(METRIC.stillValid, 'Sum', byTarget('still valid')),
          search(METRIC.verifyAttempts, 'Maximum', byTarget('max verify attempts')),
        ],
        leftYAxis: { min: 0, showUnits: false },
        width: 8,
        height: 6,
      }),
      new cloudwatch.GraphWidget({
        title: 'Issuance latency (ms): p50 / p99',
        left: [search(METRIC.issuanceLatency, 'p50', 'p50'), search(METRIC.issuanceLatency, 'p99', 'p99')],
        leftYAxis: { min: 0, label: 'ms', showUnits: false },
        width: 8,
        height: 6,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Denials by reason',
        left: [search(METRIC.denials, 'Sum', `\${PROP('Dim.${DIMENSION.reason}')}`)],
        leftYAxis: { min: 0, showUnits: false },
        stacked: true,
        width: 8,
        height: 6,
      }),
      new cloudwatch.GraphWidget({
        title: 'Blast radius per workload: live credentials / distinct targets (peak)',
        left: [search(METRIC.blastRadiusCredentials, 'Maximum', `credentials \${PROP('Dim.${DIMENSION.workload}')}`)],
        right: [search(METRIC.blastRadiusTargets, 'Maximum', `targets \${PROP('Dim.${DIMENSION.workload}')}`)],
        leftYAxis: { min: 0, showUnits: false },
        rightYAxis: { min: 0, showUnits: false },
        width: 8,
        height: 6,
      }),
      new cloudwatch.GraphWidget({
        title: 'Queues: visible messages and oldest message age (s)',
        left: Object.entries(props.workQueues).map(([name, q]) =>
          q.metricApproximateNumberOfMessagesVisible({ label: `${name} visible`, period: ONE_MINUTE, statistic: cloudwatch.Stats.MAXIMUM }),
        ),
        right: Object.entries(props.workQueues).map(([name, q]) =>
          q.metricApproximateAgeOfOldestMessage({ label: `${name} oldest`, period: ONE_MINUTE, statistic: cloudwatch.Stats.MAXIMUM }),
        ),
        width: 8,
        height: 6,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Function errors and throttles',
        left: Object.entries(props.functions).map(([name, fn]) =>
          fn.metricErrors({ label: `${name} errors`, period: ONE_MINUTE, statistic: cloudwatch.Stats.SUM }),
        ),
        right: Object.entries(props.functions).map(([name, fn]) =>
          fn.metricThrottles({ label: `${name} throttles`, period: ONE_MINUTE, statistic: cloudwatch.Stats.SUM }),
        ),
        width: 12,
        height: 6,
      }),
      new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 12, height: 6 }),
    );
  }
}
