"""What each kind of failure inside a function means for Pub/Sub: permanent failures are
acknowledged (returning), never raised into a redelivery loop; transient ones are raised."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from gatehouse import commands
from gatehouse.entrypoints import functions
from gatehouse.errors import PermanentError, TransientError

FIXTURES = Path(__file__).parent / "fixtures" / "events" / "cloudevent"


def cloud_event(name: str) -> CloudEvent:
    doc = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    data = doc.pop("data")
    return CloudEvent(doc, data)


class Raising:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def reconcile_service(self, *_: Any, **__: Any) -> Any:
        raise self.exc


@pytest.fixture(autouse=True)
def settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(functions, "_settings", lambda: SimpleNamespace(max_event_age_seconds=3600))


def test_a_permanent_failure_of_a_service_event_is_acknowledged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(functions, "_registrar", lambda: Raising(PermanentError("no Apigee org configured")))
    assert functions.on_run_event(cloud_event("audit-v1-replace-service.json")) is None


def test_a_transient_failure_of_a_fresh_service_event_is_redelivered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(functions, "_registrar", lambda: Raising(TransientError("Apigee 503")))
    monkeypatch.setattr(functions, "_age_seconds", lambda _event: 0.0)
    with pytest.raises(TransientError):
        functions.on_run_event(cloud_event("audit-v1-replace-service.json"))


def test_a_permanent_failure_of_a_command_is_acknowledged(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise PermanentError("the reconcile job does not exist")

    monkeypatch.setattr(commands, "run", refuse)
    assert functions.on_command(cloud_event("pubsub-command-reconcile-all.json")) is None
