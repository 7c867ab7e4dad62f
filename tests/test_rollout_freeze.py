"""A freeze and its Scheduler jobs (gatehouse.rollouts.freeze) with in-memory ports: what is
paused, what is recorded, what an unfreeze resumes and what it leaves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from gatehouse.cli_views import freeze_lines
from gatehouse.errors import NotFoundError, PermanentError, TransientError
from gatehouse.rollouts import freeze as freezing
from gatehouse.rollouts.model import Freeze

P = "projects/gh/locations/europe-west1/jobs"
ROTATE, TICK = f"{P}/gatehouse-rotate-credentials", f"{P}/gatehouse-rollout-tick"
NAMES = [ROTATE, TICK]
UNTIL = 4_102_444_800.0  # 2100-01-01


class Store:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.puts = 0

    def get(self, key: str) -> dict[str, Any] | None:
        return self.docs.get(key)

    def put(self, key: str, doc: Mapping[str, Any]) -> None:
        self.puts += 1
        self.docs[key] = dict(doc)


class Jobs:
    """Cloud Scheduler's state machine; ``fail`` maps a job to the error its next call raises."""

    def __init__(self, states: dict[str, str]) -> None:
        self.states = dict(states)
        self.fail: dict[str, Exception] = {}
        self.before_pause: dict[str, str] = {}  # what a person does between our read and our pause
        self.calls: list[tuple[str, str]] = []

    def _check(self, verb: str, name: str) -> None:
        self.calls.append((verb, name))
        if name in self.fail:
            raise self.fail[name]

    def state(self, name: str) -> str | None:
        self._check("get", name)
        return self.states.get(name)

    def _move(self, name: str, need: str, want: str) -> str:
        if name not in self.states:
            raise NotFoundError(f"{name}: not found", status=404)
        if self.states[name] != need:
            raise PermanentError(f"{name} is {self.states[name]}", status=400)
        self.states[name] = want
        return want

    def pause(self, name: str) -> str:
        self._check("pause", name)
        if name in self.before_pause:
            self.states[name] = self.before_pause.pop(name)
        return self._move(name, "ENABLED", "PAUSED")

    def resume(self, name: str) -> str:
        self._check("resume", name)
        return self._move(name, "PAUSED", "ENABLED")


def recorded(store: Store) -> Freeze | None:
    return freezing.record(store)


def test_job_names_from_ids_and_full_names() -> None:
    assert freezing.job_names(["a", f"{P}/b", "a"], "gh", "europe-west1") == [f"{P}/a", f"{P}/b"]


def test_freeze_pauses_enabled_jobs_and_records_them_before_pausing() -> None:
    store, jobs = Store(), Jobs({ROTATE: "ENABLED", TICK: "ENABLED"})
    seen: list[list[str]] = []
    pause = jobs.pause

    def pause_after_the_record(name: str) -> str:
        seen.append(list((store.get("fleet") or {})["freeze"]["paused_jobs"]))
        return pause(name)

    jobs.pause = pause_after_the_record  # type: ignore[method-assign]
    results = freezing.freeze(store, jobs, NAMES, until=UNTIL, reason="release", by="ops")
    assert [(r.job, r.outcome) for r in results] == [(ROTATE, "paused"), (TICK, "paused")]
    assert seen == [NAMES, NAMES]  # the record names both before the first pause
    assert jobs.states == {ROTATE: "PAUSED", TICK: "PAUSED"}
    freeze = recorded(store)
    assert freeze is not None and freeze.paused_jobs == NAMES and freeze.reason == "release"
    assert store.puts == 1


def test_a_job_paused_before_the_freeze_stays_paused_after_the_unfreeze() -> None:
    store, jobs = Store(), Jobs({ROTATE: "PAUSED", TICK: "ENABLED"})
    results = freezing.freeze(store, jobs, NAMES, until=UNTIL, reason="r", by="ops")
    assert results[0].outcome == "already-paused" and "unfreeze leaves it" in results[0].detail
    assert recorded(store).paused_jobs == [TICK]  # type: ignore[union-attr]
    lifted = freezing.unfreeze(store, jobs)
    assert [(r.job, r.outcome) for r in lifted] == [(TICK, "resumed")]
    assert jobs.states == {ROTATE: "PAUSED", TICK: "ENABLED"}
    assert ("resume", ROTATE) not in jobs.calls
    assert (store.get("fleet") or {})["freeze"] is None


def test_a_missing_job_is_reported_not_a_crash() -> None:
    store, jobs = Store(), Jobs({TICK: "ENABLED"})
    results = freezing.freeze(store, jobs, NAMES, until=UNTIL, reason="r", by="ops")
    assert [(r.job, r.outcome) for r in results] == [(ROTATE, "not-found"), (TICK, "paused")]
    del jobs.states[TICK]  # deleted during the freeze
    assert [(r.job, r.outcome) for r in freezing.unfreeze(store, jobs)] == [(TICK, "not-found")]
    assert (store.get("fleet") or {})["freeze"] is None


