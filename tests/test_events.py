"""gatehouse.events: every delivery form x payload type, identity across wrappers, and malformed input."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from gatehouse.errors import InputError
from gatehouse.events import MAX_PAYLOAD_BYTES, Command, Event, ServiceChange, decode, decode_cloud_event

FIXTURES = Path(__file__).parent / "fixtures" / "events"
P, R, NUM = "shop-prod-417", "europe-west1", "804214596321"
DEPLOYER = f"deployer@{P}.iam.gserviceaccount.com"
AUDIT_TYPE = "google.cloud.audit.log.v1.written"
PUBSUB_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"
V1 = "google.cloud.run.v1.Services."
V2 = "google.cloud.run.v2.Services."
SECRET = f"projects/{NUM}/secrets/apigee-orders-client"


def load(rel: str) -> dict[str, Any]:
    return json.loads((FIXTURES / rel).read_text())


def b64(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.b64encode(raw).decode()


def push(doc: Any, attributes: dict[str, str] | None = None, message_id: str = "101") -> dict[str, Any]:
    message: dict[str, Any] = {
        "data": b64(doc),
        "messageId": message_id,
        "publishTime": "2025-03-14T10:00:00Z",
    }
    if attributes is not None:
        message["attributes"] = attributes
    return {"message": message, "subscription": f"projects/{P}/subscriptions/s"}


def change(service: str, *, id: str, method: str, timestamp: str, **overrides: Any) -> dict[str, Any]:
    expected = {
        "kind": "service-change",
        "project": P,
        "region": R,
        "service": service,
        "change": "upsert",
        "api": "v1",
        "final": True,
        "id": id,
        "method": method,
        "operation_id": None,
        "timestamp": timestamp,
        "principal": DEPLOYER,
        "url": None,
    }
    return expected | overrides


def incident(**fields: Any) -> dict[str, Any]:
    expected = {
        "kind": "incident",
        "incident_id": None,
        "state": "open",
        "project": P,
        "environment": None,
        "proxy": None,
        "metric": None,
        "resource_type": None,
        "policy": None,
        "condition": None,
        "started_at": None,
        "ended_at": None,
        "observed_value": None,
        "threshold_value": None,
        "summary": None,
        "url": None,
        "test": False,
        "org": None,
        "duration": None,
    }
    return expected | fields


def secret_event(event_type: str, **fields: Any) -> dict[str, Any]:
    expected = {
        "kind": "secret-event",
        "event_type": event_type,
        "secret": SECRET,
        "version": None,
        "timestamp": "2025-03-14T02:00:00.402118-07:00",
        "delete_type": None,
        "data_format": "JSON_API_V1",
        "rotation": None,
        "labels": {},
        "annotations": {},
    }
    return expected | fields


ORDERS_URL = "https://orders-api-q3v7xk2mza-ew.a.run.app"
PAYMENTS_URL = "https://payments-q3v7xk2mza-ew.a.run.app"
OP = f"projects/{P}/locations/{R}/operations/"

V1_REPLACE = change(
    "orders-api",
    id="08b82182a8a75536018323dd1429bcf2",
    method=V1 + "ReplaceService",
    timestamp="2025-03-14T10:02:17.903144Z",
    url=ORDERS_URL,
)
SYSTEM_EVENT = change(
    "orders-api",
    id="86482fddc6ad00a4e5fe0c4622ef1ff8",
    method="/Services.CreateService",
    timestamp="2025-03-14T09:27:06.702291Z",
    principal=None,
    url=ORDERS_URL,
)
V2_CREATE_FIRST = change(
    "payments",
    id="5ead98c5f9f7b72b372b59e945dfbf87",
    method=V2 + "CreateService",
    timestamp="2025-03-14T13:09:58.410292Z",
    api="v2",
    final=False,
    operation_id=OP + "0b6b7f1e-6a51-4e0a-9f5e-1d7a2c9e4b30",
)
V2_UPDATE_LAST = change(
    "payments",
    id="53234064b3bec0343d9c0c2cc2a5a68e",
    method=V2 + "UpdateService",
    timestamp="2025-03-15T08:41:49.883120Z",
    api="v2",
    operation_id=OP + "a7c3e2d9-1f40-4c6b-8e25-7b0d9f3a6c18",
    url=PAYMENTS_URL,
)
V2_DELETE_LAST = change(
    "payments",
    id="86b917f65e38d14b40d721877ee37193",
    method=V2 + "DeleteService",
    timestamp="2025-03-16T17:20:09.120876Z",
    api="v2",
    change="delete",
    operation_id=OP + "5e2d8c41-0b7a-4f93-a6d1-3c9f7e2b8a05",
)
FAILED = {
    "kind": "ignored",
    "reason": "failed operation (code 10 ABORTED): Conflict for resource 'orders-api': version "
    "'1741946411021377' was specified but current version is '1741946503384470'.",
}
COMPUTE = {
    "kind": "ignored",
    "reason": "not a Cloud Run entry: serviceName compute.googleapis.com (v1.compute.instances.insert)",
}
JOB = {"kind": "ignored", "reason": "Cloud Run job: google.cloud.run.v2.Jobs.CreateJob"}
PROXY_OPEN = incident(
    incident_id="0.nq4x8k2v1p7c",
    environment="prod",
    proxy="orders-v1",
    metric="apigee.googleapis.com/proxy/latencies",
    resource_type="apigee.googleapis.com/Proxy",
    policy="Apigee p95 latency > 2s",
    condition="orders-v1 p95 latency",
    started_at=1741963860,
    observed_value="2874.113",
    threshold_value="2000",
    summary="Latencies for orders-v1 with metric labels {method=GET} is above the threshold of 2000.000 "
    "with a value of 2874.113.",
    url=f"https://console.cloud.google.com/monitoring/alerting/incidents/0.nq4x8k2v1p7c?project={P}",
    org=P,
    duration=300,
)
TARGET_OPEN = incident(
    incident_id="0.k7d2m9q4w1zx",
    environment="staging",
    proxy="payments-v2",
    metric="apigee.googleapis.com/target/latencies",
    resource_type="apigee.googleapis.com/Proxy",
    policy="Apigee target p95 latency > 1.5s",
    condition="target p95 latency",
    started_at=1741970431,
    observed_value="1902.5",
    threshold_value="1500",
    summary="Target latencies for payments-v2 is above the threshold of 1500.000 with a value of 1902.500.",
    url=f"https://console.cloud.google.com/monitoring/alerting/incidents/0.k7d2m9q4w1zx?project={P}",
    org=P,
    duration=300,
)
SECRET_ROTATE = secret_event(
    "SECRET_ROTATE",
    rotation={"next_rotation_time": "2025-06-12T09:00:00Z", "rotation_period": "7776000s"},
    labels={"gatehouse-rotation": "generated", "team": "payments"},
    annotations={"gatehouse.dev/target": "apigee-app:orders-client", "gatehouse.dev/state": "current"},
)
SECRET_VERSION_ADD = secret_event("SECRET_VERSION_ADD", version=f"{SECRET}/versions/4")
RECONCILE_ONE = {
    "kind": "command",
    "command": "reconcile",
    "mode": "plan",
    "service": f"projects/{P}/locations/{R}/services/orders-api",
    "request_id": "ops-2025-03-14-001",
}
RECONCILE_ALL = {
    "kind": "command",
    "command": "reconcile",
    "mode": "apply",
    "service": "all",
    "request_id": None,
}
ROTATE_ALL = {
    "kind": "command",
    "command": "rotate",
    "mode": "apply",
    "secret": "all",
    "request_id": None,
    "force": False,
}
TICKETS = {"kind": "command", "command": "tickets", "mode": "apply", "request_id": None}

EXPECTED: dict[str, dict[str, Any]] = {
    # bare LogEntries (the body of a binary-mode CloudEvent)
    "audit/v1-create-service.json": change(
        "orders-api",
        id="8d6e7e95cd746bd60c5f68cac94dea18",
        method=V1 + "CreateService",
        timestamp="2025-03-14T09:26:53.482913Z",
    ),
    "audit/v1-replace-service.json": V1_REPLACE,
    "audit/v1-replace-service-no-labels.json": change(
        "billing",
        id="e617539125e0df1343c59dee1ac6fc7a",
        method=V1 + "ReplaceService",
        timestamp="2025-03-14T10:15:40.118720Z",
        project=NUM,
        region="us-central1",
    ),
    "audit/v1-delete-service.json": change(
        "legacy-reports",
        id="2bd77a1000ddac554986ae819a62b711",
        method=V1 + "DeleteService",
        timestamp="2025-03-14T11:40:02.551067Z",
        change="delete",
    ),
    "audit/system-event-create-service-ready.json": SYSTEM_EVENT,
    "audit/v2-create-service-first.json": V2_CREATE_FIRST,
    "audit/v2-create-service-last.json": change(
        "payments",
        id="4c99bb6d0e59ef8b02f682ccf67f0592",
        method=V2 + "CreateService",
        timestamp="2025-03-14T13:10:44.301557Z",
        api="v2",
        operation_id=OP + "0b6b7f1e-6a51-4e0a-9f5e-1d7a2c9e4b30",
        url=PAYMENTS_URL,
    ),
    "audit/v2-update-service-first.json": change(
        "payments",
        id="2c9ccbcebe1ee119fa5ceb569641d895",
        method=V2 + "UpdateService",
        timestamp="2025-03-15T08:41:12.007735Z",
        api="v2",
        final=False,
        operation_id=OP + "a7c3e2d9-1f40-4c6b-8e25-7b0d9f3a6c18",
    ),
    "audit/v2-update-service-last.json": V2_UPDATE_LAST,
    "audit/v2-delete-service-first.json": change(
        "payments",
        id="32c10eabe37dc99f8d003ca435037d14",
        method=V2 + "DeleteService",
        timestamp="2025-03-16T17:20:03.551902Z",
        api="v2",
        change="delete",
        final=False,
        operation_id=OP + "5e2d8c41-0b7a-4f93-a6d1-3c9f7e2b8a05",
    ),
    "audit/v2-delete-service-last.json": V2_DELETE_LAST,
    "audit/v1-replace-service-failed-aborted.json": FAILED,
    "audit/v1-set-iam-policy.json": {
        "kind": "ignored",
        "reason": "not a Cloud Run service method: google.cloud.run.v1.Services.SetIamPolicy",
    },
    "audit/v1-delete-revision.json": {
        "kind": "ignored",
        "reason": "not a Cloud Run service method: google.cloud.run.v1.Revisions.DeleteRevision",
    },
    "audit/v2-create-job.json": JOB,
    "audit/compute-instance-insert-first.json": COMPUTE,
    "audit/k8s-entry-not-audit.json": {
        "kind": "ignored",
        "reason": "not an audit log entry (no protoPayload)",
    },
    # Pub/Sub push envelopes: log sink, notification channel, Secret Manager, commands
    "push/sink-v1-replace-service.json": V1_REPLACE,
    "push/sink-v2-update-service-last.json": V2_UPDATE_LAST,
    "push/sink-system-event.json": SYSTEM_EVENT,
    "push/sink-v1-replace-service-failed.json": FAILED,
    "push/sink-compute-instance-insert.json": COMPUTE,
    "push/incident-apigee-proxy-latency-open.json": PROXY_OPEN,
    "push/secret-rotate.json": SECRET_ROTATE,
    "push/secret-version-add.json": SECRET_VERSION_ADD,
    "push/secret-delete.json": secret_event(
        "SECRET_DELETE", delete_type="REQUESTED", timestamp="2025-03-20T09:45:12.551907-07:00"
    ),
    "push/secret-topic-configured.json": {
        "kind": "ignored",
        "reason": "Secret Manager TOPIC_CONFIGURED test message",
    },
    "push/command-reconcile.json": RECONCILE_ONE,
    "push/command-rotate-scheduler.json": ROTATE_ALL,
    "push/command-tickets.json": TICKETS,
    # structured CloudEvents
    "cloudevent/audit-v1-replace-service.json": V1_REPLACE,
    "cloudevent/audit-v2-create-service-first.json": V2_CREATE_FIRST,
    "cloudevent/audit-v2-create-job.json": JOB,
    "cloudevent/pubsub-sink-v2-delete-service-last.json": V2_DELETE_LAST,
    "cloudevent/pubsub-incident-apigee-target-latency.json": TARGET_OPEN,
    "cloudevent/pubsub-command-reconcile-all.json": RECONCILE_ALL,
    # bare Monitoring notifications (webhook body)
    "incident/apigee-proxy-latency-open.json": PROXY_OPEN,
    "incident/apigee-proxy-latency-closed.json": PROXY_OPEN
    | {
        "state": "closed",
        "ended_at": 1741966320,
        "observed_value": "1411.906",
        "summary": "Latencies for orders-v1 with metric labels {method=GET} returned to normal "
        "with a value of 1411.906.",
    },
    "incident/apigee-target-latency-open.json": TARGET_OPEN,
    "incident/apigee-proxyv2-latency-percentile-open.json": incident(
        incident_id="0.r5s8t1u4v7wy",
        environment="prod",
        proxy="catalog-v3",  # only in the condition filter
        metric="apigee.googleapis.com/proxyv2/latencies_percentile",
        resource_type="apigee.googleapis.com/ProxyV2",
        policy="Apigee p99 latency > 5s",
        condition="catalog-v3 p99",
        started_at=1741975002,
        observed_value="5310",
        threshold_value="5000",
        summary="Latencies percentile for catalog-v3 with metric labels {percentile=p99} is above the "
        "threshold of 5000.000 with a value of 5310.000.",
        url=f"https://console.cloud.google.com/monitoring/alerting/incidents/0.r5s8t1u4v7wy?project={P}",
        org=P,
        duration=300,
    ),
    "incident/uptime-check-open.json": incident(
        incident_id="0.m3n6p9q2r5st",
        resource_type="uptime_url",
        policy="storefront uptime",
        condition="Uptime Health Check on shop-storefront",
        started_at=1741980120,
        summary="An uptime check on Uptime Check URL labels {host=shop.example} is failing.",
        url=f"https://console.cloud.google.com/monitoring/alerting/incidents/0.m3n6p9q2r5st?project={P}",
    ),
    "incident/test-notification.json": incident(
        incident_id="12345",
        metric="test.googleapis.com/metric",
        resource_type="example_resource",
        policy=f"projects/{P}/alertPolicies/4519822716390811247",
        condition="Example condition",
        observed_value="1.0",
        threshold_value="0.5",
        summary="Test Incident",
        url="http://www.example.com",
        test=True,
        duration=0,
    ),
    # the CLI's bare Secret Manager form {"attributes", "data"}
    "secret/rotate-cli.json": SECRET_ROTATE,
    "secret/version-add-cli-base64.json": SECRET_VERSION_ADD,
    # bare commands
    "command/reconcile-one.json": RECONCILE_ONE,
    "command/reconcile-all-apply.json": RECONCILE_ALL,
    "command/rotate-defaults.json": ROTATE_ALL,
    "command/rotate-one-plan.json": {
        "kind": "command",
        "command": "rotate",
        "mode": "plan",
        "secret": SECRET,
        "request_id": "CHG0041877",
        "force": False,
    },
    "command/rotate-force.json": {
        "kind": "command",
        "command": "rotate",
        "mode": "apply",
        "secret": SECRET,
        "request_id": "leak-2026-11",
        "force": True,
    },
    "command/tickets.json": TICKETS,
}

AUDIT_SERVICE_FIXTURES = [
    rel for rel, out in EXPECTED.items() if rel.startswith("audit/") and out["kind"] == "service-change"
]


def test_every_fixture_has_an_expectation() -> None:
    on_disk = {path.relative_to(FIXTURES).as_posix() for path in FIXTURES.rglob("*.json")}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize(("rel", "expected"), EXPECTED.items(), ids=list(EXPECTED))
def test_fixture_decodes_to_expected_event(rel: str, expected: dict[str, Any]) -> None:
    raw = (FIXTURES / rel).read_bytes()
    out = decode(raw).to_dict()
    assert out == expected
    assert next(iter(out)) == "kind"
    json.dumps(out, allow_nan=False)
    # text and already-parsed JSON give the same event as bytes
    assert decode(raw.decode()).to_dict() == expected
    assert decode(MappingProxyType(json.loads(raw))).to_dict() == expected


# ------------------------------------------------------------------------ one entry, many wrappers


def deliveries(entry: dict[str, Any]) -> dict[str, Callable[[], Event]]:
    """Every way the same LogEntry reaches a handler."""
    envelope = push(entry, {"logging.googleapis.com/timestamp": "2025-03-14T10:00:00Z"})
    structured = {
        "specversion": "1.0",
        "type": AUDIT_TYPE,
        "source": f"//cloudaudit.googleapis.com/projects/{P}/logs/activity",
        "id": "ce-1",
        "data": entry,
    }
    ce_attrs = {"type": AUDIT_TYPE, "source": structured["source"], "id": "ce-1", "methodname": "x"}
    published = {"message": envelope["message"], "subscription": envelope["subscription"]}
    raw = json.dumps(entry).encode()
    return {
        "bare": lambda: decode(raw),
        "push": lambda: decode(json.dumps(envelope)),
        "push-redelivered": lambda: decode(push(entry, message_id="999")),
        "cloudevent-structured": lambda: decode(json.dumps(structured)),
        "cloudevent-base64": lambda: decode({**structured, "data": None, "data_base64": b64(entry)}),
        "ff-audit": lambda: decode_cloud_event(ce_attrs, copy.deepcopy(entry)),
        "ff-audit-bytes": lambda: decode_cloud_event(ce_attrs, raw),
        "ff-pubsub": lambda: decode_cloud_event({"type": PUBSUB_TYPE, "id": "9"}, published),
        "messagePublished-body": lambda: decode(published),
        "pull": lambda: decode(raw, attributes={"logging.googleapis.com/timestamp": "x"}),
    }


@pytest.mark.parametrize("rel", AUDIT_SERVICE_FIXTURES)
def test_same_entry_gives_same_event_in_every_wrapper(rel: str) -> None:
    for form, deliver in deliveries(load(rel)).items():
        assert deliver().to_dict() == EXPECTED[rel], form


def test_fixture_wrappers_of_one_entry_share_the_id() -> None:
    ids = {
        decode((FIXTURES / rel).read_bytes()).to_dict()["id"]
        for rel in (
            "audit/v1-replace-service.json",
            "push/sink-v1-replace-service.json",
            "cloudevent/audit-v1-replace-service.json",
        )
    }
    assert ids == {V1_REPLACE["id"]}


def test_id_differs_between_entries_and_between_lro_halves() -> None:
    first = decode(load("audit/v2-update-service-first.json")).to_dict()
    last = decode(load("audit/v2-update-service-last.json")).to_dict()
    assert first["operation_id"] == last["operation_id"]
    assert first["id"] != last["id"]
    other = load("audit/v1-replace-service.json")
    other["insertId"] = "another-insert"
    assert decode(other).to_dict()["id"] != V1_REPLACE["id"]


def test_id_without_insert_id_is_still_stable() -> None:
    entry = load("audit/v1-replace-service.json")
    del entry["insertId"]
    ids = {deliver().to_dict()["id"] for deliver in deliveries(entry).values()}
    assert len(ids) == 1
    assert len(ids.pop()) == 32


# --------------------------------------------------------------------------------- field extraction


def run_entry(**proto: Any) -> dict[str, Any]:
    """A minimal Cloud Run audit entry without resource labels."""
    return {
        "insertId": "abc",
        "logName": f"projects/{P}/logs/cloudaudit.googleapis.com%2Factivity",
        "timestamp": "2025-03-14T10:00:00Z",
        "resource": {"type": "cloud_run_revision"},
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "serviceName": "run.googleapis.com",
        }
        | proto,
    }


@pytest.mark.parametrize(
    ("proto", "where"),
    [
        (
            {"methodName": V1 + "CreateService", "resourceName": f"namespaces/{P}/services/svc-a"}
            | {"resourceLocation": {"currentLocations": ["asia-northeast1"]}},
            (P, "asia-northeast1", "svc-a"),
        ),
        (
            {"methodName": V1 + "CreateService", "resourceName": f"namespaces/{P}/services/svc-a"}
            | {"request": {"region": "us-east4"}, "resourceLocation": {"currentLocations": ["asia-east1"]}},
            (P, "us-east4", "svc-a"),
        ),
        (
            {"methodName": V2 + "CreateService"}
            | {"request": {"parent": f"projects/{P}/locations/me-central2", "serviceId": "svc-b"}},
            (P, "me-central2", "svc-b"),
        ),
        (
            {"methodName": V2 + "UpdateService"}
            | {"request": {"service": {"name": f"projects/{NUM}/locations/us-central1/services/svc-c"}}},
            (NUM, "us-central1", "svc-c"),
        ),
        (
            {
                "methodName": V2 + "DeleteService",
                "request": {"name": f"projects/{P}/locations/{R}/services/svc-d"},
            },
            (P, R, "svc-d"),
        ),
    ],
)
def test_location_falls_back_from_labels_to_resource_name_to_request(
    proto: dict[str, Any], where: tuple[str, str, str]
) -> None:
    out = decode(run_entry(**proto)).to_dict()
    assert (out["project"], out["region"], out["service"]) == where


def test_resource_labels_win_over_resource_name() -> None:
    entry = run_entry(methodName=V1 + "DeleteService", resourceName="namespaces/other-project/services/x")
    entry["resource"]["labels"] = {"project_id": P, "location": R, "service_name": "orders-api"}
    out = decode(entry).to_dict()
    assert (out["project"], out["region"], out["service"]) == (P, R, "orders-api")


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ({"code": 0}, "service-change"),
        ({}, "service-change"),
        ({"message": "Ready condition status changed to True for Service svc-a."}, "service-change"),
        ({"code": 7, "message": "Permission 'run.services.update' denied"}, "ignored"),
        ({"code": 99}, "ignored"),
    ],
)
def test_only_a_nonzero_status_code_is_a_failure(status: dict[str, Any], kind: str) -> None:
    entry = run_entry(
        methodName=V1 + "ReplaceService", resourceName=f"projects/{P}/locations/{R}/services/a1"
    )
    entry["protoPayload"]["status"] = status
    assert decode(entry).to_dict()["kind"] == kind


def test_failure_reason_names_code_and_message_on_one_line() -> None:
    entry = run_entry(methodName=V1 + "CreateService", status={"code": 6, "message": "exists\r\nX-Evil: 1"})
    assert decode(entry).to_dict()["reason"] == "failed operation (code 6 ALREADY_EXISTS): exists X-Evil: 1"


@pytest.mark.parametrize(
    ("operation", "final"),
    [
        (None, True),
        ({"id": "op-1", "producer": "run.googleapis.com", "first": True}, False),
        ({"id": "op-1", "producer": "run.googleapis.com", "first": True, "last": True}, True),
        ({"id": "op-1", "producer": "run.googleapis.com"}, False),
        ({"id": "op-1", "last": True}, True),
    ],
)
def test_final_follows_operation_last(operation: dict[str, Any] | None, final: bool) -> None:
    entry = run_entry(methodName=V2 + "UpdateService", resourceName=f"projects/{P}/locations/{R}/services/a1")
    if operation is not None:
        entry["operation"] = operation
    out = decode(entry).to_dict()
    assert out["final"] is final
    assert out["operation_id"] == (operation or {}).get("id")


@pytest.mark.parametrize(
    "method",
    ["google.cloud.run.v1.Jobs.ReplaceJob", "google.cloud.run.v2.Executions.CancelExecution", "/Jobs.RunJob"],
)
def test_job_methods_are_ignored(method: str) -> None:
    entry = run_entry(methodName=method, resourceName=f"projects/{P}/locations/{R}/jobs/nightly")
    assert decode(entry).to_dict() == {"kind": "ignored", "reason": f"Cloud Run job: {method}"}


def test_job_resource_type_is_ignored_whatever_the_method() -> None:
    entry = run_entry(methodName=V1 + "ReplaceService", resourceName=f"namespaces/{P}/jobs/nightly")
    entry["resource"]["type"] = "cloud_run_job"
    assert decode(entry).to_dict() == {"kind": "ignored", "reason": f"Cloud Run job: {V1}ReplaceService"}


def test_incident_proxy_from_unquoted_filter_and_environment_from_metric_labels() -> None:
    doc = {
        "version": "1.2",
        "incident": {
            "incident_id": "0.x",
            "state": "closed",
            "started_at": "1741963860",
            "resource": {"type": "apigee.googleapis.com/ProxyV2", "labels": {"project_id": P}},
            "metric": {
                "type": "apigee.googleapis.com/proxyv2/latencies_percentile",
                "labels": {"env": "eval"},
            },
            "condition": {"conditionThreshold": {"filter": 'metric.labels.proxy_name = "search.v1"'}},
            "observed_value": 812.5,
        },
    }
    out = decode(doc).to_dict()
    assert (out["project"], out["environment"], out["proxy"]) == (P, "eval", "search.v1")
    assert (out["state"], out["started_at"], out["observed_value"]) == ("closed", 1741963860, "812.5")


def test_pull_subscription_form_takes_data_and_attributes() -> None:
    attrs = {"eventType": "SECRET_VERSION_ADD", "secretId": SECRET, "versionId": f"{SECRET}/versions/4"}
    data = json.dumps({"name": f"{SECRET}/versions/4", "state": "ENABLED"}).encode()
    assert decode(data, attributes=attrs).to_dict() == SECRET_VERSION_ADD | {
        "timestamp": None,
        "data_format": None,
    }
    assert decode(b"", attributes={"eventType": "TOPIC_CONFIGURED"}).to_dict()["kind"] == "ignored"
    assert decode(b"", attributes=attrs).to_dict()["version"] == f"{SECRET}/versions/4"
    assert decode(json.dumps({"command": "tickets"}), attributes={}).to_dict() == TICKETS


def test_functions_framework_pubsub_event_without_subscription() -> None:
    data = {
        "message": {
            "@type": "type.googleapis.com/google.pubsub.v1.PubsubMessage",
            "data": b64({"command": "tickets"}),
        }
    }
    assert decode_cloud_event({"type": PUBSUB_TYPE, "specversion": "1.0"}, data).to_dict() == TICKETS


def test_events_are_frozen() -> None:
    event = decode(load("command/tickets.json"))
    assert isinstance(event, Command)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.mode = "plan"  # type: ignore[misc]
    change_event = decode(load("audit/v1-replace-service.json"))
    assert isinstance(change_event, ServiceChange)
    assert change_event.final is True


# ---------------------------------------------------------------------------------------- commands


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"command": "deploy"}, "unknown command 'deploy' (expected reconcile, rotate, tickets or rollout)"),
        ({"command": 3}, "unknown command 3"),
        ({"command": "reconcile"}, "command 'reconcile' needs 'service'"),
        (
            {"command": "reconcile", "service": "all", "force": True},
            "command 'reconcile' does not take 'force'",
        ),
        ({"command": "tickets", "service": "all"}, "command 'tickets' does not take 'service'"),
        (
            {"command": "reconcile", "service": "all", "mode": "yolo"},
            "command 'reconcile': 'mode': Input should be",
        ),
        (
            {"command": "reconcile", "service": "orders-api"},
            "'service': must be 'all' or projects/P/locations/R/",
        ),
        (
            {"command": "reconcile", "service": f"projects/{P}/locations/{R}/services/Orders_API"},
            "got 'projects/shop-prod-417/locations/europe-west1/services/Orders_API'",
        ),
        ({"command": "reconcile", "service": f"projects/{P}/locations/{R}/services/a\n"}, "must be 'all' or"),
        (
            {"command": "rotate", "secret": "projects/p/secrets/x"},
            "'secret': must be 'all' or projects/P/secrets/S",
        ),
        ({"command": "rotate", "secret": 42}, "command 'rotate': 'secret': Input should be a valid string"),
        ({"command": "tickets", "request_id": "x" * 129}, "'request_id': String should have at most 128"),
        ({"command": "tickets", "request_id": ""}, "'request_id': String should have at least 1"),
        ({"command": "tickets", "mode": ["apply"]}, "command 'tickets': 'mode'"),
    ],
)
def test_command_validation_messages(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as caught:
        decode(doc)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_command_errors_are_all_listed() -> None:
    with pytest.raises(InputError, match=r"needs 'service'; .*does not take 'extra'"):
        decode({"command": "reconcile", "extra": 1})


# --------------------------------------------------------------------------------- malformed input


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


class Weird:
    pass


cyclic: dict[str, Any] = {}
cyclic["self"] = cyclic
BIG_DATA = b"x" * (MAX_PAYLOAD_BYTES + 1)
BIG_ENVELOPE = json.dumps({"message": {"data": b64(BIG_DATA)}})
ENTRY = run_entry(methodName=V1 + "ReplaceService", resourceName=f"projects/{P}/locations/{R}/services/a1")


def with_proto(**changes: Any) -> dict[str, Any]:
    entry = copy.deepcopy(ENTRY)
    entry["protoPayload"].update(changes)
    return entry


MALFORMED: list[tuple[str, Any, str]] = [
    # bytes and text
    ("empty", b"", "payload is empty"),
    ("blank", " \r\n\t", "payload is empty"),
    ("not-json", b"hello", "payload is not JSON: Expecting value at line 1 column 1"),
    ("truncated", b'{"message": {"data": "eyJ', "payload is not JSON: Unterminated string"),
    ("trailing-garbage", b'{"command": "tickets"} x', "payload is not JSON: Extra data at line 1 column 24"),
    ("not-utf8", b'{"a": "\xff\xfe"}', "payload is not UTF-8 (bad byte at offset 7)"),
    ("lone-surrogate-escape", b'{"command": "\\ud800"}', "payload holds a lone surrogate"),
    ("lone-surrogate-text", '{"command": "\ud800"}', "payload holds a lone surrogate"),
    ("nan", b'{"incident": {"observed_value": NaN}}', "payload is not JSON: NaN is not a JSON value"),
    (
        "huge-float",
        b'{"incident": {"observed_value": 1e999}}',
        "payload is not JSON: number 1e999 is out of range",
    ),
    ("huge-int", b'{"a": ' + b"9" * 5000 + b"}", "payload is not JSON: Exceeds the limit (4300 digits)"),
    (
        "over-limit",
        b" " * MAX_PAYLOAD_BYTES + b"{}",
        f"payload is {MAX_PAYLOAD_BYTES + 2} bytes, over the 1 MiB limit",
    ),
    ("over-limit-text", "é" * (MAX_PAYLOAD_BYTES // 2 + 1), "payload is 1048578 bytes, over the 1 MiB limit"),
    ("deep-65", nested(65), "payload is nested deeper than 64 levels"),
    ("deep-100k", b"[" * 100_000, "payload is nested deeper than 64 levels"),
    ("deep-mapping", cyclic, "payload is nested deeper than 64 levels"),
    # top-level type and shape
    ("array", b"[1, 2]", "payload is an array, expected an object"),
    ("number", b"42", "payload is a number, expected an object"),
    ("string", b'"hi"', "payload is a string, expected an object"),
    ("null", b"null", "payload is null, expected an object"),
    ("unknown-shape", b'{"hello": "world"}', "payload has an unrecognised shape (top-level keys: 'hello')"),
    ("legacy-background-event", {"context": {}, "data": {}}, "top-level keys: 'context', 'data'"),
    ("wrong-python-type", 42, "payload is a number, expected bytes, text or a mapping"),
    ("non-str-key", {1: "x"}, "payload has a key that is a number, not a string"),
    ("non-json-value", {"command": {"a", "b"}}, "payload holds a set, not a JSON value"),
    ("object-value", {"command": Weird()}, "payload holds a Weird, not a JSON value"),
    ("nan-in-mapping", {"incident": {"observed_value": float("nan")}}, "payload holds a non-finite number"),
    ("huge-int-in-mapping", {"incident": {"started_at": 10**2000}}, "payload holds an integer too large"),
    # push envelope
    ("message-not-object", {"message": "hi"}, "message is a string, expected an object"),
    ("data-not-string", {"message": {"data": 5}}, "message.data is a number, expected a base64 string"),
    ("data-not-base64", {"message": {"data": "not base64!!"}}, "message.data is not valid base64"),
    ("data-not-json", push(b"hello"), "message.data is not JSON: Expecting value at line 1 column 1"),
    ("data-not-utf8", push(b"\x89PNG\r\n"), "message.data is not UTF-8"),
    ("data-empty-json", push(b"  "), "message.data is empty"),
    ("data-array", push([1]), "message.data is an array, expected an object"),
    ("data-deep", push(json.loads(nested(70))), "message.data is nested deeper than 64 levels"),
    (
        "data-envelope-in-envelope",
        push(push({"command": "tickets"})),
        "message.data has an unrecognised shape",
    ),
    # an already-parsed mapping skips the outer byte limit; its base64 data is still capped once decoded
    ("data-over-limit", {"message": {"data": b64(BIG_DATA)}}, "message.data decodes to 1048577 bytes, over"),
    ("data-way-over-limit", {"message": {"data": "A" * (3 * MAX_PAYLOAD_BYTES)}}, "base64 characters, over"),
    ("envelope-text-over-limit", BIG_ENVELOPE, f"payload is {len(BIG_ENVELOPE)} bytes, over the 1 MiB limit"),
    (
        "attributes-array",
        {"message": {"attributes": [1]}},
        "message.attributes is an array, expected an object",
    ),
    (
        "attribute-number",
        {"message": {"attributes": {"a": 1}}},
        "message.attributes must map strings to strings",
    ),
    ("no-data", {"message": {"messageId": "1"}}, "Pub/Sub message has no data and is not a Secret Manager"),
    ("bare-message-no-data", {"attributes": {"origin": "cli"}}, "Pub/Sub message has no data"),
    # CloudEvent
    (
        "ce-unknown-type",
        {"specversion": "1.0", "type": "google.cloud.storage.object.v1.finalized", "data": {}},
        "unsupported CloudEvent type 'google.cloud.storage.object.v1.finalized'",
    ),
    ("ce-no-type", {"specversion": "1.0", "data": {}}, "CloudEvent has no type"),
    (
        "ce-no-data",
        {"specversion": "1.0", "type": AUDIT_TYPE},
        "google.cloud.audit.log.v1.written CloudEvent has no data",
    ),
    ("ce-data-array", {"specversion": "1.0", "type": AUDIT_TYPE, "data": []}, "CloudEvent data is an array"),
    (
        "ce-data-not-json",
        {"specversion": "1.0", "type": AUDIT_TYPE, "data": "nope"},
        "CloudEvent data is not JSON",
    ),
    (
        "ce-pubsub-no-message",
        {"specversion": "1.0", "type": PUBSUB_TYPE, "data": {"subscription": "s"}},
        "messagePublished CloudEvent data has no message",
    ),
    (
        "ce-bad-base64",
        {"specversion": "1.0", "type": AUDIT_TYPE, "data_base64": "%%%"},
        "data_base64 is not valid base64",
    ),
    # LogEntry
    (
        "proto-array",
        {"logName": "x", "protoPayload": []},
        "LogEntry.protoPayload is an array, expected an object",
    ),
    (
        "no-method",
        {"protoPayload": {"serviceName": "run.googleapis.com"}},
        "LogEntry has no protoPayload.methodName",
    ),
    (
        "method-number",
        with_proto(methodName=5),
        "LogEntry.protoPayload.methodName is a number, expected a string",
    ),
    ("service-name-list", with_proto(serviceName=["run"]), "LogEntry.protoPayload.serviceName is an array"),
    ("status-array", with_proto(status=[10]), "LogEntry.protoPayload.status is an array, expected an object"),
    (
        "code-string",
        with_proto(status={"code": "10"}),
        "LogEntry.protoPayload.status.code is a string, expected an integer",
    ),
    ("code-bool", with_proto(status={"code": True}), "status.code is a boolean, expected an integer"),
    (
        "labels-string",
        ENTRY | {"resource": {"labels": "x"}},
        "LogEntry.resource.labels is a string, expected an object",
    ),
    (
        "label-number",
        ENTRY | {"resource": {"labels": {"location": 1}}},
        "LogEntry.resource.labels.location is a number",
    ),
    ("operation-string", ENTRY | {"operation": "op"}, "LogEntry.operation is a string, expected an object"),
    (
        "operation-last-string",
        ENTRY | {"operation": {"last": "yes"}},
        "LogEntry.operation.last is a string, expected a boolean",
    ),
    (
        "locations-string",
        with_proto(resourceName=None, resourceLocation={"currentLocations": "x"}),
        "currentLocations is not an array",
    ),
    ("request-array", with_proto(request=[]), "LogEntry.protoPayload.request is an array"),
    (
        "no-region",
        with_proto(resourceName=f"namespaces/{P}/services/a1"),
        f"{V1}ReplaceService entry names no region (looked in",
    ),
    ("nothing", with_proto(resourceName=None), "entry names no project or region or service"),
    (
        "url-number",
        with_proto(response={"status": {"url": 1}}),
        "LogEntry.protoPayload.response.status.url is a number",
    ),
    ("insert-id-number", ENTRY | {"insertId": 7}, "LogEntry.insertId is a number, expected a string"),
    # incidents
    ("incident-string", {"incident": "x"}, "incident is a string, expected an object"),
    ("incident-null", {"incident": None, "version": "1.2"}, "incident is null, expected an object"),
    (
        "incident-state",
        {"incident": {"state": "acknowledged"}},
        "incident.state 'acknowledged' is neither open nor closed",
    ),
    (
        "incident-started",
        {"incident": {"started_at": "yesterday"}},
        "incident.started_at is a string, expected epoch seconds",
    ),
    (
        "incident-ended-negative",
        {"incident": {"ended_at": -1}},
        "incident.ended_at is a number, expected epoch seconds",
    ),
    (
        "incident-ended-absurd",
        {"incident": {"ended_at": 2**62}},
        "incident.ended_at 4611686018427387904 is out of range",
    ),
    (
        "incident-started-absurd-text",
        {"incident": {"started_at": str(2**62)}},
        "incident.started_at 4611686018427387904 is out of range",
    ),
    (
        "incident-duration",
        {"incident": {"condition": {"conditionThreshold": {"duration": "five minutes"}}}},
        "incident.condition.conditionThreshold.duration 'five minutes' is not a duration",
    ),
    (
        "incident-org",
        {"incident": {"resource": {"labels": {"org": "Other Org!"}}}},
        "incident.resource.labels.org 'Other Org!' is not a valid Apigee organization",
    ),
    (
        "incident-resource",
        {"incident": {"resource": "apigee"}},
        "incident.resource is a string, expected an object",
    ),
    ("incident-labels", {"incident": {"metric": {"labels": [1]}}}, "incident.metric.labels is an array"),
    (
        "incident-version",
        {"incident": {}, "version": 1.2},
        "notification.version is a number, expected a string",
    ),
    (
        "incident-summary",
        {"incident": {"summary": {"x": 1}}},
        "incident.summary is an object, expected a string",
    ),
    # Secret Manager
    (
        "sm-no-secret-id",
        {"message": {"attributes": {"eventType": "SECRET_ROTATE"}}},
        "Secret Manager SECRET_ROTATE notification has no secretId",
    ),
    (
        "sm-no-event-type",
        {"attributes": {"secretId": SECRET}},
        "Secret Manager notification has no eventType attribute",
    ),
    (
        "sm-unknown-event",
        {"attributes": {"eventType": "SECRET_EXPLODE", "secretId": SECRET}},
        "unknown Secret Manager eventType 'SECRET_EXPLODE'",
    ),
    (
        "sm-bad-secret-id",
        {"attributes": {"eventType": "SECRET_ROTATE", "secretId": "projects/x/secrets/../y"}},
        "secretId 'projects/x/secrets/../y' is not projects/P/secrets/S",
    ),
    (
        "sm-version-mismatch",
        {
            "attributes": {
                "eventType": "SECRET_VERSION_ADD",
                "secretId": SECRET,
                "versionId": f"projects/{NUM}/secrets/other/versions/2",
            }
        },
        "is not a version of",
    ),
    (
        "sm-data-array",
        {"attributes": {"eventType": "SECRET_ROTATE", "secretId": SECRET}, "data": b64([1])},
        "message.data is an array",
    ),
    (
        "sm-labels",
        {"attributes": {"eventType": "SECRET_ROTATE", "secretId": SECRET}, "data": {"labels": {"a": 1}}},
        "message.data.labels must map strings to strings",
    ),
    (
        "sm-rotation",
        {"attributes": {"eventType": "SECRET_ROTATE", "secretId": SECRET}, "data": {"rotation": "daily"}},
        "message.data.rotation is a string",
    ),
]


@pytest.mark.parametrize(
    ("payload", "message"), [(p, m) for _, p, m in MALFORMED], ids=[c for c, _, _ in MALFORMED]
)
def test_malformed_input_raises_a_specific_one_line_input_error(payload: Any, message: str) -> None:
    with pytest.raises(InputError) as caught:
        decode(payload)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text and "\r" not in text
    assert len(text) < 400


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: decode_cloud_event([], {}), "CloudEvent attributes are an array, expected a mapping"),
        (lambda: decode_cloud_event({"type": ["x"]}, {}), "unsupported CloudEvent type ['x']"),
        (lambda: decode_cloud_event({"type": AUDIT_TYPE}, 3), "CloudEvent data is a number, expected bytes"),
        (lambda: decode_cloud_event({"type": PUBSUB_TYPE}, {"message": []}), "message is an array"),
        (lambda: decode(b"{}", attributes=[("a", "b")]), "attributes is an array, expected an object"),  # type: ignore[arg-type]
        (lambda: decode(b"{}", attributes={"a": None}), "attributes must map strings to strings"),  # type: ignore[dict-item]
        (lambda: decode(b"not json", attributes={}), "message.data is not JSON"),
    ],
)
def test_api_misuse_raises_input_error(call: Callable[[], Event], message: str) -> None:
    with pytest.raises(InputError) as caught:
        call()
    assert message in str(caught.value)


# -------------------------------------------------------------------------- hostile identifiers


HOSTILE = "evil<script>\r\n"


def without_labels_and_request_name(entry: dict[str, Any]) -> dict[str, Any]:
    del entry["resource"]["labels"]
    del entry["protoPayload"]["request"]["name"]
    return entry


def hostile_label(key: str, value: str) -> Callable[[dict[str, Any]], Any]:
    return lambda entry: entry["resource"]["labels"].update({key: value})


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            hostile_label("project_id", HOSTILE),
            "resource.labels.project_id 'evil<script>\\r\\n' is not a valid project",
        ),
        (
            hostile_label("location", "europe-west1\n"),
            "resource.labels.location 'europe-west1\\n' is not a valid region",
        ),
        (
            hostile_label("service_name", "../admin"),
            "resource.labels.service_name '../admin' is not a valid service",
        ),
        (
            hostile_label("service_name", "\uff4f\uff52\uff44\uff45\uff52\uff53"),
            "is not a valid service name",
        ),
        (
            lambda e: without_labels_and_request_name(e)["protoPayload"].update(
                resourceName=f"namespaces/{HOSTILE}/services/x"
            ),
            "LogEntry.protoPayload.resourceName 'evil<script>\\r\\n' is not a valid project",
        ),
        (
            lambda e: without_labels_and_request_name(e)["protoPayload"]["request"].update(
                region="us-central1;drop"
            ),
            "LogEntry.protoPayload.request.region 'us-central1;drop' is not a valid region",
        ),
        (
            lambda e: without_labels_and_request_name(e)["protoPayload"].update(
                request={}, resourceLocation={"currentLocations": ["<b>"]}
            ),
            "resourceLocation.currentLocations[0] '<b>' is not a valid region",
        ),
        (
            lambda e: e["protoPayload"]["response"]["status"].update(url="javascript:alert(1)"),
            "response.status.url 'javascript:alert(1)' is not a valid https URL",
        ),
    ],
)
def test_hostile_identifiers_are_rejected_not_passed_on(
    mutate: Callable[[dict[str, Any]], Any], message: str
) -> None:
    entry = load("audit/v1-replace-service.json")
    mutate(entry)
    with pytest.raises(InputError) as caught:
        decode(entry)
    assert message in str(caught.value)


def test_region_falls_back_when_labels_are_gone() -> None:
    entry = load("audit/v1-replace-service.json")
    del entry["resource"]["labels"]
    assert decode(entry).to_dict() == V1_REPLACE
    del entry["protoPayload"]["request"]["name"]
    assert decode(entry).to_dict() == V1_REPLACE  # request.region


def test_hostile_resource_name_is_unused_when_labels_are_complete() -> None:
    entry = load("audit/v1-replace-service.json")
    entry["protoPayload"]["resourceName"] = f"namespaces/{HOSTILE}/services/{HOSTILE}"
    out = decode(entry).to_dict()
    assert (out["project"], out["region"], out["service"]) == (P, R, "orders-api")


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (
            {"proxy_name": "orders v1<img>"},
            "incident.resource.labels.proxy_name 'orders v1<img>' is not a valid Apigee proxy name",
        ),
        (
            {"env": "PROD\r\n"},
            "incident.resource.labels.env 'PROD\\r\\n' is not a valid Apigee environment name",
        ),
        ({"project_id": "../x"}, "is not a valid project"),
    ],
)
def test_hostile_incident_labels_are_rejected(labels: dict[str, str], message: str) -> None:
    doc = load("incident/apigee-proxy-latency-open.json")
    doc["incident"]["resource"]["labels"].update(labels)
    if "project_id" in labels:
        del doc["incident"]["scoping_project_id"]
    with pytest.raises(InputError) as caught:
        decode(doc)
    assert message in str(caught.value)
