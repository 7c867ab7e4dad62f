"""Pure assessment of who reads a rotated secret, and whether a rotation reaches them.

Cloud Run resolves a secret in an environment variable once, when an instance starts: a service
keeps the old value until its instances are replaced (a new revision does that), a job reads the
new one at its next execution. A volume-mounted secret is read when the file is read, so it
follows ``latest`` or an alias by itself. A reference that pins a version number never follows:
it breaks when that version is disabled at the end of grace 1. ``current`` is the alias to read.
``latest`` is Secret Manager's highest-numbered version whatever its state (reading it fails when
that version is disabled); gatehouse keeps it enabled and valid (a rejected pending version is
covered by a copy of ``current`` before it is disabled), but it names the pending version for the
seconds between create and test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from gatehouse.rotation.ports import ConsumerRef, VersionState

Severity = Literal["ok", "info", "warning", "error"]


@dataclass(frozen=True)
class Finding:
    consumer: ConsumerRef
    severity: Severity
    message: str
    roll_to: str | None = None  # the version to deploy when rolling is enabled; None: no roll needed


def assess(
    refs: list[ConsumerRef],
    *,
    aliases: Mapping[str, int],
    states: Mapping[int, VersionState],
    current_since: datetime | None,
) -> list[Finding]:
    current = aliases.get("current")
    return [_assess(ref, aliases, states, current, current_since) for ref in refs]


def _assess(
    ref: ConsumerRef,
    aliases: Mapping[str, int],
    states: Mapping[int, VersionState],
    current: int | None,
    current_since: datetime | None,
) -> Finding:
    where = f"{ref.via} {ref.detail}"
    if ref.version.isdigit():
        pinned = int(ref.version)
        if pinned == current:
            return Finding(
                ref,
                "info",
                f"{where} pins version {pinned} (current): it must be re-pinned at every rotation; "
                "read the alias current instead",
            )
        state = states.get(pinned)
        roll = str(current) if current is not None else None
        if state is not VersionState.ENABLED:
            status = state.value if state else "missing"
            return Finding(ref, "error", f"{where} pins version {pinned}, which is {status}", roll)
        return Finding(
            ref,
            "warning",
            f"{where} pins old version {pinned} (current is {current}); it breaks when {pinned} is disabled",
            roll,
        )
    if ref.version != "latest" and ref.version not in aliases:
        return Finding(ref, "error", f"{where} reads alias {ref.version}, which does not exist")
    if ref.version in ("pending", "previous"):
        return Finding(ref, "warning", f"{where} reads alias {ref.version}; read current instead")
    latest = (
        "; latest can name a pending version for the seconds before its test, current cannot"
        if ref.version == "latest"
        else ""
    )
    if ref.via == "volume":
        return Finding(
            ref, "info" if latest else "ok", f"{where} reads {ref.version}: follows rotations{latest}"
        )
    if ref.kind == "job":
        return Finding(ref, "info", f"{where} reads {ref.version} when each execution starts{latest}")
    if current_since is not None and (ref.updated is None or ref.updated < current_since):
        return Finding(
            ref,
            "warning",
            f"{where} is resolved at instance start: instances started before the rotation at "
            f"{current_since:%Y-%m-%d %H:%M}Z keep the old value until a new revision{latest}",
            ref.version,
        )
    return Finding(
        ref,
        "info" if latest else "ok",
        f"{where} reads {ref.version}; deployed after the last rotation{latest}",
    )
