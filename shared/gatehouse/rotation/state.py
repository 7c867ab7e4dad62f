"""Rotation state kept on the secret itself, in ``gatehouse-state-*`` annotations.

Everything else the protocol needs is already in the systems: version aliases (``pending``,
``current``, ``previous``), version states and create times, IAM key ids and ``validAfterTime``.
The annotations add only what those cannot say, each written together with the aliases in one
UpdateSecret guarded by the secret's etag:

``gatehouse-state-rotation``  the rotation record, present from "begin" until "finish" (or until
    an abandoned rotation is released): ``id``, ``holder`` (who began it), ``started``, ``base``
    (the highest version number when it began: a version above it that no alias names was added
    by this rotation), ``keys`` (the account's key ids when it began: a key outside that set that
    no version references was created by this rotation and lost), ``tested`` (when the pending
    version passed its test) or ``rejected`` (when it failed it: the rotation is being abandoned).
``gatehouse-state-keys``      version number -> IAM key id, for ``sa-key`` secrets. Disabled
    versions cannot be read, so the mapping is written when a version is adopted or marked pending.
``gatehouse-state-retired``   version number -> when it stopped being ``current`` (or, for a
    mirror, ``latest``): grace 1 and 2 count from there.
``gatehouse-state-mirrors``   version number -> the version it is a byte-for-byte copy of. Secret
    Manager's ``latest`` is the highest-numbered version whatever its state, and reading it fails
    (FAILED_PRECONDITION) when that version is DISABLED or DESTROYED; so before a rejected pending
    version is disabled, a copy of ``current`` is added above it (``gatehouse.rotation.plan``). The
    copy holds the same credential (for ``sa-key`` the same IAM key id in ``keys``): it is retired
    together with the version it copies, and a key is disabled or deleted only once every version
    holding it is retired.
``gatehouse-state-current-since``  when ``current`` last moved (consumers updated before it may
    still hold the old value in an environment variable).
``gatehouse-state-revoked``   version number -> when a forced rotation (a leak response) replaced
    it: its credential is disabled as soon as the new one passed its test (no grace 1), and its
    disabled key may be deleted early when the account runs short of key slots.
``gatehouse-state-rejections``  ``count=N;last=T``: how many rotations in a row were abandoned
    because the new credential failed its test, and when the last one was; the next attempt backs
    off exponentially (``gatehouse.rotation.plan``). Cleared when a rotation finishes.

The rotation record may also hold ``force`` (the instant before which credentials must be replaced:
an operator's forced rotation or a ``SECRET_ROTATE`` notification) and ``revoke`` (the force was a
leak response), so that a run that did not receive the command still completes it.

All values are short ASCII (``3=2025-01-31T09:00:00Z,4=...``) so a human can read them in
``gcloud secrets describe`` and the 16 KiB annotation budget is never at risk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from gatehouse.rotation.target import STATE_PREFIX, TargetError

RECORD = f"{STATE_PREFIX}rotation"
KEYS = f"{STATE_PREFIX}keys"
RETIRED = f"{STATE_PREFIX}retired"
CURRENT_SINCE = f"{STATE_PREFIX}current-since"
MIRRORS = f"{STATE_PREFIX}mirrors"
REVOKED = f"{STATE_PREFIX}revoked"
REJECTIONS = f"{STATE_PREFIX}rejections"
_KNOWN = (RECORD, KEYS, RETIRED, CURRENT_SINCE, MIRRORS, REVOKED, REJECTIONS)

_V = TypeVar("_V")


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _format_exact(value: datetime) -> str:
    """Like format_time, with microseconds when there are any (a force instant is compared with
    create times, so it must not be rounded)."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if value.microsecond else "%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class Record:
    """An in-flight rotation (see the module docstring)."""

    id: str
    holder: str
    started: datetime
    base: int
    known_keys: frozenset[str] = frozenset()
    tested: datetime | None = None
    rejected: datetime | None = None
    force: datetime | None = None  # rotate what was created before this instant (a forced rotation)
    revoke: bool = False  # the force is a leak response: revoke the replaced credential at once

    def encode(self) -> str:
        parts = [
            f"id={self.id}",
            f"holder={self.holder}",
            f"started={format_time(self.started)}",
            f"base={self.base}",
            f"keys={','.join(sorted(self.known_keys))}",
        ]
        if self.tested is not None:
            parts.append(f"tested={format_time(self.tested)}")
        if self.rejected is not None:
            parts.append(f"rejected={format_time(self.rejected)}")
        if self.force is not None:
            parts.append(f"force={_format_exact(self.force)}")
        if self.revoke:
            parts.append("revoke=1")
        return ";".join(parts)

    @classmethod
    def decode(cls, text: str) -> Record:
        fields = dict(part.split("=", 1) for part in text.split(";") if "=" in part)
        missing = [k for k in ("id", "holder", "started", "base") if not fields.get(k)]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        return cls(
            id=fields["id"],
            holder=fields["holder"],
            started=parse_time(fields["started"]),
            base=int(fields["base"]),
            known_keys=frozenset(k for k in fields.get("keys", "").split(",") if k),
            tested=parse_time(fields["tested"]) if fields.get("tested") else None,
            rejected=parse_time(fields["rejected"]) if fields.get("rejected") else None,
            force=parse_time(fields["force"]) if fields.get("force") else None,
            revoke=fields.get("revoke") == "1",
        )