def test_a_second_freeze_keeps_what_the_first_paused() -> None:
    store, jobs = Store(), Jobs({ROTATE: "ENABLED", TICK: "ENABLED"})
    freezing.freeze(store, jobs, NAMES, until=UNTIL, reason="r", by="ops")
    again = freezing.freeze(store, jobs, NAMES, until=UNTIL + 86400, reason="longer", by="ops")
    assert {r.outcome for r in again} == {"already-paused"}
    assert all(r.detail == "by this freeze" for r in again)
    freeze = recorded(store)
    assert freeze is not None and freeze.paused_jobs == NAMES and freeze.until == UNTIL + 86400
    freezing.unfreeze(store, jobs)
    assert jobs.states == {ROTATE: "ENABLED", TICK: "ENABLED"}


def test_a_job_paused_by_someone_between_the_read_and_the_pause_is_theirs() -> None:
    store, jobs = Store(), Jobs({ROTATE: "ENABLED", TICK: "ENABLED"})
    jobs.before_pause[ROTATE] = "PAUSED"
    results = freezing.freeze(store, jobs, NAMES, until=UNTIL, reason="r", by="ops")
    assert results[0].outcome == "already-paused" and "someone else" in results[0].detail
    assert recorded(store).paused_jobs == [TICK]  # type: ignore[union-attr]
    freezing.unfreeze(store, jobs)
    assert jobs.states[ROTATE] == "PAUSED"


def test_a_job_that_cannot_be_paused_is_a_failure_and_the_freeze_still_holds() -> None:
    store, jobs = Store(), Jobs({ROTATE: "ENABLED", TICK: "ENABLED"})
    freezing.freeze(store, Jobs({}), [], until=UNTIL, reason="r", by="ops")  # nothing yet
    jobs.fail[TICK] = TransientError("503")
    results = freezing.freeze(store, jobs, NAMES, until=UNTIL, reason="r", by="ops")
    assert [(r.outcome, r.failed) for r in results] == [("paused", False), ("failed", True)]
    assert recorded(store).active(0)  # type: ignore[union-attr]


def test_an_unfreeze_that_cannot_resume_keeps_the_job_for_the_next_one() -> None:
    store, jobs = Store(), Jobs({ROTATE: "ENABLED", TICK: "ENABLED"})
    freezing.freeze(store, jobs, NAMES, until=UNTIL, reason="r", by="ops")
    jobs.fail[ROTATE] = TransientError("503")
    results = freezing.unfreeze(store, jobs)
    assert [(r.job, r.outcome) for r in results] == [(ROTATE, "failed"), (TICK, "resumed")]
    left = recorded(store)
    assert left is not None and not left.active(0) and left.paused_jobs == [ROTATE]
    assert "run `gatehouse unfreeze` again" in freeze_lines(left, 0)[0]
    del jobs.fail[ROTATE]
    assert [(r.job, r.outcome) for r in freezing.unfreeze(store, jobs)] == [(ROTATE, "resumed")]
    assert recorded(store) is None and jobs.states == {ROTATE: "ENABLED", TICK: "ENABLED"}


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_not_one_job_failing(status: int) -> None:
    store, jobs = Store(), Jobs({ROTATE: "ENABLED"})
    jobs.fail[ROTATE] = PermanentError("denied", status=status)
    with pytest.raises(PermanentError):
        freezing.freeze(store, jobs, [ROTATE], until=UNTIL, reason="r", by="ops")
    assert store.puts == 0  # nothing recorded: the person fixes the credentials and freezes again


def test_a_job_the_system_disabled_is_left_alone() -> None:
    store, jobs = Store(), Jobs({ROTATE: "DISABLED", TICK: "ENABLED"})
    results = freezing.freeze(store, jobs, NAMES, until=UNTIL, reason="r", by="ops")
    assert results[0].outcome == "left" and "DISABLED" in results[0].detail
    assert ("pause", ROTATE) not in jobs.calls


def test_the_freeze_lines_show_the_paused_jobs_and_an_ended_freeze_that_still_holds_them() -> None:
    active = Freeze(UNTIL, "release \x1b[2J", "ops", NAMES)
    (line,) = freeze_lines(active, 0)
    assert line.startswith("FROZEN until 2100-01-01") and "\x1b" not in line
    assert "gatehouse-rotate-credentials, gatehouse-rollout-tick" in line
    (ended,) = freeze_lines(active, UNTIL + 1)
    assert "still paused" in ended and "gatehouse unfreeze" in ended
    assert freeze_lines(Freeze(UNTIL, "r", "ops"), UNTIL + 1) == []
    assert freeze_lines(None, 0) == []
