"""Edge cases of the rotation protocol against the in-memory fakes: delayed destruction
(``versionDestroyTtl``), a tester that keeps rejecting, forced rotations as leak responses, a secret
named by project id or number, and secrets outside the rotation projects."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import timedelta
from typing import Any, cast

import pytest
from rotation_fakes import World

from gatehouse import commands
from gatehouse.config import Settings
from gatehouse.errors import TransientError
from gatehouse.rotation.job import run
from gatehouse.rotation.ports import VersionState
from gatehouse.rotation.report import render_markdown
from gatehouse.rotation.settings import RotationSettings
from gatehouse.rotation.state import read_state

JOB = "rotator@proj-one.iam.gserviceaccount.com"
SA = "app-one@proj-one.iam.gserviceaccount.com"
KEY = "projects/p1/secrets/app-one-key"
TOKEN = "projects/p1/secrets/api-token"


def settings(holder: str = "exec-1/0", **changes: object) -> RotationSettings:
    return replace(RotationSettings(projects=("p1",), job_identity=JOB, holder=holder), **changes)


def steps(report: Any) -> list[str]:
    return [a.step for t in report.targets for a in t.actions]


# -- 1.3 versionDestroyTtl -------------------------------------------------------------------------


def test_a_delayed_destroy_counts_as_destroyed_and_is_requested_once() -> None:
    world = World()
    world.add_generated_target(TOKEN, value="A" * 16 + "b" * 16)
    world.secret(TOKEN).destroy_ttl = timedelta(days=7)
    assert [t.status for t in run(world.ports(), settings()).targets] == ["rotated"]
    world.clock.advance(timedelta(days=31))  # grace 2 of version 1 is over

    report = run(world.ports(), settings("exec-2/0"))
    (target,) = report.targets
    assert target.status == "maintained", target.reason
    assert steps(report).count("destroy version 1 (grace 2 over)") == 1
    v1 = world.secret(TOKEN).versions[1]
    assert v1.state is VersionState.DISABLED
    assert v1.scheduled_destroy == world.clock.now() + timedelta(days=7)
    assert any("versionDestroyTtl" in n and "counts as destroyed" in n for n in target.notes)
    row = next(v for v in target.versions if v.number == 1)
    assert row.scheduled_destroy == v1.scheduled_destroy
    assert "destruction scheduled for" in render_markdown(report)

    writes = len(world.faults.writes)
    world.clock.advance(timedelta(days=1))
    again = run(world.ports(), settings("exec-3/0"))
    assert [t.status for t in again.targets] == ["unchanged"]
    assert len(world.faults.writes) == writes, "no second destroy while the first one is pending"

    world.clock.advance(timedelta(days=7))  # Secret Manager destroys it
    done = run(world.ports(), settings("exec-4/0"))
    assert [t.status for t in done.targets] == ["maintained"]
    assert steps(done) == ["forget retired version 1 (key deleted, version destroyed)"]
    assert world.secret(TOKEN).versions[1].state is VersionState.DESTROYED
    assert not read_state(world.secret(TOKEN).annotations).retired


# -- 1.13 a tester that keeps rejecting --------------------------------------------------------------


def test_a_tester_that_keeps_rejecting_backs_off_exponentially() -> None:
    world = World()
    world.add_generated_target(TOKEN, value="A" * 16 + "b" * 16)
    attempts: list[int] = []
    backed_off: list[str] = []
    for day in range(20):
        world.sm.corrupt_next_add = True  # every new value is damaged: the test always rejects it
        report = run(world.ports(), settings(f"exec-{day}/0"))
        (target,) = report.targets
        assert target.status == "failed"
        if any(a.step.startswith("generate a value") for a in target.actions):
            attempts.append(day)
            assert "failed its test" in target.reason
        else:
            backed_off.append(target.reason)
        world.clock.advance(timedelta(days=1))
    assert attempts == [0, 1, 2, 4, 8, 16]
    assert "backing off" in backed_off[0] and "next attempt after" in backed_off[0]
    state = read_state(world.secret(TOKEN).annotations)
    assert state.rejections is not None and state.rejections.count == 6

    world.sm.corrupt_next_add = False
    world.clock.advance(timedelta(days=13))  # day 32: 16 days after the last attempt
    healed = run(world.ports(), settings("exec-99/0"))
    assert [t.status for t in healed.targets] == ["rotated"]
    assert read_state(world.secret(TOKEN).annotations).rejections is None, "a success resets the count"


# -- 2.8 forced rotations are leak responses ---------------------------------------------------------


def test_forced_rotations_revoke_the_replaced_key_and_never_exhaust_the_key_slots() -> None:
    world = World()
    foreign = {world.iam.seed_key(SA, world.clock.now() - timedelta(days=300))[0] for _ in range(3)}
    world.add_sa_key_target(KEY, SA, age=timedelta(days=10))
    assert [t.status for t in run(world.ports(), settings()).targets] == ["maintained"]  # adopted
    for attempt in range(7):
        world.clock.advance(timedelta(hours=1))
        report = run(
            world.ports(), settings(f"exec-{attempt + 2}/0"), secret=KEY, force_before=world.clock.now()
        )
        (target,) = report.targets
        assert target.status == "rotated", (attempt, target.reason)
        assert any("revoked" in s and "forced rotation" in s for s in steps(report))
        keys = world.iam.keys[SA]
        current = read_state(world.secret(KEY).annotations).key_ids[world.secret(KEY).aliases["current"]]
        assert {k for k, key in keys.items() if not key.disabled} == foreign | {current}
        assert len(keys) <= 10
        previous = world.secret(KEY).aliases["previous"]
        assert world.secret(KEY).versions[previous].state is VersionState.DISABLED
        assert world.invariant_problems(KEY) == []
    # a scheduled rotation afterwards is not refused for want of key slots
    world.clock.advance(timedelta(days=91))
    later = run(world.ports(), settings("exec-20/0"), secret=KEY)
    assert [t.status for t in later.targets] == ["rotated"], later.targets[0].reason


# -- 2.7 a forced rotation that crashed -----------------------------------------------------------


def test_a_busy_forced_rotation_is_redelivered_not_acknowledged(monkeypatch: pytest.MonkeyPatch) -> None:
    from gatehouse import runtime

    world = World()
    world.add_sa_key_target(KEY, SA, age=timedelta(days=10))
    run(world.ports(), settings())  # adopt
    world.faults.crash_after_write = len(world.faults.writes) + 1  # killed right after "begin"
    forced_at = world.clock.now()
    with pytest.raises(BaseException, match="killed after write"):
        run(world.ports(), settings("exec-2/0"), secret=KEY, force_before=forced_at)
    world.faults.crash_after_write = None

    monkeypatch.setattr(runtime, "rotation_ports", lambda *_: world.ports())
    monkeypatch.setitem(os.environ, "GATEHOUSE_ROTATION_PROJECTS", "p1")
    monkeypatch.setitem(os.environ, "GATEHOUSE_ROTATION_JOB_IDENTITY", JOB)
    with pytest.raises(TransientError, match="left alone"):
        commands.rotate_one(
            KEY,
            cast(Settings, object()),
            plan=False,
            force_before=forced_at,
            request_id="r1",
            trigger="command",
        )


# -- 2.6 project id and number ---------------------------------------------------------------------


def test_the_project_id_and_number_name_one_secret() -> None:
    world = World()
    world.sm.project_numbers = {"p1": "4242"}
    world.add_sa_key_target(KEY, SA, age=timedelta(days=10))
    run(world.ports(), settings())  # adopted under the name Secret Manager answers with
    for n, form in enumerate(("projects/p1/secrets/app-one-key", "projects/4242/secrets/app-one-key")):
        world.clock.advance(timedelta(hours=1))
        report = run(world.ports(), settings(f"exec-{n + 2}/0"), secret=form, force_before=world.clock.now())
        (target,) = report.targets
        assert target.status == "rotated", (form, target.reason)
        assert target.secret == "projects/4242/secrets/app-one-key"
        assert world.secret(KEY).aliases["current"] == n + 2


# -- 2.2 scope -------------------------------------------------------------------------------------


def test_a_secret_outside_the_rotation_projects_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from gatehouse import runtime

    world = World()
    world.add_sa_key_target(KEY, SA)
    other = world.add_generated_target("projects/p9/secrets/other-token")
    report = run(world.ports(), settings(), secret=other, force_before=world.clock.now())
    (target,) = report.targets
    assert target.status == "skipped" and "outside the rotation projects" in target.reason
    assert "GATEHOUSE_ROTATION_PROJECTS" in target.reason and report.exit_code == 0
    assert world.faults.writes == [] and len(world.secret(other).versions) == 1

    monkeypatch.setattr(runtime, "rotation_ports", lambda *_: world.ports())
    monkeypatch.setitem(os.environ, "GATEHOUSE_ROTATION_PROJECTS", "p1")
    summary = commands.rotate_one(
        other, cast(Settings, object()), plan=False, force_before=None, request_id="r2", trigger="command"
    )
    assert summary["status"] == "skipped" and "outside the rotation projects" in summary["reason"]
    missing = run(world.ports(), settings(), secret="projects/p9/secrets/nope")
    assert missing.targets[0].status == "skipped" and world.faults.writes == []
