"""GATEHOUSE_PROJECTS x GATEHOUSE_REGIONS limit what registration acts on: an event or a command for
a service outside them is acknowledged with the outcome ``out-of-scope`` and a reason, and changes
nothing (no proxy, no run.invoker grant, no status record). With an organization or folder log sink,
events for every project arrive: the scope is the only limit."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from gatehouse import commands, events
from gatehouse.config import Settings
from gatehouse.entrypoints import functions
from gatehouse.profiles import load_profiles
from gatehouse.registration.plan import ServiceRef
from gatehouse.registration.service import Registrar
from tests.registration_fakes import FakeApigee, FakeCloudRun, FakeCoordinator, v2_service

PROJECT, REGION = "shop-prod", "europe-west1"
FOREIGN_PROJECT, FOREIGN_REGION = "someone-else", "us-central1"


def settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {
        "owner_id": "test-owner",
        "apigee_org": "org",
        "proxy_service_account": "proxy@p.iam.gserviceaccount.com",
        "apigee_environments": ["test"],
        "projects": [PROJECT],
        "regions": [REGION],
    }
    return Settings(**{**base, **kw})


class World:
    """Opted-in services everywhere: in scope, in a foreign project, in a foreign region."""

    def __init__(self, **kw: Any) -> None:
        docs = [
            v2_service(PROJECT, REGION, "orders"),
            v2_service(FOREIGN_PROJECT, REGION, "orders"),
            v2_service(PROJECT, FOREIGN_REGION, "orders"),
        ]
        self.settings = settings(**kw)
        self.apigee, self.cloudrun, self.coord = (
            FakeApigee(),
            FakeCloudRun({d["name"]: d for d in docs}),
            FakeCoordinator(),
        )
        self.registrar = Registrar(
            self.settings, self.apigee, self.cloudrun, self.coord, load_profiles(), sleep=lambda s: None
        )

    def calls(self) -> int:
        return sum(self.apigee.calls.values()) + sum(self.cloudrun.calls.values())


def audit_event(project: str, region: str, service: str) -> CloudEvent:
    """A v2 audit entry (operation.last) as a log sink publishes it, pushed by Pub/Sub."""
    name = f"projects/{project}/locations/{region}/services/{service}"
    entry = {
        "insertId": "abc123",
        "logName": f"projects/{project}/logs/cloudaudit.googleapis.com%2Factivity",
        "timestamp": "2026-12-06T07:00:00.000000Z",
        "resource": {
            "type": "cloud_run_revision",
            "labels": {"project_id": project, "location": region, "service_name": service},
        },
        "operation": {"id": f"{name}/operations/1", "producer": "run.googleapis.com", "last": True},
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "serviceName": "run.googleapis.com",
            "methodName": "google.cloud.run.v2.Services.CreateService",
            "resourceName": name,
        },
    }
    data = {"message": {"data": base64.b64encode(json.dumps(entry).encode()).decode(), "messageId": "1"}}
    attributes = {
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/gh/topics/run-events",
        "id": "1",
    }
    return CloudEvent(attributes, data)


def outcome_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if isinstance(getattr(r, "fields", None), dict) and "result" in r.fields  # type: ignore[attr-defined]
    ]


@pytest.mark.parametrize(
    ("project", "region", "why"),
    [(FOREIGN_PROJECT, REGION, "GATEHOUSE_PROJECTS"), (PROJECT, FOREIGN_REGION, "GATEHOUSE_REGIONS")],
)
def test_an_event_outside_the_scope_is_acknowledged_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, project: str, region: str, why: str
) -> None:
    world = World()
    monkeypatch.setattr(functions, "_settings", lambda: world.settings)
    monkeypatch.setattr(functions, "_registrar", lambda: world.registrar)
    with caplog.at_level(logging.INFO):
        functions.on_run_event(audit_event(project, region, "orders"))  # returns: acknowledged
    assert world.calls() == 0, "not even a read of the foreign service"
    assert world.apigee.proxies == {} and world.cloudrun.invokers == {}
    assert world.coord.recorded == {}
    [logged] = outcome_records(caplog)
    assert logged["result"] == "out-of-scope" and why in logged["reason"]

    # the same service in scope is registered (the fakes and the event are not the reason)
    functions.on_run_event(audit_event(PROJECT, REGION, "orders"))
    assert world.coord.recorded[ServiceRef(PROJECT, REGION, "orders").key].result == "registered"
    assert list(world.cloudrun.invokers) == [f"projects/{PROJECT}/locations/{REGION}/services/orders"]


def test_a_reconcile_command_for_a_foreign_project_is_refused_with_a_reason() -> None:
    world = World()
    command = events.Command(
        command="reconcile",
        mode="apply",
        service=f"projects/{FOREIGN_PROJECT}/locations/{REGION}/services/orders",
        request_id="r-1",
    )
    summary = commands.run(command, world.settings, registrar=lambda: world.registrar)
    assert summary["result"] == "out-of-scope"
    assert FOREIGN_PROJECT in summary["reason"] and "GATEHOUSE_PROJECTS" in summary["reason"]
    assert summary["actions"] == []
    assert world.calls() == 0 and world.apigee.proxies == {} and world.cloudrun.invokers == {}
    assert world.coord.recorded == {}


def test_an_empty_scope_admits_nothing_and_a_mapped_project_number_is_in_scope() -> None:
    empty = World(projects=[], regions=[])
    report = empty.registrar.reconcile_service(ServiceRef(PROJECT, REGION, "orders"))
    assert report.outcome.result == "out-of-scope" and empty.calls() == 0
    numbered = settings(project_numbers={PROJECT: "123456789012"})
    assert numbered.out_of_scope("123456789012", REGION) is None
    assert numbered.out_of_scope("999999999999", REGION) is not None
    assert numbered.out_of_scope(PROJECT, REGION) is None
