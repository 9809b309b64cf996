"""
The emulated AWS account: moto in server mode on 127.0.0.1, with the few fixes the tasklease stack
needs from moto 5.2.5 applied before the first request. Prints `MOTO_PORT=<port>` once listening
and serves until stdin closes or SIGTERM (so it never outlives the test process that started it).

Fixes (each one is a moto gap, not a change to what the stack asks for):
- `Ref` to an AWS::Events::EventBus returned the Python object (the model has no
  physical_resource_id), so every rule on a custom bus failed to create.
- AWS::Events::EventBusPolicy and AWS::SQS::QueuePolicy had no CloudFormation support: the stack's
  bus policy statements and queue policies were dropped. Here they are applied through the same
  backends PutPermission / SetQueueAttributes use, so DescribeEventBus and GetQueueAttributes
  return what the template says (the authorizer evaluates the bus policy read back from there).
- AWS::CloudWatch::Alarm and AWS::Scheduler::Schedule had no CloudFormation support (the
  dashboard's GetAtt of an alarm's Arn then failed the whole stack): created here through the
  PutMetricAlarm / CreateSchedule backends, so DescribeAlarms and GetSchedule read them back.
- A stack created through a change set (what `cdk deploy` does) kept the empty template it was
  created with, so DescribeStacks returned no outputs: the change set's template is given to the
  stack and the outputs recomputed after the change set applies.
- AWS::Lambda::EventInvokeConfig (the reaper's on-failure destination) had no CloudFormation
  support: created through the PutFunctionEventInvokeConfig backend.
- A rule's SQS target received the event without its `account` field (moto's input-template
  parser rebuilds the event from a key list that lacks it), which the functions' envelope schema
  rightly refuses: put back for whole-event deliveries (no InputTransformer).
- moto "runs" SQS event source mappings itself by invoking the function in Docker inside
  SendMessage. The harness's own pollers (lambda-service.ts) are the Lambda service here, so the mappings
  are kept as configuration only and never consume messages.
"""

import json
import signal
import sys
import threading

from moto.cloudformation import models as cfn_models
from moto.core.common_models import CloudFormationModel
from moto.events import models as events_models
from moto.events.models import EventBus, events_backends
from moto.sqs import models as sqs_models
from moto.sqs.models import sqs_backends

EventBus.physical_resource_id = property(lambda self: self.name)  # type: ignore[attr-defined]

_apply_change_set = cfn_models.ChangeSet.apply


def _apply_and_refresh_outputs(self):  # type: ignore[no-untyped-def]
    _apply_change_set(self)
    # The stack was created with an empty template and only its resource map sees the change
    # set's: give it the template too, or the outputs come out of `{}`.
    self.stack.template = self.template
    self.stack.template_dict = self.template_dict
    self.stack.output_map = self.stack._create_output_map()


cfn_models.ChangeSet.apply = _apply_and_refresh_outputs  # type: ignore[method-assign]


_send_to_sqs_queue = events_models.Rule._send_to_sqs_queue


def _send_whole_event_to_sqs(self, resource_id, event, group_id=None):  # type: ignore[no-untyped-def]
    if "detail-type" in event and "version" in event and "account" not in event:
        event = {**event, "account": self.account_id}
    return _send_to_sqs_queue(self, resource_id, event, group_id)


events_models.Rule._send_to_sqs_queue = _send_whole_event_to_sqs  # type: ignore[method-assign]


class _MappingsKeptAsConfig(dict):  # type: ignore[type-arg]
    """Queue.lambda_event_source_mappings that SendMessage never iterates."""

    def items(self):  # type: ignore[override]
        return iter(())


_queue_init = sqs_models.Queue.__init__


def _queue_init_without_invoke(self, *args, **kwargs):  # type: ignore[no-untyped-def]
    _queue_init(self, *args, **kwargs)
    self.lambda_event_source_mappings = _MappingsKeptAsConfig()


sqs_models.Queue.__init__ = _queue_init_without_invoke  # type: ignore[method-assign]


def _bus_name(value: str) -> str:
    return value.split("/")[-1] if value.startswith("arn:") else value


class CfnEventBusPolicy(CloudFormationModel):
    """AWS::Events::EventBusPolicy with a Statement (CDK's form) or the legacy Action/Principal form."""

    # moto files its models by the second part of the module name.
    __module__ = "moto.events.tasklease_harness"

    def __init__(self, bus: str, sid: str) -> None:
        self.bus = bus
        self.sid = sid

    @property
    def physical_resource_id(self) -> str:
        return f"{self.bus}|{self.sid}"

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Events::EventBusPolicy"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return False

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    ):
        props = cloudformation_json["Properties"]
        bus = _bus_name(props.get("EventBusName", "default"))
        sid = props["StatementId"]
        backend = events_backends[account_id][region_name]
        if "Statement" in props:
            statement = dict(props["Statement"])
            statement.setdefault("Sid", sid)
            # Not EventBus.add_policy: it first drops every statement with the same Principal,
            # and the stack's deny statements all name "*".
            backend.describe_event_bus(bus)._statements[sid] = events_models.EventBusPolicyStatement.from_dict(statement)
        else:
            backend.put_permission(bus, props.get("Action"), props.get("Principal"), sid, props.get("Condition"), None)
        return cls(bus, sid)


