"""A freeze and the Cloud Scheduler jobs it holds: which a freeze pauses, which an unfreeze resumes.
Pure module (the store and the jobs are ports).

The freeze document (``fleet.freeze`` in the rollout store) keeps the jobs gatehouse itself paused
(``Freeze.paused_jobs``) and an unfreeze resumes only those: a job a person paused before the
freeze stays paused. The document is written before any job is paused, so a freeze that dies half
way leaves at worst a job recorded that is still ENABLED (the unfreeze finds it enabled and leaves
it), never a job paused and forgotten. Freezing again while frozen keeps what the first freeze
paused. An unfreeze that cannot resume a job keeps it in a lifted record, so running it again
finishes the work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gatehouse.errors import GatehouseError, PermanentError
from gatehouse.rollouts.model import Freeze
from gatehouse.rollouts.ports import RolloutStore, SchedulerJobs

ENABLED, PAUSED = "ENABLED", "PAUSED"


def _reraise_refused(exc: GatehouseError) -> None:
    """Credentials or permissions the caller lacks are the person's to fix (the CLI exits 2), not
    one job's failure."""
    if isinstance(exc, PermanentError) and exc.status in (401, 403):
        raise exc


@dataclass(frozen=True)
class JobResult:
    """What a freeze or an unfreeze did to one job."""

    job: str
    # paused | resumed | already-paused | already-enabled | not-found | left | failed
    outcome: str
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome == "failed"

    def to_dict(self) -> dict[str, str]:
        return {"job": self.job, "outcome": self.outcome, "detail": self.detail}


def job_names(ids: Sequence[str], project: str, location: str) -> list[str]:
    """Full job names: an id becomes ``projects/P/locations/L/jobs/ID``, a full name stays."""
    names = [
        i if i.startswith("projects/") else f"projects/{project}/locations/{location}/jobs/{i}" for i in ids
    ]
    return list(dict.fromkeys(names))


def record(store: RolloutStore) -> Freeze | None:
    """The freeze document, active or not (an ended freeze may still hold paused jobs)."""
    doc = (store.get("fleet") or {}).get("freeze")
    return Freeze.from_dict(doc) if isinstance(doc, Mapping) else None


def _put(store: RolloutStore, freeze: Freeze | None) -> None:
    fleet: dict[str, Any] = dict(store.get("fleet") or {})
    fleet["freeze"] = freeze.to_dict() if freeze is not None else None
    store.put("fleet", fleet)


def freeze(
    store: RolloutStore, jobs: SchedulerJobs, names: Sequence[str], *, until: float, reason: str, by: str
) -> list[JobResult]:
    """Record the freeze, then pause each of ``names`` that is ENABLED; one result per job."""
    earlier = record(store)
    ours = list(earlier.paused_jobs) if earlier is not None else []
    states: dict[str, str | None] = {}
    results: dict[str, JobResult] = {}
    for name in names:
        try:
            states[name] = jobs.state(name)
        except GatehouseError as exc:
            _reraise_refused(exc)
            results[name] = JobResult(name, "failed", f"not read: {exc}")
    to_pause = [n for n, s in states.items() if s == ENABLED]
    paused_jobs = list(dict.fromkeys([*ours, *to_pause]))
    _put(store, Freeze(until, reason, by, paused_jobs))

    not_ours: set[str] = set()
    for name, state in states.items():
        if name in to_pause:
            try:
                jobs.pause(name)
                results[name] = JobResult(name, "paused")
            except GatehouseError as exc:
                _reraise_refused(exc)
                results[name] = _not_paused(jobs, name, exc)
                if results[name].outcome != "failed":
                    not_ours.add(name)
        elif state is None:
            results[name] = JobResult(name, "not-found")
        elif state == PAUSED:
            why = "by this freeze" if name in ours else "before the freeze: unfreeze leaves it paused"
            results[name] = JobResult(name, "already-paused", why)
        else:
            results[name] = JobResult(name, "left", f"state {state}: only an ENABLED job can be paused")
    if not_ours & (set(paused_jobs) - set(ours)):
        _put(store, Freeze(until, reason, by, [n for n in paused_jobs if n in ours or n not in not_ours]))
    return [results[n] for n in names if n in results]


def _not_paused(jobs: SchedulerJobs, name: str, exc: GatehouseError) -> JobResult:
    """A pause that was refused: the job went away, or someone paused it between the read and the
    pause (then it is theirs, and the unfreeze must leave it paused)."""
    if isinstance(exc, PermanentError) and exc.status in (400, 404):
        try:
            state = jobs.state(name)
        except GatehouseError:
            state = ENABLED
        if state is None:
            return JobResult(name, "not-found")
        if state == PAUSED:
            return JobResult(name, "already-paused", "paused by someone else meanwhile: unfreeze leaves it")
    return JobResult(name, "failed", f"not paused: {exc}")


def unfreeze(store: RolloutStore, jobs: SchedulerJobs) -> list[JobResult]:
    """Resume the jobs the freeze paused, then lift it; a job that could not be resumed stays in a
    lifted record (``until`` 0) for the next unfreeze."""
    earlier = record(store)
    results: list[JobResult] = []
    remaining: list[str] = []
    for name in earlier.paused_jobs if earlier is not None else []:
        try:
            state = jobs.state(name)
            if state is None:
                results.append(JobResult(name, "not-found"))
            elif state == PAUSED:
                jobs.resume(name)
                results.append(JobResult(name, "resumed"))
            elif state == ENABLED:
                results.append(JobResult(name, "already-enabled"))
            else:
                results.append(JobResult(name, "left", f"state {state}: only a PAUSED job can be resumed"))
        except GatehouseError as exc:
            _reraise_refused(exc)
            results.append(JobResult(name, "failed", f"not resumed: {exc}"))
            remaining.append(name)
    lifted = Freeze(0.0, earlier.reason, earlier.by, remaining) if earlier is not None and remaining else None
    _put(store, lifted)
    return results
