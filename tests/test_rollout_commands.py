"""The rollout verbs on the commands topic: decoded strictly, run by the reconcile job."""

from __future__ import annotations

import json

import pytest

from gatehouse import commands, events
from gatehouse.config import Settings
from gatehouse.errors import InputError


class Jobs:
    def __init__(self) -> None:
        self.started: list[tuple[str, dict[str, str]]] = []

    def run_job(self, job: str, env: dict[str, str]) -> str:
        self.started.append((job, env))
        return f"{job}/executions/1"


@pytest.mark.parametrize("action", ["tick", "advance", "resume", "abort"])
def test_each_rollout_verb_starts_the_reconcile_job_in_its_mode(action: str) -> None:
    command = events.decode(json.dumps({"command": "rollout", "action": action}))
    assert isinstance(command, events.Command) and command.action == action
    assert command.to_dict()["action"] == action
    jobs = Jobs()
    settings = Settings(reconcile_job="projects/p/locations/r/jobs/reconcile")
    summary = commands.run(command, settings, registrar=lambda: None, jobs=lambda: jobs)
    assert jobs.started == [(settings.reconcile_job, {"GATEHOUSE_RECONCILE_MODE": f"rollout-{action}"})]
    assert summary["command"] == "rollout"


def test_the_scheduled_tick_is_the_default_and_bad_verbs_are_refused() -> None:
    command = events.decode(json.dumps({"command": "rollout"}))
    assert isinstance(command, events.Command) and command.action == "tick"
    for bad in ({"command": "rollout", "action": "deploy-everything"}, {"command": "rollout", "force": True}):
        with pytest.raises(InputError):
            events.decode(json.dumps(bad))
    assert "action" not in events.decode(json.dumps({"command": "tickets"})).to_dict()