class CfnQueuePolicy(CloudFormationModel):
    """AWS::SQS::QueuePolicy: the document becomes each queue's Policy attribute."""

    __module__ = "moto.sqs.tasklease_harness"

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SQS::QueuePolicy"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return False

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    ):
        props = cloudformation_json["Properties"]
        backend = sqs_backends[account_id][region_name]
        for url in props["Queues"]:
            backend.set_queue_attributes(url.rstrip("/").split("/")[-1], {"Policy": json.dumps(props["PolicyDocument"])})
        return cls(resource_name)


class _NamedArn:
    """Shared parts; moto finds models among CloudFormationModel's direct subclasses only."""

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Arn"

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return self.arn

    @property
    def physical_resource_id(self) -> str:
        return self.name


class CfnAlarm(_NamedArn, CloudFormationModel):
    __module__ = "moto.cloudwatch.tasklease_harness"

    def __init__(self, name: str, arn: str) -> None:
        self.name = name
        self.arn = arn

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::Alarm"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    ):
        from moto.cloudwatch.models import MetricDataQuery, cloudwatch_backends

        p = cloudformation_json["Properties"]
        name = p.get("AlarmName") or resource_name
        queries = [
            MetricDataQuery(m.get("Id"), m.get("Label"), m.get("Period"), m.get("ReturnData"), m.get("Expression"))
            for m in p.get("Metrics", [])
        ]
        alarm = cloudwatch_backends[account_id][region_name].put_metric_alarm(
            name=name,
            namespace=p.get("Namespace"),
            metric_name=p.get("MetricName"),
            comparison_operator=p.get("ComparisonOperator"),
            evaluation_periods=p.get("EvaluationPeriods"),
            period=p.get("Period"),
            threshold=p.get("Threshold"),
            statistic=p.get("Statistic"),
            description=p.get("AlarmDescription"),
            dimensions=p.get("Dimensions", []),
            alarm_actions=p.get("AlarmActions", []),
            metric_data_queries=queries or None,
            ok_actions=p.get("OKActions", []),
            treat_missing_data=p.get("TreatMissingData"),
        )
        return cls(name, alarm.alarm_arn)


class CfnSchedule(_NamedArn, CloudFormationModel):
    __module__ = "moto.scheduler.tasklease_harness"

    def __init__(self, name: str, arn: str) -> None:
        self.name = name
        self.arn = arn

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Scheduler::Schedule"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    ):
        from moto.scheduler.models import scheduler_backends

        p = cloudformation_json["Properties"]
        name = p.get("Name") or resource_name
        schedule = scheduler_backends[account_id][region_name].create_schedule(
            description=p.get("Description"),
            end_date=p.get("EndDate"),
            flexible_time_window=p.get("FlexibleTimeWindow"),
            group_name=p.get("GroupName"),
            kms_key_arn=p.get("KmsKeyArn"),
            name=name,
            schedule_expression=p.get("ScheduleExpression"),
            schedule_expression_timezone=p.get("ScheduleExpressionTimezone"),
            start_date=p.get("StartDate"),
            state=p.get("State"),
            target=p.get("Target"),
            action_after_completion=None,
        )
        return cls(name, schedule.arn)


class CfnEventInvokeConfig(CloudFormationModel):
    __module__ = "moto.awslambda.tasklease_harness"

    def __init__(self, function_name: str) -> None:
        self.function_name = function_name

    @property
    def physical_resource_id(self) -> str:
        return self.function_name

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Lambda::EventInvokeConfig"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return False

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    ):
        from moto.awslambda.models import lambda_backends

        p = cloudformation_json["Properties"]
        config = {k: p[k] for k in ("DestinationConfig", "MaximumRetryAttempts", "MaximumEventAgeInSeconds") if k in p}
        lambda_backends[account_id][region_name].put_function_event_invoke_config(p["FunctionName"], config)
        return cls(p["FunctionName"])


def main() -> None:
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    assert events_models and CfnEventBusPolicy and CfnQueuePolicy and CfnAlarm and CfnSchedule and CfnEventInvokeConfig
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]) if len(sys.argv) > 1 else 0, verbose=False)
    server.start()
    print(f"MOTO_PORT={server.get_host_and_port()[1]}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait()
    server.stop()


if __name__ == "__main__":
    main()
