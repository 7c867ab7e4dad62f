"""Rollouts end to end on the local stack (issue 12, "How to show it").

A stack of its own (a rollout changes the fleet's running configuration in Firestore, which every
later registration on a shared stack would render with), started with ``GATEHOUSE_PROFILES_FILE``
pointing at a copy of the shipped profiles: the functions and the jobs the Cloud Run stand-in runs
read it, so changing the copy is a fleet change exactly as a new profiles file is in production.

Services are registered through the Cloud Run stand-in (audit entry -> Pub/Sub -> on_run_event);
ticks are ``{"command": "rollout", "action": "tick"}`` messages on the commands topic, which make
on_command start the reconcile job (a process the Cloud Run stand-in runs); analytics are seeded
in the Apigee stand-in; assertions read the stand-ins over HTTP and the rollout through
``gatehouse rollout status --json``. The bake is 0 (``GATEHOUSE_ROLLOUT_BAKE``,
``GATEHOUSE_ROLLOUT_ANALYTICS_DELAY``): the engine still judges a wave only once its window after
the deploy holds a whole minute, so each wave takes one to two minutes of wall time.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import requests
from google.cloud import run_v2

from gatehouse.local.demo import run_command
from gatehouse.rollouts.engine import after_window_start
from tests.conftest import wait_for
from tests.test_registration_e2e import Fleet as RegistrationFleet

pytestmark = pytest.mark.stack

SHIPPED = resources.files("gatehouse").joinpath("profiles.yaml").read_text(encoding="utf-8")
OLD_KEY, NEW_KEY = "x-api-key", "x-gatehouse-key"
SERVICES = 12
ROLLOUT_ENV = {
    "GATEHOUSE_ROLLOUT_BAKE": "0",
    "GATEHOUSE_ROLLOUT_ANALYTICS_DELAY": "0",
    "GATEHOUSE_ROLLOUT_WAVES": "1,100%",
    "GATEHOUSE_ROLLOUT_MIN_REQUESTS": "50",
}


def _apikey_profile_with(old: str, new: str) -> str:
    """The shipped profiles with ``old`` replaced in the ``apikey`` profile only."""
    start = SHIPPED.index("  apikey:\n")
    end = SHIPPED.index("\n  jwt:\n")
    section = SHIPPED[start:end]
    assert old in section
    return SHIPPED[:start] + section.replace(old, new, 1) + SHIPPED[end:]


@pytest.fixture(scope="module")
def rollout_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from gatehouse.local.stack import down, settings_env, up

    state_dir = tmp_path_factory.mktemp("rollout-stack")
    profiles = state_dir / "profiles.yaml"
    profiles.write_text(SHIPPED)
    extra = {"GATEHOUSE_PROFILES_FILE": str(profiles), **ROLLOUT_ENV}
    state = up(state_dir, extra_env={**extra, "WORKERS": "2"})
    saved = dict(os.environ)
    os.environ.update({**settings_env(state), **extra})
    try:
        yield {**state, "profiles_file": str(profiles), "extra_env": extra}
    finally:
        os.environ.clear()
        os.environ.update(saved)
        down(state_dir)


class Fleet(RegistrationFleet):
    """Registration e2e's hands, plus what a rollout test reads: revisions, deployed bundles."""

    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__(state)
        self.env = state["environment"]

    def create(self, name: str) -> None:
        service = run_v2.Service(
            labels={"apigee-expose": "true", "apigee-profile": "apikey"},
            template=run_v2.RevisionTemplate(containers=[run_v2.Container(image="img:1")]),
        )
        self.client.create_service(parent=self.parent, service=service, service_id=name).result()

    def new_image(self, name: str, image: str) -> None:
        service = self.client.get_service(name=f"{self.parent}/services/{name}")
        service.template.containers[0].image = image
        service.template.revision = ""  # a new revision, named by Cloud Run
        self.client.update_service(service=service).result()

    def deployed(self, proxy: str) -> dict[str, int]:
        r = requests.get(f"{self.apigee}/apis/{proxy}/deployments", timeout=10)
        return {d["environment"]: int(d["revision"]) for d in r.json().get("deployments", [])} if r.ok else {}

    def revisions(self, proxy: str) -> list[str]:
        r = requests.get(f"{self.apigee}/apis/{proxy}", timeout=10)
        return list(r.json().get("revision", [])) if r.ok else []

    def snapshot(self, proxies: list[str]) -> dict[str, tuple[dict[str, int], list[str]]]:
        return {p: (self.deployed(p), self.revisions(p)) for p in proxies}

    def deployed_bundle_text(self, proxy: str) -> str:
        """Every XML file of the revision deployed in the environment (``format=bundle``)."""
        revision = self.deployed(proxy)[self.env]
        r = requests.get(
            f"{self.apigee}/apis/{proxy}/revisions/{revision}", params={"format": "bundle"}, timeout=10
        )
        r.raise_for_status()
        with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
            return "\n".join(archive.read(n).decode() for n in archive.namelist() if n.endswith(".xml"))

    def outcome_after(self, name: str, after: str) -> dict[str, Any] | None:
        from gatehouse.adapters.firestore import FirestoreCoordinator

        found = FirestoreCoordinator(self.project).outcomes(f"{self.parent}/services/{name}")
        return found[0].__dict__ if found and found[0].at >= after else None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _cli(state: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    from gatehouse.local.stack import settings_env

    env = {**os.environ, **settings_env(state), **state["extra_env"]}
    return subprocess.run(
        [sys.executable, "-m", "gatehouse.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def _status(state: dict[str, Any]) -> dict[str, Any]:
    result = _cli(state, "rollout", "status", "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def _rollout(state: dict[str, Any]) -> dict[str, Any]:
    """The current rollout record, straight from the store (cheap enough to poll)."""
    from gatehouse.adapters.firestore import FirestoreRolloutStore

    store = FirestoreRolloutStore(state["project"])
    rid = (store.get("fleet") or {}).get("rollout")
    return (store.get(f"rollout/{rid}") if rid else None) or {}


def _tick_until(
    state: dict[str, Any], done: Any, *, timeout: float, what: str, on_tick: Any = None
) -> dict[str, Any]:
    """Send ticks on the commands topic (each runs the reconcile job to its end) until ``done``
    holds for the rollout record; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        execution = run_command(state, {"command": "rollout", "action": "tick"})
        assert execution.get("succeededCount") == 1, execution
        record = _rollout(state)
        if on_tick is not None:
            on_tick(record)
        if done(record):
            return record
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; rollout: {record}")
        time.sleep(1.0)  # poll interval between ticks (the scheduled tick runs every minute)


def _seed(state: dict[str, Any], records: list[dict[str, Any]]) -> None:
    requests.post(f"{state['apigee']}/_standin/apigee/stats", json=records, timeout=30).raise_for_status()


def _traffic(env: str, proxy: str, at: int, code: int, count: int) -> dict[str, Any]:
    """One stats sample: ``count`` requests answered ``code`` in the minute of ``at`` (epoch s)."""
    return {
        "environment": env,
        "timestamp": at * 1000,
        "dimensions": {"apiproxy": proxy, "response_status_code": str(code)},
        "metrics": {
            "message_count": count,
            "target_error": 0,
            "total_response_time": 40,
            "target_response_time": 30,
        },
    }


def _steady(env: str, proxies: list[str], minutes_before: int, minutes_after: int) -> list[dict[str, Any]]:
    """Healthy traffic (100 requests a minute, all 200) for every proxy around now."""
    minute = int(time.time()) // 60 * 60
    return [
        _traffic(env, p, minute + i * 60 + 5, 200, 100)
        for p in proxies
        for i in range(-minutes_before, minutes_after + 1)
    ]


def _tickets(state: dict[str, Any], label: str) -> list[dict[str, Any]]:
    found = requests.get(
        f"{state['github']}/repos/{state['tracker_repo']}/issues",
        params={"labels": label, "state": "all", "per_page": "100"},
        headers={"Authorization": "Bearer t"},
        timeout=10,
    ).json()
    return [i for i in found if isinstance(i, dict)]


@pytest.fixture(scope="module")
def fleet(rollout_stack: dict[str, Any]) -> dict[str, Any]:
    """Twelve services on the apikey profile, registered through the stack; healthy traffic."""
    f = Fleet(rollout_stack)
    names = [f"ro-{uuid.uuid4().hex[:4]}-{i:02d}" for i in range(SERVICES)]
    for name in names:
        f.create(name)
    proxies = [f.proxy(n) for n in names]
    wait_for(
        lambda: all(f.deployed(p) == {f.env: 1} for p in proxies),
        timeout=120,
        what="twelve proxies registered and deployed",
    )
    _seed(rollout_stack, _steady(f.env, proxies, minutes_before=5, minutes_after=15))
    return {"fleet": f, "names": names, "proxies": proxies}


def test_a_failing_change_halts_after_one_proxy_and_a_deploy_meanwhile_renders_the_running_config(
    rollout_stack: dict[str, Any], fleet: dict[str, Any]
) -> None:
    state, f, proxies = rollout_stack, fleet["fleet"], fleet["proxies"]
    before = f.snapshot(proxies)
    assert all(
        OLD_KEY in f.deployed_bundle_text(p) and NEW_KEY not in f.deployed_bundle_text(p) for p in proxies
    )

    Path(state["profiles_file"]).write_text(_apikey_profile_with(f"header: {OLD_KEY}", f"header: {NEW_KEY}"))
    seeded: dict[str, int] = {}

    def on_tick(record: dict[str, Any]) -> None:
        # the wave-1 proxy answers 401 to every caller once its deploy is done: seed that traffic
        # from the first whole minute after its deploy (what the gate's after-window reads)
        for name, p in (record.get("proxies") or {}).items():
            if p["wave"] == 0 and p.get("deployed_at") and name not in seeded:
                # the engine's own rule: int(t + 59) // 60 * 60 missed a deploy in a minute's first second
                after = after_window_start(p["deployed_at"])
                _seed(state, [_traffic(f.env, name, after + 60 * i + 1, 401, 300) for i in range(3)])
                seeded[name] = after

    record = _tick_until(
        state,
        lambda r: r.get("state") == "halted" and r.get("ticket"),
        timeout=240,
        what="halted",
        on_tick=on_tick,
    )
    wave1 = [n for n, p in record["proxies"].items() if p["wave"] == 0]
    assert len(wave1) == 1 and list(seeded) == wave1
    (changed,) = wave1
    untouched = [p for p in proxies if p != changed]
    assert len(untouched) == SERVICES - 1

    # exactly one proxy was changed, then put back on its previous revision
    deployed, revisions = f.snapshot([changed])[changed]
    assert deployed == before[changed][0] == {f.env: 1}
    assert revisions == ["1", "2"]  # the rollout's revision exists, but is not deployed
    assert record["proxies"][changed]["state"] == "restored"
    assert record["proxies"][changed]["deploys"] == 1
    verdict = record["proxies"][changed]["verdict"]
    assert verdict["result"] == "fail" and "401/403" in verdict["reason"]
    # eleven were never touched: same deployed revision, no new import
    assert f.snapshot(untouched) == {p: before[p] for p in untouched}
    assert all(record["proxies"][p]["state"] == "pending" for p in untouched)

    status = _status(state)
    assert status["rollout"]["state"] == "halted"
    tickets = _tickets(state, "gatehouse-rollout")
    assert len(tickets) == 1
    assert tickets[0]["html_url"] == record["ticket"] or tickets[0]["url"] == record["ticket"]
    assert NEW_KEY in tickets[0]["body"] and changed in tickets[0]["body"]

    # a deploy during the halt, of a service the rollout did not reach: the audit event reaches
    # on_run_event, which renders with the configuration the fleet runs (the old header)
    name = fleet["names"][proxies.index(untouched[0])]
    since = _now()
    f.new_image(name, "img:2")
    wait_for(lambda: f.outcome_after(name, since), timeout=60, what=f"{name}'s redeploy registered")
    text = f.deployed_bundle_text(untouched[0])
    assert OLD_KEY in text and NEW_KEY not in text
    # a sweep during the halt (a fresh job process that reads the new profiles file) redeploys
    # nothing either: the next sweep must not roll the change out behind the rollout's back
    assert run_command(state, {"command": "reconcile", "service": "all"})["succeededCount"] == 1
    assert f.snapshot(untouched) == {p: before[p] for p in untouched}
    assert f.snapshot([changed])[changed] == (before[changed][0], ["1", "2"])
    # and the halted rollout stays halted: ticks redeploy nothing until a person decides
    run_command(state, {"command": "rollout", "action": "tick"})
    assert _rollout(state)["state"] == "halted"
    assert f.snapshot(untouched) == {p: before[p] for p in untouched}
    assert len(_tickets(state, "gatehouse-rollout")) == 1


def test_abort_then_a_healthy_change_goes_through_every_wave(
    rollout_stack: dict[str, Any], fleet: dict[str, Any]
) -> None:
    state, f, proxies = rollout_stack, fleet["fleet"], fleet["proxies"]
    if _rollout(state).get("state") in ("running", "paused", "halted"):
        assert run_command(state, {"command": "rollout", "action": "abort"})["succeededCount"] == 1
        assert _rollout(state)["state"] == "aborted"
    before = f.snapshot(proxies)
    assert all(deployed == {f.env: 1} for deployed, _ in before.values())

    # a harmless change on the same profile: a higher spike-arrest rate
    healthy = _apikey_profile_with("rate: 100ps", "rate: 120ps")
    Path(state["profiles_file"]).write_text(healthy)
    record = _tick_until(
        state, lambda r: r.get("state") in ("completed", "halted", "paused"), timeout=480, what="completed"
    )
    assert record["state"] == "completed", record.get("reason")
    assert record["waves"] == ["1", "100%"]
    waves = sorted({p["wave"] for p in record["proxies"].values()})
    assert waves == [0, 1]
    assert sorted(record["proxies"]) == sorted(proxies)
    assert all(p["state"] == "passed" and p["deploys"] == 1 for p in record["proxies"].values())
    after = f.snapshot(proxies)
    for p in proxies:
        deployed, revisions = after[p]
        # a new revision (registration prunes old undeployed ones, so count by number)
        assert deployed == {f.env: int(revisions[-1])}
        assert int(revisions[-1]) > max(int(r) for r in before[p][1])
        assert "120ps" in f.deployed_bundle_text(p)
    status = _status(state)
    assert status["rollout"]["state"] == "completed"
    assert len(_tickets(state, "gatehouse-rollout")) == 1  # only the failed rollout's