@dataclass(frozen=True)
class Rejections:
    """Rotations abandoned in a row because the new credential failed its test."""

    count: int
    last: datetime

    def encode(self) -> str:
        return f"count={self.count};last={format_time(self.last)}"

    @classmethod
    def decode(cls, text: str) -> Rejections:
        fields = dict(part.split("=", 1) for part in text.split(";") if "=" in part)
        if not fields.get("count", "").isdigit() or not fields.get("last"):
            raise ValueError("expected count=N;last=TIME")
        return cls(count=int(fields["count"]), last=parse_time(fields["last"]))


@dataclass(frozen=True)
class RotationState:
    record: Record | None = None
    key_ids: Mapping[int, str] = field(default_factory=dict)
    retired: Mapping[int, datetime] = field(default_factory=dict)
    current_since: datetime | None = None
    mirrors: Mapping[int, int] = field(default_factory=dict)  # copy -> the version it copies
    revoked: Mapping[int, datetime] = field(default_factory=dict)  # replaced by a forced rotation
    rejections: Rejections | None = None

    def copies_of(self, number: int) -> list[int]:
        """The mirrors of version ``number`` (copies of its material), oldest first."""
        return sorted(m for m, original in self.mirrors.items() if original == number)


def _decode_map(text: str, value: Callable[[str], _V]) -> dict[int, _V]:
    out: dict[int, _V] = {}
    for entry in filter(None, text.split(",")):
        number, _, raw = entry.partition("=")
        out[int(number)] = value(raw)
    return out


def _encode_map(values: Mapping[int, str]) -> str:
    return ",".join(f"{number}={values[number]}" for number in sorted(values))


def read_state(annotations: Mapping[str, str]) -> RotationState:
    """Decode the state annotations; TargetError names the one that is malformed."""
    key = RECORD
    try:
        record = Record.decode(annotations[RECORD]) if annotations.get(RECORD) else None
        key = KEYS
        key_ids = _decode_map(annotations.get(KEYS, ""), str)
        key = RETIRED
        retired = _decode_map(annotations.get(RETIRED, ""), parse_time)
        key = CURRENT_SINCE
        since = parse_time(annotations[CURRENT_SINCE]) if annotations.get(CURRENT_SINCE) else None
        key = MIRRORS
        mirrors = _decode_map(annotations.get(MIRRORS, ""), int)
        key = REVOKED
        revoked = _decode_map(annotations.get(REVOKED, ""), parse_time)
        key = REJECTIONS
        rejections = Rejections.decode(annotations[REJECTIONS]) if annotations.get(REJECTIONS) else None
    except ValueError as exc:
        raise TargetError(
            f"state annotation {key} is malformed ({exc}); it is written by gatehouse: restore it or "
            "remove it and let the next run adopt the secret again"
        ) from None
    return RotationState(
        record=record,
        key_ids=key_ids,
        retired=retired,
        current_since=since,
        mirrors=mirrors,
        revoked=revoked,
        rejections=rejections,
    )


def write_state(annotations: Mapping[str, str], state: RotationState) -> dict[str, str]:
    """``annotations`` with the state keys replaced by ``state`` (empty values are dropped)."""
    out = {k: v for k, v in annotations.items() if k not in _KNOWN}
    values = {
        RECORD: state.record.encode() if state.record else "",
        KEYS: _encode_map(state.key_ids),
        RETIRED: _encode_map({n: format_time(t) for n, t in state.retired.items()}),
        CURRENT_SINCE: format_time(state.current_since) if state.current_since else "",
        MIRRORS: _encode_map({n: str(o) for n, o in state.mirrors.items()}),
        REVOKED: _encode_map({n: format_time(t) for n, t in state.revoked.items()}),
        REJECTIONS: state.rejections.encode() if state.rejections else "",
    }
    out.update({k: v for k, v in values.items() if v})
    return out
