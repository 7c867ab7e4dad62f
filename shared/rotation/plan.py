"""Pure planning: one target's state snapshot and the clock in, the next steps out.

The protocol is AWS Secrets Manager's create -> set -> test -> finish, plus retire, mapped onto
Secret Manager version aliases (AWSPENDING/AWSCURRENT/AWSPREVIOUS become ``pending``/``current``/
``previous``), the ``gatehouse-state-*`` annotations (``shared.rotation.state``) and IAM's own key
list. Nothing is kept anywhere else, so any run, on any machine, continues where the last stopped:

=============  ====================================================  ==================================
step           writes                                                 state afterwards
=============  ====================================================  ==================================
adopt          UpdateSecret: ``current`` -> newest enabled version    a secret set up by hand is managed
begin          UpdateSecret: rotation record (id, holder, started,    a create is allowed, for this
               base version, the account's key ids)                   process only
create         IAM CreateServiceAccountKey (or generate a value),     the material exists only in a
               then at once AddSecretVersion                          version above ``base``
mark pending   UpdateSecret: ``pending`` -> that version (+ key id)   ``latest`` = pending, untested
test           reads only; then UpdateSecret: record ``tested``       ready to finish
               (or ``rejected``: then abandon, below)
finish         UpdateSecret: ``current`` -> pending, ``previous`` ->  consumers of ``current`` see it;
               old, drop ``pending`` and the record, note retired     the old one is in grace 1
retire         after grace 1: disable the old version and key;       never touches ``current``
               after grace 2: delete the key, destroy the version
abandon        disable the rejected version, delete its key, drop    ``latest`` is back on ``current``;
               ``pending`` and the record                             the next run starts over
=============  ====================================================  ==================================

Every UpdateSecret carries the etag the plan was made from: of two runners, one wins and the other
gets a conflict, re-reads and re-plans (it then finds the step done or the record taken). The
executor applies one step, re-reads, re-plans, until the plan is empty: a run that finds nothing due
does nothing (age gating, so a daily schedule heals missed runs and a second run is a no-op).
Once a version is stored, any runner may carry the rotation on (mark, test, finish): every one of
those writes is guarded by the etag, and the test itself only reads.

Never two keys for one rotation: ``begin`` is written (etag-guarded) before IAM is called and
``create`` is planned only for the process that wrote it. A process killed inside the create window
(IAM made the key, the version was not added) leaves a key whose private half existed only in its
memory. The next runner, once the record is older than the lease (at once if it is the same Cloud
Run task retrying), finds keys created in the record's time window that are neither in its key
list nor referenced by a version, disables and deletes them, then begins again. That is the one
case in which a second key is created for one rotation; the lost key never served anyone.

Why ``latest`` may briefly name an untested version: a version must be ENABLED to be read for its
test, and Secret Manager's ``latest`` is the newest enabled version, so adding the pending version
moves ``latest`` to it. Adding it disabled and enabling it for the test only moves the window.
gatehouse therefore (1) treats ``current`` as the contract: it only ever names a version that
passed its test, and consumers are told to read ``current`` (Cloud Run accepts an alias wherever
it accepts a version); (2) creates only material that is valid the moment it is stored (a real key
of the right account; a value conforming to its spec), so a ``latest`` reader gets a working
credential; (3) runs create, test and finish back to back, seconds apart; (4) disables a pending
version that fails its test right away, which returns ``latest`` to ``current``. The report flags
consumers that read ``latest``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from shared.rotation.ports import KeyInfo, KeyPolicy, SecretInfo, VersionInfo, VersionState
from shared.rotation.settings import RotationSettings, format_duration
from shared.rotation.state import RECORD, Record, RotationState, format_time, read_state
from shared.rotation.target import Kind, Target, TargetError

CURRENT = "current"
PENDING = "pending"
PREVIOUS = "previous"
ADVICE = "use workload identity or service account impersonation instead of a key"


@dataclass(frozen=True)
class Snapshot:
    """What the executor read for one target just before planning."""

    secret: SecretInfo
    versions: tuple[VersionInfo, ...]
    keys: tuple[KeyInfo, ...] = ()  # sa-key: the account's user-managed keys
    # sa-key: effective org policies of the account's project
    key_policy: KeyPolicy = field(default_factory=KeyPolicy)
    # sa-key: key ids read from the payloads of versions the state annotations do not map yet
    resolved_key_ids: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    now: datetime
    settings: RotationSettings
    own_rotations: frozenset[str] = frozenset()  # record ids this process wrote: it may create
    force_before: datetime | None = None  # rotate if current was created before this instant


# -- steps ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Adopt:
    version: int
    key_id: str | None

    def describe(self) -> str:
        key = f" (key {self.key_id})" if self.key_id else ""
        return f"adopt version {self.version}{key} as current"


@dataclass(frozen=True)
class Begin:
    base: int
    known_keys: frozenset[str]

    def describe(self) -> str:
        return (
            "begin a rotation (then create, test, finish): record the intent before creating anything "
            f"(base version {self.base})"
        )


@dataclass(frozen=True)
class Create:
    kind: Kind

    def describe(self) -> str:
        what = "create a service account key" if self.kind is Kind.SA_KEY else "generate a value"
        return f"{what} and store it at once as a new version"


@dataclass(frozen=True)
class RemoveOrphan:
    key_id: str

    def describe(self) -> str:
        return (
            f"disable and delete key {self.key_id}: created by an interrupted rotation and never stored "
            "(its private key is lost)"
        )


@dataclass(frozen=True)
class MarkPending:
    version: int
    key_id: str | None

    def describe(self) -> str:
        return f"mark version {self.version} pending"


@dataclass(frozen=True)
class Test:
    version: int
    key_id: str | None

    __test__ = False  # not a pytest class

    def describe(self) -> str:
        key = f" (key {self.key_id})" if self.key_id else ""
        return f"test pending version {self.version}{key}"


@dataclass(frozen=True)
class Finish:
    version: int
    previous: int | None

    def describe(self) -> str:
        old = f"; version {self.previous} becomes previous (grace 1 starts)" if self.previous else ""
        return f"make version {self.version} current{old}"


@dataclass(frozen=True)
class DisableVersion:
    version: int
    why: str = "grace 1 over"

    def describe(self) -> str:
        return f"disable version {self.version} ({self.why})"


@dataclass(frozen=True)
class DisableKey:
    key_id: str
    version: int

    def describe(self) -> str:
        return f"disable key {self.key_id} of version {self.version} (grace 1 over)"


@dataclass(frozen=True)
class DeleteKey:
    key_id: str
    version: int

    def describe(self) -> str:
        return f"delete key {self.key_id} of version {self.version}"


@dataclass(frozen=True)
class DestroyVersion:
    version: int

    def describe(self) -> str:
        return f"destroy version {self.version} (grace 2 over)"


@dataclass(frozen=True)
class Forget:
    version: int

    def describe(self) -> str:
        return f"forget retired version {self.version} (key deleted, version destroyed)"


@dataclass(frozen=True)
class ReleasePending:
    version: int

    def describe(self) -> str:
        return f"release abandoned pending version {self.version}; current is unchanged"


@dataclass(frozen=True)
class ClearRecord:
    def describe(self) -> str:
        return "clear the rotation record (nothing left to create)"


Step = (
    Adopt
    | Begin
    | Create
    | RemoveOrphan
    | MarkPending
    | Test
    | Finish
    | DisableVersion
    | DisableKey
    | DeleteKey
    | DestroyVersion
    | Forget
    | ReleasePending
    | ClearRecord
)


@dataclass(frozen=True)
class Refusal:
    code: str  # own-identity | org-policy | org-policy-expiry | key-slots
    message: str


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...] = ()
    due: tuple[str, ...] = ()  # why something is (or would be) done, for the report
    notes: tuple[str, ...] = ()  # warnings and advice
    refusal: Refusal | None = None  # a rotation is due but preflight forbids it
    busy: str | None = None  # another runner is inside its create window
    skip: str | None = None  # never rotated by this job
    error: str | None = None  # state only a human can repair


def days(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 86400:.1f}d"


def plan(target: Target, snap: Snapshot, ctx: Context) -> Plan:
    """The next steps for ``target``; the executor applies the first and asks again."""
    identity = ctx.settings.job_identity
    if target.kind is Kind.SA_KEY and identity and (target.service_account or "").lower() == identity.lower():
        return Plan(
            skip=f"{identity} is the job's own identity: never rotated by the job itself "
            "(run the job as an attached service account without keys)"
        )
    try:
        state = read_state(snap.secret.annotations)
    except TargetError as exc:
        return Plan(error=str(exc))
    return _Planner(target, snap, ctx, state).plan()


class _Planner:
    def __init__(self, target: Target, snap: Snapshot, ctx: Context, state: RotationState) -> None:
        self.target, self.snap, self.ctx, self.state = target, snap, ctx, state
        self.now = ctx.now
        self.settings = ctx.settings
        self.versions = {v.number: v for v in snap.versions}
        self.aliases = snap.secret.version_aliases
        self.current = self.aliases.get(CURRENT)
        self.pending = self.aliases.get(PENDING)
        self.sa_key = target.kind is Kind.SA_KEY
        self.key_ids = {**snap.resolved_key_ids, **state.key_ids} if self.sa_key else {}
        self.keys = {k.key_id: k for k in snap.keys}
        self.due: list[str] = []
        self.notes: list[str] = []

    def plan(self) -> Plan:
        retire = self._retirement()
        rotation = self._rotation()
        if rotation.busy or rotation.error:
            return replace(rotation, due=tuple(self.due), notes=tuple(self.notes))
        self._key_notes(refused=rotation.refusal is not None)
        return replace(
            rotation, steps=(*retire, *rotation.steps), due=tuple(self.due), notes=tuple(self.notes)
        )

    # -- the rotation state machine ------------------------------------------------------------

    def _rotation(self) -> Plan:
        record = self.state.record
        if self.pending is not None:
            return self._pending(self.pending)
        if record is not None:
            return self._recorded(record)
        if self.current is None:
            enabled = [n for n, v in self.versions.items() if v.state is VersionState.ENABLED]
            if enabled:
                newest = max(enabled)
                self.due.append(f"no alias {CURRENT} yet: adopt the newest enabled version {newest}")
                self.due += self._rotation_due(newest, self.key_ids.get(newest))
                return Plan(steps=(Adopt(newest, self.key_ids.get(newest)),))
            reasons = ["the secret has no enabled version: create the first"]
        else:
            reasons = self._rotation_due(self.current, self.key_ids.get(self.current))
        if not reasons:
            return Plan()
        self.due += reasons
        refusal = self._preflight()
        if refusal:
            return Plan(refusal=refusal)
        base = max(self.versions, default=0)
        return Plan(steps=(Begin(base, frozenset(self.keys)),))

    def _pending(self, number: int) -> Plan:
        record = self.state.record
        if record is None:
            return Plan(
                error=f"alias {PENDING} names version {number} but there is no rotation record "
                f"(annotation {RECORD}); remove the alias or point {CURRENT} at the version by hand"
            )
        version = self.versions.get(number)
        enabled = version is not None and version.state is VersionState.ENABLED
        if record.rejected is not None or not enabled:
            # abandon: it failed its test (recorded first, so a concurrent finish loses the etag
            # race) or someone disabled it; latest returns to current as soon as it is disabled
            why = "failed its test" if record.rejected is not None else "is not enabled"
            self.due.append(f"pending version {number} {why}: abandon rotation {record.id}")
            key_id = self.key_ids.get(number)
            if enabled:
                return Plan(steps=(DisableVersion(number, why="it failed its test"),))
            if key_id in self.keys:
                return Plan(steps=(DeleteKey(key_id, number),))
            return Plan(steps=(ReleasePending(number),))
        self.due.append(f"rotation {record.id} is in progress (pending version {number})")
        if record.tested is not None:
            old = self.versions.get(self.current) if self.current is not None else None
            keep = old is not None and old.number != number and old.state is not VersionState.DESTROYED
            return Plan(steps=(Finish(number, old.number if keep and old else None),))
        return Plan(steps=(Test(number, self.key_ids.get(number)),))

    def _recorded(self, record: Record) -> Plan:
        claimed = set(self.aliases.values()) | set(self.state.retired)
        added = [
            n
            for n, v in self.versions.items()
            if n > record.base and v.state is VersionState.ENABLED and n not in claimed
        ]
        if added:
            self.due.append(f"rotation {record.id} stored version {max(added)}")
            return Plan(steps=(MarkPending(max(added), self.key_ids.get(max(added))),))
        if record.id in self.ctx.own_rotations:
            self.due.append(f"rotation {record.id} begun by this run")
            refusal = self._preflight()
            if refusal:
                return Plan(steps=(ClearRecord(),), refusal=refusal)
            return Plan(steps=(Create(self.target.kind),))
        age = self.now - record.started
        # another runner may be inside its create window; our own killed attempt is not, but IAM's
        # key list may not show the key it created yet
        mine = record.holder == self.settings.holder
        wait = self.settings.key_list_settle if mine else self.settings.intent_lease
        if age < wait:
            return Plan(
                busy=f"rotation {record.id} was begun {int(age.total_seconds())}s ago by {record.holder}; "
                f"left alone for {format_duration(wait)} "
                + ("(until IAM's key list settles)" if mine else "(it may be inside its create window)")
            )
        orphans = self._orphans()
        if orphans:
            self.due.append(f"rotation {record.id} was interrupted after creating a key it never stored")
            return Plan(steps=tuple(RemoveOrphan(k) for k in orphans))
        reasons = (
            self._rotation_due(self.current, self.key_ids.get(self.current))
            if self.current is not None
            else ["the secret has no enabled version: create the first"]
        )
        if not reasons:
            self.due.append(f"rotation {record.id} was interrupted and nothing is due any more")
            return Plan(steps=(ClearRecord(),))
        self.due += [*reasons, f"rotation {record.id} was interrupted before storing anything: begin again"]
        refusal = self._preflight()
        if refusal:
            return Plan(steps=(ClearRecord(),), refusal=refusal)
        return Plan(steps=(Begin(max(self.versions, default=0), frozenset(self.keys)),))

    def _orphans(self) -> list[str]:
        record = self.state.record
        if record is None or not self.sa_key:
            return []
        referenced = set(self.key_ids.values())
        start = record.started - self.settings.clock_skew
        end = record.started + self.settings.intent_lease + self.settings.clock_skew
        return sorted(
            k.key_id
            for k in self.keys.values()
            if k.key_id not in record.known_keys
            and k.key_id not in referenced
            and start <= k.valid_after <= end
        )

    def _rotation_due(self, number: int, key_id: str | None) -> list[str]:
        reasons = []
        version = self.versions.get(number)
        if version is None:
            return [f"alias {CURRENT} names version {number}, which does not exist"]
        if version.state is not VersionState.ENABLED:
            return [f"current version {number} is {version.state}"]
        age = self.now - version.create_time
        if age >= self.target.rotation_period:
            reasons.append(
                f"current version {number} is {days(age)} old; the period is "
                f"{format_duration(self.target.rotation_period)}"
            )
        force = self.ctx.force_before
        if force is not None and version.create_time < force:
            reasons.append(f"rotation requested for credentials created before {format_time(force)}")
        if self.sa_key:
            key = self.keys.get(key_id) if key_id else None
            if key_id is None:
                reasons.append(
                    f"the key id of current version {number} is unknown (payload is not a key file)"
                )
            elif key is None:
                reasons.append(f"key {key_id} of current version {number} no longer exists")
            elif key.disabled:
                reasons.append(f"key {key_id} of current version {number} is disabled")
            elif key.valid_before is not None and key.valid_before - self.now <= self.settings.expiry_margin:
                reasons.append(
                    f"key {key_id} of current version {number} expires {format_time(key.valid_before)}"
                )
        return reasons

    def _preflight(self) -> Refusal | None:
        if not self.sa_key:
            return None
        account = self.target.service_account
        policy = self.snap.key_policy
        if policy.creation_blocked_by:
            return Refusal(
                "org-policy",
                f"organization policy {policy.creation_blocked_by} forbids creating keys for {account}: "
                + ADVICE,
            )
        if policy.expiry_hours is not None and timedelta(hours=policy.expiry_hours) <= (
            self.settings.expiry_margin + timedelta(days=1)
        ):
            return Refusal(
                "org-policy-expiry",
                f"organization policy iam.serviceAccountKeyExpiryHours makes keys of {account} expire after "
                f"{policy.expiry_hours}h, too soon for a daily rotation to keep a valid key: {ADVICE}",
            )
        used = len(self.keys)
        free = self.settings.key_limit - used
        if free < self.settings.min_free_slots:
            unmanaged = sorted(set(self.keys) - set(self.key_ids.values()))
            hint = f"; keys not held by this secret: {', '.join(unmanaged)}" if unmanaged else ""
            return Refusal(
                "key-slots",
                f"{account} has {used} of {self.settings.key_limit} user-managed keys (disabled keys count), "
                f"{free} free; at least {self.settings.min_free_slots} are needed to rotate safely{hint}",
            )
        return None

    def _key_notes(self, *, refused: bool) -> None:
        if not self.sa_key:
            return
        policy = self.snap.key_policy
        if policy.creation_blocked_by and not refused:
            self.notes.append(
                f"organization policy {policy.creation_blocked_by} forbids key creation: the next rotation "
                f"will be refused; {ADVICE}"
            )
        if policy.expiry_hours is not None:
            self.notes.append(
                f"organization policy iam.serviceAccountKeyExpiryHours={policy.expiry_hours}h: keys "
                f"expire on their own and are rotated {format_duration(self.settings.expiry_margin)} "
                f"before; {ADVICE}"
            )
        unmanaged = sorted(set(self.keys) - set(self.key_ids.values()) - set(self._orphans()))
        if unmanaged:
            self.notes.append(
                f"{len(unmanaged)} key(s) of {self.target.service_account} are not held by this secret "
                f"and use key slots: {', '.join(unmanaged)}"
            )

    # -- retirement -----------------------------------------------------------------------------

    def _retirement(self) -> list[Step]:
        steps: list[Step] = []
        for number, retired_at in sorted(self.state.retired.items()):
            if number in (self.current, self.pending):
                continue
            version = self.versions.get(number)
            key_id = self.key_ids.get(number)
            key = self.keys.get(key_id) if key_id else None
            if self.now >= retired_at + self.target.delete_after:
                if key is not None and key_id is not None:
                    steps.append(DeleteKey(key_id, number))
                if version is not None and version.state is not VersionState.DESTROYED:
                    steps.append(DestroyVersion(number))
                if key is None and (version is None or version.state is VersionState.DESTROYED):
                    steps.append(Forget(number))
                else:
                    self.due.append(
                        f"version {number}: grace 2 ({format_duration(self.target.delete_after)}) "
                        f"over since {format_time(retired_at + self.target.delete_after)}"
                    )
            elif self.now >= retired_at + self.target.disable_after:
                enabled = version is not None and version.state is VersionState.ENABLED
                if enabled:
                    steps.append(DisableVersion(number))
                if key is not None and key_id is not None and not key.disabled:
                    steps.append(DisableKey(key_id, number))
                if enabled or (key is not None and not key.disabled):
                    self.due.append(
                        f"version {number}: grace 1 ({format_duration(self.target.disable_after)}) "
                        f"over since {format_time(retired_at + self.target.disable_after)}"
                    )
        return steps
