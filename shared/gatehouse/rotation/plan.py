"""Pure planning: one target's state snapshot and the clock in, the next steps out.

The protocol is AWS Secrets Manager's create -> set -> test -> finish, plus retire, mapped onto
Secret Manager version aliases (AWSPENDING/AWSCURRENT/AWSPREVIOUS become ``pending``/``current``/
``previous``), the ``gatehouse-state-*`` annotations (``gatehouse.rotation.state``) and IAM's own key
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
               old, drop ``pending`` and the record, note the old     the old one (and its mirrors) are
               version and its mirrors retired                        in grace 1
retire         after grace 1: disable the old version and, once no    never touches ``current`` nor the
               version that is not retired holds it, its key; after   newest version (``latest``)
               grace 2: delete the key, destroy the version
abandon        mirror: AddSecretVersion with a copy of ``current``;   ``latest`` = the mirror, a valid
               UpdateSecret: note it as a mirror of ``current``       copy of ``current``; the rejected
               (+ the same key id); then disable the rejected         version and key are gone; the
               version, delete its key, drop ``pending`` and the      next run starts over
               record
=============  ====================================================  ==================================

Every UpdateSecret carries the etag the plan was made from: of two runners, one wins and the other
gets a conflict, re-reads and re-plans (it then finds the step done or the record taken). The
executor applies one step, re-reads, re-plans, until the plan is empty: a run that finds nothing due
does nothing (age gating, so a daily schedule heals missed runs and a second run is a no-op).
Once a version is stored, any runner may carry the rotation on (mark, test, finish, abandon): every
one of those writes is guarded by the etag, and the test itself only reads.

Never two keys for one rotation: ``begin`` is written (etag-guarded) before IAM is called and
``create`` is planned only for the process that wrote it. A process killed inside the create window
(IAM made the key, the version was not added) leaves a key whose private half existed only in its
memory. The next runner, once the record is older than the lease (at once if it is the same Cloud
Run task retrying), finds keys created in the record's time window that are neither in its key
list nor referenced by a version, disables and deletes them, then begins again. That is the one
case in which a second key is created for one rotation; the lost key never served anyone.

``latest``. Secret Manager's ``latest`` is "the most recently created SecretVersion": the
highest-numbered version whatever its state. Reading it when that version is DISABLED or DESTROYED
fails with FAILED_PRECONDITION; it does not fall back to an older version. gatehouse keeps this
invariant: at every moment the target has an enabled, valid credential readable both as
``current`` and as ``latest``, except that ``latest`` names the pending version between its
create and its test (a version must be ENABLED to be read for its test, and adding it moves
``latest`` to it; adding it disabled and enabling it for the test only moves the window). So
gatehouse (1) treats ``current`` as the contract: it only ever names a version that passed its
test, and consumers are told to read ``current`` (Cloud Run accepts an alias wherever it accepts a
version; the report flags consumers that read ``latest``); (2) creates only material that is valid
the moment it is stored (a real key of the right account; a value conforming to its spec), so a
``latest`` reader gets a working credential; (3) runs create, test and finish back to back,
seconds apart; (4) never disables or destroys the newest version in retirement (retired versions
are older than ``current``; the executor refuses such a step); (5) abandons a rejected pending
version with a mirror, below.

Abandon with a mirror. Disabling the rejected pending version would leave ``latest`` on a DISABLED
version, so first a copy of ``current``'s material (the same key file, the same generated value)
is added as a new version: ``latest`` then names a valid credential again. An UpdateSecret notes
it in ``gatehouse-state-mirrors`` as a mirror of ``current`` and, for ``sa-key``, maps it to the
same IAM key id; only then is the rejected version disabled, its key deleted and ``pending``
released. ``current`` stays on the original version: its create time is the credential's real age,
so the failed rotation is due again at once (a ``current`` moved to the fresh copy would look new
and postpone the rotation by a whole period) and ``current_since`` does not move (the value did not
change). The mirror is one credential with the original: a key is disabled or deleted only when no
version that is not retired still holds it, the mirror is retired together with the original when
``finish`` makes it ``previous``, and an older mirror is retired as soon as a newer one takes
``latest`` (a rotation rejected again). Crash safety: a version above the pending one that no alias,
retirement or mirror entry claims can only have been added by this abandon (the record still holds
the rotation), so a run killed after adding the copy records it instead of adding another; and a
rejected key whose id no version maps (the payload was not a key file, and the process that had the
id from IAM was killed) is found as an orphan of the record, as in the create window, and removed
before the record is released. With no enabled ``current`` to copy (the very first rotation of an
empty secret, or ``current`` disabled by hand) there is no valid credential to protect and the
rejected version is disabled as before (the report notes that ``latest`` is unreadable).

Backoff. The first retry after an abandoned rotation is immediate (one damaged value is not a
broken tester); from the second rejection in a row on, the next attempt waits 1d, 2d, 4d ... (at
most ``REJECTION_BACKOFF_CAP``), counted in ``gatehouse-state-rejections`` and reset by a finish.
The target reports the rotation as failed with the time of the next attempt; retirement goes on.
A forced rotation does not wait.

Forced rotations. ``Context.force_before`` makes a credential created before it due; ``begin``
records that instant (and ``revoke``) in the rotation record, so a run that never received the
command (a retry, tomorrow's run) completes an interrupted forced rotation. With ``revoke`` (a
leak response; a ``SECRET_ROTATE`` notification is not one) ``finish`` notes the replaced version
and its mirrors in ``gatehouse-state-revoked``: grace 1 is zero for them, so they and their key are
disabled in the same run, right after the new credential passed its test; and when the account
has fewer free key slots than ``min_free_slots``, the disabled keys of revoked versions are deleted
before grace 2, oldest first, so repeated forced rotations never exhaust the slots.

Delayed destruction. On a secret with ``versionDestroyTtl`` a destroy only disables the version and
sets ``scheduledDestroyTime``; such a version counts as destroyed (no second destroy is planned, a
note gives the time) and is forgotten once Secret Manager has destroyed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from gatehouse.rotation.ports import KeyInfo, KeyPolicy, SecretInfo, VersionInfo, VersionState
from gatehouse.rotation.settings import RotationSettings, format_duration
from gatehouse.rotation.state import RECORD, Record, RotationState, format_time, read_state
from gatehouse.rotation.target import Kind, Target, TargetError

CURRENT = "current"
PENDING = "pending"
REJECTION_BACKOFF_CAP = timedelta(days=30)
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
    # the force is a leak response: the replaced credential is disabled as soon as the new one
    # passed its test (no grace 1) and its disabled key may go early when key slots run short
    revoke: bool = False


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
    force: datetime | None = None  # recorded with the intent: any later run completes the force
    revoke: bool = False

    def describe(self) -> str:
        forced = ""
        if self.force is not None:
            forced = f"; forced for credentials created before {format_time(self.force)}"
            forced += ", the replaced one is revoked at once" if self.revoke else ""
        return (
            "begin a rotation (then create, test, finish): record the intent before creating anything "
            f"(base version {self.base}{forced})"
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
    mirrors: tuple[int, ...] = ()  # mirrors of the old current, retired with it
    revoke: bool = False  # a forced rotation: the old credential is disabled now, not after grace 1

    def describe(self) -> str:
        if self.previous and self.revoke:
            old = (
                f"; version {self.previous} becomes previous and, as this is a forced rotation, is "
                "revoked: disabled with its credential now that the new one passed its test"
            )
        else:
            old = f"; version {self.previous} becomes previous (grace 1 starts)" if self.previous else ""
        copies = ", ".join(str(m) for m in self.mirrors)
        retired = f"; its mirror(s) {copies} are retired with it" if copies else ""
        return f"make version {self.version} current{old}{retired}"


@dataclass(frozen=True)
class AddMirror:
    source: int

    def describe(self) -> str:
        return (
            f"add a copy of current version {self.source} as a new version, so that latest names a "
            "valid credential before the rejected pending version is disabled"
        )


@dataclass(frozen=True)
class RecordMirror:
    versions: tuple[int, ...]  # copies of ``of`` added by this abandon
    of: int
    key_id: str | None
    supersedes: tuple[int, ...] = ()  # older mirrors of ``of``: retired now, latest moved past them

    def describe(self) -> str:
        copies = ", ".join(str(v) for v in self.versions)
        key = f" (key {self.key_id})" if self.key_id else ""
        older = ", ".join(str(v) for v in self.supersedes)
        retired = f"; older mirror(s) {older} retired" if older else ""
        return f"note version(s) {copies} as mirror(s) of current version {self.of}{key}{retired}"


@dataclass(frozen=True)
class DisableRejected:
    version: int

    def describe(self) -> str:
        return f"disable pending version {self.version} (it failed its test)"


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
    | AddMirror
    | RecordMirror
    | DisableRejected
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
    deferred: str | None = None  # a rotation is due but backs off after repeated rejections
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
        # what ``latest`` names: the highest-numbered version, whatever its state
        self.newest = max(self.versions, default=None)
        self.due: list[str] = []
        self.notes: list[str] = []
        self.forced = False  # a forced rotation made the current credential due

    def plan(self) -> Plan:
        retire = self._retirement()
        rotation = self._rotation()
        self._latest_note()
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
        backoff = self._backoff()
        if backoff:
            return Plan(deferred=backoff)
        refusal = self._preflight()
        if refusal:
            return Plan(refusal=refusal)
        return Plan(steps=(self._begin(),))

    def _begin(self) -> Begin:
        forced = self._force() if self.forced else None
        return Begin(
            max(self.versions, default=0),
            frozenset(self.keys),
            force=forced,
            revoke=forced is not None and self._revoke(),
        )

    def _force(self) -> datetime | None:
        """The force in effect: the command's, or the one recorded with an interrupted intent."""
        record = self.state.record
        recorded = record.force if record is not None else None
        return max((t for t in (self.ctx.force_before, recorded) if t is not None), default=None)

    def _revoke(self) -> bool:
        record = self.state.record
        return (self.ctx.revoke and self.ctx.force_before is not None) or (
            record is not None and record.revoke
        )

    def _backoff(self) -> str | None:
        """After rotations abandoned in a row (the new credential failed its test), wait 1d, 2d,
        4d ... (at most REJECTION_BACKOFF_CAP) before the next attempt; the first retry is at once
        (one damaged value is not a broken tester). A forced rotation does not wait."""
        rejections = self.state.rejections
        if rejections is None or rejections.count < 2 or self.forced:
            return None
        wait = min(timedelta(days=2 ** min(rejections.count - 2, 16)), REJECTION_BACKOFF_CAP)
        after = rejections.last + wait
        if self.now >= after:
            self.due.append(
                f"the new credential failed its test {rejections.count} times in a row; trying again "
                f"after a {format_duration(wait)} backoff"
            )
            return None
        return (
            f"rotation due but backing off: the new credential failed its test {rejections.count} times "
            f"in a row (last {format_time(rejections.last)}); next attempt after {format_time(after)} "
            f"(exponential backoff 1d, 2d, 4d ... at most {format_duration(REJECTION_BACKOFF_CAP)}); fix "
            "the test or the credential's consumers' check, or force a rotation"
        )

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
            # race) or someone disabled it
            why = "failed its test" if record.rejected is not None else "is not enabled"
            self.due.append(f"pending version {number} {why}: abandon rotation {record.id}")
            return Plan(steps=(self._abandon(number, enabled=enabled),))
        self.due.append(f"rotation {record.id} is in progress (pending version {number})")
        if record.tested is not None:
            old = self.versions.get(self.current) if self.current is not None else None
            keep = old is not None and old.number != number and old.state is not VersionState.DESTROYED
            mirrors = (
                tuple(m for m in self.state.copies_of(self.current) if m not in self.state.retired)
                if self.current is not None and self.current != number
                else ()
            )
            step = Finish(number, old.number if keep and old else None, mirrors, revoke=record.revoke)
            return Plan(steps=(step,))
        return Plan(steps=(Test(number, self.key_ids.get(number)),))

    def _abandon(self, number: int, *, enabled: bool) -> Step:
        """The next abandon step; ``latest`` names a valid copy of ``current`` before the rejected
        version is disabled (see the module docstring)."""
        current = self.versions.get(self.current) if self.current is not None else None
        source = current if current is not None and current.state is VersionState.ENABLED else None
        fresh = self._fresh_mirrors(number)
        if fresh and self.current is not None:
            keep = max(fresh)
            older = [*self.state.copies_of(self.current), *fresh]
            supersedes = tuple(m for m in older if m != keep and m not in self.state.retired)
            return RecordMirror(tuple(fresh), self.current, self.key_ids.get(self.current), supersedes)
        newest = self.versions[self.newest] if self.newest is not None else None
        latest_at_risk = newest is None or newest.number == number or newest.state is not VersionState.ENABLED
        if source is not None and latest_at_risk:
            return AddMirror(source.number)
        if enabled:
            if latest_at_risk:
                self.notes.append(
                    f"there is no enabled {CURRENT} to copy: latest names the rejected version {number} "
                    "until a new version is added"
                )
            return DisableRejected(number)
        key_id = self.key_ids.get(number)
        if key_id is not None and key_id in self.keys and not self._held_elsewhere(key_id, number):
            return DeleteKey(key_id, number)
        # a key this rotation created that no version maps (the rejected payload was not a key file
        # and the process that knew the id from IAM was killed): found while the record still says
        # when the rotation began, gone with it otherwise
        orphans = self._orphans()
        if orphans:
            return RemoveOrphan(orphans[0])
        return ReleasePending(number)

    def _fresh_mirrors(self, pending: int) -> list[int]:
        """Enabled versions above the pending one that nothing claims: while the rotation record
        holds the rotation, only its abandon adds versions, so they are copies of ``current``."""
        if self.current is None:
            return []
        claimed = set(self.aliases.values()) | set(self.state.retired) | set(self.state.mirrors)
        source_key = self.key_ids.get(self.current)
        return sorted(
            n
            for n, v in self.versions.items()
            if n > pending
            and v.state is VersionState.ENABLED
            and n not in claimed
            # a payload already read that holds another key is not a copy (not ours: left alone)
            and (not self.sa_key or self.key_ids.get(n) in (None, source_key))
        )

    def _held_elsewhere(self, key_id: str, number: int) -> bool:
        """Whether a version other than ``number`` that is not retired holds ``key_id``."""
        active = (self.current, self.pending)
        return any(
            k == key_id and n != number and (n not in self.state.retired or n in active)
            for n, k in self.key_ids.items()
        )

    def _recorded(self, record: Record) -> Plan:
        claimed = set(self.aliases.values()) | set(self.state.retired) | set(self.state.mirrors)
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
        return Plan(steps=(self._begin(),))

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
        force = self._force()
        if force is not None and version.create_time < force:
            self.forced = True
            leak = "; the replaced credential is revoked at once (leak response)" if self._revoke() else ""
            reasons.append(f"rotation requested for credentials created before {format_time(force)}{leak}")
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

    def _slot_relief(self, holders: Mapping[str, list[int]]) -> set[str]:
        """Disabled keys of revoked versions (replaced by a forced rotation: leaked) to delete before
        grace 2 when the account has fewer free key slots than a rotation needs, oldest first: forced
        rotations must never exhaust the slots."""
        if not self.sa_key:
            return set()
        short = self.settings.min_free_slots - (self.settings.key_limit - len(self.keys))
        if short <= 0:
            return set()
        candidates = sorted(
            (self.keys[k].valid_after, k)
            for k, numbers in holders.items()
            if k in self.keys
            and self.keys[k].disabled
            and all(n in self.state.revoked for n in numbers)
            and not self._held_elsewhere(k, numbers[0])
        )
        relief = {k for _, k in candidates[:short]}
        if relief:
            self.due.append(
                f"{self.target.service_account} has {short} key slot(s) too few: delete the disabled "
                f"key(s) of revoked version(s) early ({', '.join(sorted(relief))})"
            )
        return relief

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

    def _latest_note(self) -> None:
        newest = self.versions.get(self.newest) if self.newest is not None else None
        if newest is not None and newest.state is not VersionState.ENABLED:
            self.notes.append(
                f"latest names version {newest.number}, which is {newest.state}: reading latest fails "
                f"(FAILED_PRECONDITION) until a new version is added; consumers should read {CURRENT}"
            )

    # -- retirement -----------------------------------------------------------------------------

    def _retirement(self) -> list[Step]:
        """Grace 1 and 2 for retired versions and their keys. A key shared by several versions (a
        mirror and its original) is retired with the last of them: it is disabled or deleted only
        once no version that is not retired holds it, counting from when the last holder retired,
        and it is handled once, at its lowest retired holder. The newest version is never disabled
        or destroyed (``latest`` names it)."""
        steps: list[Step] = []
        active = (self.current, self.pending)
        retired = {n: at for n, at in self.state.retired.items() if n not in active}
        holders: dict[str, list[int]] = {}
        for n in sorted(retired):
            if (held := self.key_ids.get(n)) is not None:
                holders.setdefault(held, []).append(n)
        relief = self._slot_relief(holders)
        for number, retired_at in sorted(retired.items()):
            version = self.versions.get(number)
            gone = version is None or version.state is VersionState.DESTROYED
            # a destroy on a secret with versionDestroyTtl only disabled it until scheduledDestroyTime:
            # it counts as destroyed (nothing more to do but wait), and is forgotten once it is gone
            pending_destroy = version is not None and version.destroy_pending
            alive = not gone and not pending_destroy
            enabled = version is not None and version.state is VersionState.ENABLED
            # a version a forced rotation replaced is revoked at once: grace 1 is zero
            disable_after = timedelta(0) if number in self.state.revoked else self.target.disable_after
            newest = number == self.newest
            key_id = self.key_ids.get(number)
            key = self.keys.get(key_id) if key_id else None
            key_first: list[Step] = []
            key_last: list[Step] = []
            if (
                key is not None
                and key_id is not None
                and holders[key_id][0] == number
                and not self._held_elsewhere(key_id, number)
            ):
                since = max(retired[n] for n in holders[key_id])
                revoked = all(n in self.state.revoked for n in holders[key_id])
                key_grace = timedelta(0) if revoked else self.target.disable_after
                if self.now >= since + self.target.delete_after or key_id in relief:
                    key_first.append(DeleteKey(key_id, number))
                elif self.now >= since + key_grace and not key.disabled:
                    key_last.append(DisableKey(key_id, number))
            if self.now >= retired_at + self.target.delete_after:
                destroy = [DestroyVersion(number)] if alive and not newest else []
                steps += [*key_first, *destroy, *key_last]
                # forgotten once its key is gone, or lives on in a version that is not retired
                key_done = key is None or (key_id is not None and self._held_elsewhere(key_id, number))
                if gone and key_done:
                    steps.append(Forget(number))
                elif key_first or destroy or key_last:
                    self.due.append(
                        f"version {number}: grace 2 ({format_duration(self.target.delete_after)}) "
                        f"over since {format_time(retired_at + self.target.delete_after)}"
                    )
                if pending_destroy and version is not None and version.scheduled_destroy is not None:
                    self.notes.append(
                        f"version {number} counts as destroyed: the secret's versionDestroyTtl delays "
                        f"its destruction until {format_time(version.scheduled_destroy)} (DISABLED until "
                        "then); no further destroy is requested"
                    )
            elif self.now >= retired_at + disable_after:
                why = (
                    "revoked: replaced by a forced rotation"
                    if number in self.state.revoked
                    else "grace 1 over"
                )
                disable = [DisableVersion(number, why)] if enabled and not newest else []
                steps += [*key_first, *disable, *key_last]
                if key_first or disable or key_last:
                    self.due.append(
                        f"version {number}: replaced by a forced rotation at {format_time(retired_at)}: "
                        "revoked at once (no grace 1)"
                        if number in self.state.revoked
                        else f"version {number}: grace 1 ({format_duration(self.target.disable_after)}) "
                        f"over since {format_time(retired_at + self.target.disable_after)}"
                    )
            else:
                steps += [*key_first, *key_last]
            if newest and alive and self.now >= retired_at + self.target.disable_after:
                self.notes.append(
                    f"retired version {number} is the newest version, which latest names: it is left "
                    "as it is until a newer version is added"
                )
        return steps
