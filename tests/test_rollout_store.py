"""The rollout store on the Firestore emulator: documents round-trip, and the registrar's resolver
reads the running configuration and the rollout from it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from gatehouse.rollouts.engine import resolver
from gatehouse.rollouts.fleet import FleetConfig, bundle_settings
from gatehouse.rollouts.model import ProxyState, Rollout
from gatehouse.rollouts.waves import Member

pytestmark = pytest.mark.stack

BASE = (
    __import__("importlib.resources")
    .resources.files("gatehouse")
    .joinpath("profiles.yaml")
    .read_text("utf-8")
)


def test_the_store_round_trips_and_feeds_the_resolver(stack: dict[str, Any]) -> None:
    from gatehouse.adapters.firestore import FirestoreRolloutStore

    store = FirestoreRolloutStore(stack["project"], prefix=f"t{uuid.uuid4().hex[:8]}-")
    assert store.get("fleet") is None
    running = FleetConfig(BASE, settings=bundle_settings("gatehouse"))
    target = FleetConfig(
        BASE.replace("header: x-api-key", "header: x-caller-key", 1), settings=running.settings
    )
    rollout = Rollout("r1", running.id, target.id, state="halted")
    member = Member("reached", "projects/p/locations/r/services/a", "apikey", ("prod",), "p")
    rollout.proxies["reached"] = ProxyState(member, 0, "passed", previous={"prod": 3})
    rollout.proxies["later"] = ProxyState(
        Member("later", "projects/p/locations/r/services/b", "apikey", ("prod",), "p"), 1
    )
    for config in (running, target):
        store.put(f"config/{config.id}", config.to_dict())
    store.put(f"rollout/{rollout.id}", rollout.to_dict())
    store.put("fleet", {"running": running.id, "rollout": rollout.id})
    assert Rollout.from_dict(store.get("rollout/r1") or {}).to_dict() == rollout.to_dict()
    pick = resolver(store, target)
    assert pick("reached")[0].get("apikey").auth.key_header == "x-caller-key"
    assert pick("later")[0].get("apikey").auth.key_header == "x-api-key"
    assert pick("never-in-the-rollout")[0].get("apikey").auth.key_header == "x-api-key"


def test_freeze_shows_in_status_and_the_rollout_view_until_unfrozen(stack: dict[str, Any]) -> None:
    import subprocess
    import sys

    cli = [sys.executable, "-m", "gatehouse.cli", "--stack", stack["state_dir"]]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=60, check=False)

    try:
        done = run("freeze", "--until", "2999-01-01T00:00:00Z", "--reason", "release week\x1b[2J")
        assert done.returncode == 0, done.stderr
        status = run("status")
        assert status.returncode == 0, status.stderr
        assert "FROZEN until 2999-01-01" in status.stderr and "\x1b" not in status.stderr
        view = run("rollout", "status")
        assert view.returncode == 0, view.stderr
        assert "FROZEN until 2999-01-01" in view.stdout and "release week" in view.stdout
    finally:
        assert run("unfreeze").returncode == 0
    assert "FROZEN" not in run("status").stderr
    assert "FROZEN" not in run("rollout", "status").stdout
