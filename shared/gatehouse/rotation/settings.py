"""Settings of the rotation job, and the duration syntax shared with the target annotations.

``gatehouse.config.Settings`` belongs to every use case; rotation keeps its own knobs here, read from
``GATEHOUSE_ROTATION_*`` by :meth:`RotationSettings.from_env` (entry points only; everything below
receives the frozen object). Durations are written ``<n><unit>`` with unit ``m``, ``h``, ``d`` or
``w`` (``90d``, ``12h``), the same syntax the secret annotations use.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from gatehouse.errors import InputError

_DURATION = re.compile(r"^([1-9][0-9]{0,5}|0)([mhdw])$")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_HOLDER = re.compile(r"^[A-Za-z0-9._:/-]{1,120}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_duration(text: str) -> timedelta:
    """``90d`` -> 90 days. Raises ValueError with the accepted syntax."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 90d, 12h, 30m or 2w")
    return int(match[1]) * _UNITS[match[2]]


def format_duration(value: timedelta) -> str:
    """The shortest exact ``<n><unit>`` form (``timedelta(days=90)`` -> ``90d``)."""
    seconds = int(value.total_seconds())
    for unit in ("d", "h", "m"):
        size = int(_UNITS[unit].total_seconds())
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds // 60}m"


def default_holder(env: Mapping[str, str]) -> str:
    """Who runs: ``<execution>/<task index>`` in a Cloud Run job, else a unique local name.

    Cloud Run runs the attempts of one task one after another, never at once, so a retried attempt
    may resume a rotation its predecessor began without waiting for the lease to expire.
    """
    execution = env.get("CLOUD_RUN_EXECUTION")
    if execution:
        return f"{execution}/{env.get('CLOUD_RUN_TASK_INDEX', '0')}"
    return f"local-{os.getpid()}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class RotationSettings:
    """How the job behaves; the defaults are the documented policy."""

    # projects whose secrets are listed (``labels.gatehouse-rotate:*``): the scope of the job and
    # of single-secret commands
    projects: tuple[str, ...] = ()
    # project id -> number (``GATEHOUSE_PROJECT_NUMBERS``): Secret Manager names secrets by number,
    # operators by id; both name one secret
    project_numbers: Mapping[str, str] = field(default_factory=dict)
    # the service account the job runs as: never rotated by the job itself
    job_identity: str | None = None
    # identifies this process in the rotation record (see default_holder)
    holder: str = field(default_factory=lambda: default_holder(os.environ))
    # target defaults, overridable per secret by annotations
    rotation_period: timedelta = timedelta(days=90)
    disable_after: timedelta = timedelta(days=7)
    delete_after: timedelta = timedelta(days=30)
    # IAM: 10 user-managed keys per service account; refuse to create with fewer free slots
    key_limit: int = 10
    min_free_slots: int = 2
    # a rotation record without a stored version is "in the create window" for this long; after
    # it, another runner treats it as abandoned by a killed process and recovers
    intent_lease: timedelta = timedelta(minutes=15)
    # the same holder (a Cloud Run task retrying) waits only this long: IAM's key list is eventually
    # consistent, so a key the killed attempt created may be missing from an earlier listing
    key_list_settle: timedelta = timedelta(minutes=2)
    # tolerance between this job's clock and IAM's validAfterTime when matching orphan keys
    clock_skew: timedelta = timedelta(minutes=5)
    # rotate early when the current key expires (org policy) within this margin
    expiry_margin: timedelta = timedelta(days=7)
    # test new keys with a real token exchange (needs network and the TokenExchange port)
    token_exchange: bool = False
    # deploy new revisions of consumers that pin an old version or hold it in an env var
    roll_consumers: bool = False
    # targets rotated at once (each target's own steps stay in order)
    workers: int = 4
    # guards against a planner loop: steps and etag conflicts per target per run
    max_steps: int = 40
    max_conflicts: int = 5

    def __post_init__(self) -> None:
        problems = []
        if not _HOLDER.fullmatch(self.holder):
            problems.append(f"holder {self.holder!r} must be 1-120 characters of A-Z a-z 0-9 . _ : / -")
        if not 1 <= self.workers <= 32:
            problems.append("workers must be between 1 and 32")
        if not 1 <= self.min_free_slots < self.key_limit:
            problems.append("min_free_slots must be at least 1 and below key_limit")
        if self.rotation_period < timedelta(days=1):
            problems.append("rotation_period must be at least 1d (the job runs daily)")
        if self.delete_after < self.disable_after:
            problems.append("delete_after must not be shorter than disable_after")
        if self.intent_lease <= self.clock_skew:
            problems.append("intent_lease must be longer than clock_skew")
        if not timedelta(0) <= self.key_list_settle <= self.intent_lease:
            problems.append("key_list_settle must be between 0 and intent_lease")
        if problems:
            raise InputError("invalid rotation settings: " + "; ".join(problems))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RotationSettings:
        """Read ``GATEHOUSE_ROTATION_*`` (projects fall back to ``GATEHOUSE_PROJECTS``)."""
        problems: list[str] = []
        values: dict[str, object] = {}

        def read(name: str, key: str, convert: type[timedelta] | type[bool] | type[str]) -> None:
            raw = env.get(f"GATEHOUSE_ROTATION_{name}")
            if raw is None:
                return
            try:
                if convert is timedelta:
                    values[key] = parse_duration(raw)
                elif convert is bool:
                    if raw.strip().lower() not in _TRUE | _FALSE:
                        raise ValueError(f"{raw!r} is not true or false")
                    values[key] = raw.strip().lower() in _TRUE
                else:
                    values[key] = raw.strip() or None
            except ValueError as exc:
                problems.append(f"GATEHOUSE_ROTATION_{name}: {exc}")

        projects = env.get("GATEHOUSE_ROTATION_PROJECTS") or env.get("GATEHOUSE_PROJECTS", "")
        values["projects"] = tuple(p.strip() for p in projects.split(",") if p.strip())
        numbers: dict[str, str] = {}
        for pair in filter(None, (p.strip() for p in env.get("GATEHOUSE_PROJECT_NUMBERS", "").split(","))):
            project, _, number = pair.partition("=")
            if not project.strip() or not number.strip().isdigit():
                problems.append(f"GATEHOUSE_PROJECT_NUMBERS: {pair!r} is not project=number")
            else:
                numbers[project.strip()] = number.strip()
        values["project_numbers"] = numbers
        read("JOB_IDENTITY", "job_identity", str)
        read("PERIOD", "rotation_period", timedelta)
        read("DISABLE_AFTER", "disable_after", timedelta)
        read("DELETE_AFTER", "delete_after", timedelta)
        read("INTENT_LEASE", "intent_lease", timedelta)
        read("TOKEN_EXCHANGE", "token_exchange", bool)
        read("ROLL_CONSUMERS", "roll_consumers", bool)
        workers = env.get("GATEHOUSE_ROTATION_WORKERS")
        if workers is not None:
            if workers.strip().isdigit():
                values["workers"] = int(workers)
            else:
                problems.append(f"GATEHOUSE_ROTATION_WORKERS: {workers!r} is not a whole number")
        if problems:
            raise InputError("invalid rotation settings: " + "; ".join(problems))
        return cls(holder=default_holder(env), **values)  # type: ignore[arg-type]
