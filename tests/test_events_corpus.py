"""Conformance of gatehouse.events against the real public payloads in ../shared/corpus (skipped without it).

Every file must decode or raise InputError. Files that are only fragments (attribute maps, decoded
``data`` bodies, non-JSON Pub/Sub test messages) are expected to be InputError; the point is no crash.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from gatehouse.errors import InputError
from gatehouse.events import decode, decode_cloud_event

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
if not CORPUS.is_dir():
    pytest.skip(f"no corpus at {CORPUS}", allow_module_level=True)

FOLDERS = ("audit-logs", "pubsub-scheduler", "monitoring-incidents", "secret-manager")
FILES = sorted(path for folder in FOLDERS for path in (CORPUS / folder).glob("*.json"))
ERROR = "InputError"
NOT_JSON_DATA = "message.data is not JSON"  # Pub/Sub samples whose data is plain text ("test message 3")


def change(project: str, region: str, service: str, **fields: Any) -> dict[str, Any]:
    return {"kind": "service-change", "project": project, "region": region, "service": service} | fields


# file -> the fields its event must have, or the start of its InputError message
EXPECTED: dict[str, dict[str, Any] | tuple[str, str]] = {
    # audit-logs
    "run-v1-CreateService-panther-test.json": change(
        "some-project", "us-west1", "cloudrun-exfil", change="upsert", api="v1", final=True, url=None
    ),
    "run-v1-ReplaceService-success.json": change(
        "test-project-1234",
        "asia-northeast1",
        "cloud-run-slack-bot",
        change="upsert",
        api="v1",
        final=True,
        url="https://cloud-run-slack-bot-cznco5ogzq-an.a.run.app",
        principal="masatonaka1989@gmail.com",
    ),
    "run-v1-DeleteService-gcloud-read.json": change(
        "gpc-tp3",
        "europe-west1",
        "hello-test",
        change="delete",
        api="v1",
        final=True,
        timestamp="2025-11-09T19:20:31.137517Z",  # only inside protoPayload in this capture
    ),
    "run-system_event-CreateService-ready.json": change(
        "gpc-tp3",
        "europe-west1",
        "run-cloud",
        change="upsert",
        api="v1",
        final=True,
        method="/Services.CreateService",
        url="https://run-cloud-uwwndjnimq-ew.a.run.app",
        principal=None,
    ),
    "run-v1-ReplaceService-failure-conflict.json": {
        "kind": "ignored",
        "reason": "failed operation (code 10 ABORTED): Conflict for resource 'cloud-run-slack-bot': version "
        "'1715037503975865' was specified but current version is '1715042482762098'.",
    },
    "run-v1-CreateService-already-exists-PARTIAL-panther-test.json": {
        "kind": "ignored",
        "reason": "failed operation (code 6 ALREADY_EXISTS): Resource 'cloudrun-exfil' already exists.",
    },
    "lro-operation-first-compute-insert.json": {"kind": "ignored"},
    "lro-operation-last-compute-delete.json": {"kind": "ignored"},
    "cloudevent-structured-audit-log-v1-written-bigquery.json": {
        "kind": "ignored",
        "reason": "not a Cloud Run entry: serviceName bigquery.googleapis.com (jobservice.jobcompleted)",
    },
    "cloudevent-data-LogEntryData-pubsubCreateTopic.json": {"kind": "ignored"},
    # pubsub-scheduler
    "push-envelope-logging-sink-auditlog-grafana-alloy.json": {
        "kind": "ignored",
        "reason": "not an audit log entry (no protoPayload)",  # a k8s_cluster entry without protoPayload
    },
    "push-envelope-docs-example.json": (ERROR, NOT_JSON_DATA),
    "cloudevent-structured-pubsub-messagePublished.json": (ERROR, NOT_JSON_DATA),
    "cloudevent-data-MessagePublishedData-text.json": (ERROR, NOT_JSON_DATA),
    "ff-conformance-pubsub_text-cloudevent-input.json": (ERROR, NOT_JSON_DATA),
    "ff-python-pubsub_text-cloudevent-output.json": (ERROR, NOT_JSON_DATA),
    "ff-conformance-legacy_pubsub-legacy-input.json": (ERROR, "payload has an unrecognised shape"),
    "ff-python-pubsub_text-legacy-input.json": (ERROR, "payload has an unrecognised shape"),
    "cloudevent-data-SchedulerJobData-simple.json": (ERROR, "payload has an unrecognised shape"),
    # monitoring-incidents
    "incident-test-notification-version-test-with-apigee_url.json": {
        "kind": "incident",
        "incident_id": "12345",
        "state": "open",  # sent as "OPEN"
        "project": "12345",
        "started_at": None,  # sent as 0
        "ended_at": None,
        "proxy": None,
        "test": True,
    },
    "incident-v1.2-closed-gce-cpu-docs-example.json": {
        "kind": "incident",
        "incident_id": "0.opqiw61fsv7p",
        "state": "closed",
        "project": "internal-project",
        "metric": "compute.googleapis.com/instance/cpu/utilization",
        "started_at": 1577840461,
        "ended_at": 1577877071,
        "observed_value": "0.835",
        "threshold_value": "0.9",
        "test": False,
    },
    "incident-v1.2-open-gce-cpu-cloudforet.json": {
        "kind": "incident",
        "incident_id": "0.mtdi83m6w8ao",
        "state": "open",
        "ended_at": None,
        "condition": "VM Instance - CPU utilization",
        "test": False,
    },
    "incident-v1.2-open-uptime-check.json": {
        "kind": "incident",
        "incident_id": "0.ligwyr056k2l",
        "state": "open",
        "project": None,  # older payloads carry no scoping project
        "resource_type": "uptime_url",
        "ended_at": None,
    },
    "incident-v1.2-closed-uptime-check.json": {
        "kind": "incident",
        "incident_id": "0.ligwyr056k2l",
        "state": "closed",
        "ended_at": 1579559552,
    },
    # secret-manager
    "push-envelope-SECRET_ROTATE.json": {
        "kind": "secret-event",
        "event_type": "SECRET_ROTATE",
        "secret": "projects/1019248048664/secrets/key-logistic",  # data.name says .../keys: attributes win
        "timestamp": "2023-03-23T00:05:00.122233-07:00",
        "data_format": "JSON_API_V1",
        "rotation": {"next_rotation_time": "2023-09-21T22:25:00Z", "rotation_period": "15780000s"},
    },
    "push-envelope-SECRET_CREATE.json": {
        "kind": "secret-event",
        "event_type": "SECRET_CREATE",
        "secret": "projects/1019248048664/secrets/key-logistic",
    },
    # bare attribute maps and decoded data bodies: meaningful only as a pair (see below)
    "SECRET_DELETE-attributes.json": (ERROR, "payload has an unrecognised shape"),
    "SECRET_VERSION_ADD-attributes.json": (ERROR, "payload has an unrecognised shape"),
    "SECRET_VERSION_ADD-data-SecretVersion.json": (ERROR, "payload has an unrecognised shape"),
    "decoded-data-Secret-from-SECRET_ROTATE.json": (ERROR, "payload has an unrecognised shape"),
}


def test_every_corpus_file_has_an_expectation() -> None:
    assert {path.name for path in FILES} == set(EXPECTED)


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_corpus_file_decodes_or_is_rejected_cleanly(path: Path) -> None:
    expected = EXPECTED[path.name]
    try:
        out = decode(path.read_bytes()).to_dict()
    except InputError as exc:
        assert isinstance(expected, tuple), f"unexpected InputError: {exc}"
        assert str(exc).startswith(expected[1])
        return
    assert isinstance(expected, dict), f"expected InputError, got {out}"
    json.dumps(out, allow_nan=False)
    assert {key: out[key] for key in expected} == expected


def test_pull_form_pairs_attribute_fragments_with_their_data() -> None:
    folder = CORPUS / "secret-manager"
    attrs = json.loads((folder / "SECRET_VERSION_ADD-attributes.json").read_text())
    data = (folder / "SECRET_VERSION_ADD-data-SecretVersion.json").read_bytes()
    out = decode(data, attributes=attrs).to_dict()
    assert (out["event_type"], out["version"]) == (
        "SECRET_VERSION_ADD",
        "projects/827585297303/secrets/test-secret/versions/2",  # the data says versions/1: attributes win
    )
    deleted = decode(b"", attributes=json.loads((folder / "SECRET_DELETE-attributes.json").read_text()))
    assert deleted.to_dict()["event_type"] == "SECRET_DELETE"
    rotated = decode(
        (folder / "decoded-data-Secret-from-SECRET_ROTATE.json").read_bytes(),
        attributes={"eventType": "SECRET_ROTATE", "secretId": "projects/1019248048664/secrets/key-logistic"},
    )
    assert rotated.to_dict()["rotation"] == {
        "next_rotation_time": "2023-09-21T22:25:00Z",
        "rotation_period": "15780000s",
    }


@pytest.mark.parametrize(
    "name", ["run-v1-ReplaceService-success.json", "run-system_event-CreateService-ready.json"]
)
def test_corpus_entry_has_one_id_across_delivery_forms(name: str) -> None:
    entry = json.loads((CORPUS / "audit-logs" / name).read_text())
    data = base64.b64encode(json.dumps(entry).encode()).decode()
    message = {"data": data, "messageId": "1", "publishTime": "2025-01-01T00:00:00Z"}
    ids = {
        decode(entry).to_dict()["id"],
        decode({"message": message, "subscription": "projects/p/subscriptions/s"}).to_dict()["id"],
        decode_cloud_event({"type": "google.cloud.audit.log.v1.written"}, entry).to_dict()["id"],
        decode_cloud_event(
            {"type": "google.cloud.pubsub.topic.v1.messagePublished"}, {"message": message}
        ).to_dict()["id"],
    }
    assert len(ids) == 1
