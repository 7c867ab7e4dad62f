"""Apply a target's plan one step at a time, re-reading the world between steps.

Each iteration reads the secret, its versions and (for keys) the account's keys and policies,
asks the pure planner for the next steps, applies the first one and starts over. Nothing is
carried from one step to the next except which rotation records this process wrote (only their
writer may create material) and key ids already read from version payloads (a version's payload
never changes). So a step that fails, conflicts or is interrupted is simply planned again from the
state the systems now hold:

* an etag conflict (another runner wrote first) or a version no longer in the state the step
  expected: re-read and re-plan, at most ``max_conflicts`` times;
* a ``TransientError``: stop this target; the next run resumes where the systems say it stopped;
* a new credential that fails its test: record the rejection (etag-guarded, so a concurrent
  finish cannot promote it), then the plan abandons it: add a copy of ``current``'s material as a
  new version and note it as a mirror (Secret Manager's ``latest`` is the highest-numbered version
  whatever its state, so ``latest`` must name a valid credential before the rejected version is
  disabled), then disable the rejected version, delete its key, release ``pending``. The next run
  starts over;
* IAM refusing to create a key (FAILED_PRECONDITION): report the refusal with the advice to use
  workload identity or impersonation, and clear the rotation record.

Material goes from IAM or the generator straight into AddSecretVersion, from AccessSecretVersion
straight into a check, and (for a mirror) from AccessSecretVersion of ``current`` straight into
AddSecretVersion; it is never logged, reported or put in an exception.

A guard below the planner: a retirement step (disable or destroy a version) never touches the
highest-numbered version, which ``latest`` names; and a rejected pending version that is the newest
is disabled only when there is no enabled ``current`` a mirror could have copied. Either would be a
planner bug: the target fails instead.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from gatehouse.errors import ConflictError, GatehouseError, NotFoundError, PermanentError, TransientError
from gatehouse.logging import event, get_logger, redact
from gatehouse.rotation import plan as p
from gatehouse.rotation.consumers import assess
from gatehouse.rotation.generate import GeneratorSpec, generate
from gatehouse.rotation.material import Material, crc32c
from gatehouse.rotation.ports import (
    Consumers,
    CredentialRejectedError,
    KeyPolicy,
    RotationPorts,
    VersionInfo,
    VersionState,
)
from gatehouse.rotation.report import Action, ConsumerRow, KeyRow, TargetReport, VersionRow
from gatehouse.rotation.settings import RotationSettings
from gatehouse.rotation.state import Record, Rejections, RotationState, read_state, write_state
from gatehouse.rotation.target import Kind, Target, TargetError
from gatehouse.rotation.verify import check_generated, check_key_file, key_id_of

_log = get_logger("rotation")
FAILED_PRECONDITION = "FAILED_PRECONDITION"
_ABANDON = (
    p.AddMirror,
    p.RecordMirror,
    p.DisableRejected,
    p.DisableVersion,
    p.DeleteKey,
    p.RemoveOrphan,
    p.ReleasePending,
)


class _ReplanError(Exception):
    """The step found the world changed under it: re-read and plan again."""


class _RefusedError(Exception):
    def __init__(self, refusal: p.Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


@dataclass
class RunState:
    """Shared by the targets of one run: who we are and what we already read."""

    settings: RotationSettings
    own_rotations: set[str] = field(default_factory=set)
    policies: dict[str, KeyPolicy] = field(default_factory=dict)


def new_rotation_id(now: datetime) -> str:
    return f"r{now:%Y%m%dt%H%M%S}-{secrets.token_hex(3)}"


class TargetRunner:
    """Runs one target to a fixed point (or to its first failure) and reports what happened."""

    def __init__(
        self,
        target: Target,
        ports: RotationPorts,
        run: RunState,
        *,
        plan_only: bool = False,
        force_before: datetime | None = None,
        revoke: bool = False,
    ) -> None:
        self.target = target
        self.ports = ports
        self.run = run
        self.settings = run.settings
        self.plan_only = plan_only
        self.force_before = force_before
        self.revoke = revoke
        self.name = target.secret
        self.key_ids: dict[int, str] = {}  # version -> key id read from its payload
        self.read_versions: set[int] = set()  # payloads already read (a payload never changes)
        self.actions: list[Action] = []
        self.due: list[str] = []
        self.rotation_id: str | None = None
        self.finished = False  # a Finish step was applied: the target rotated in this run
        self.rejection: str | None = None  # why a new credential failed its test in this run

    # -- reading --------------------------------------------------------------------------------

    def load(self) -> p.Snapshot:
        store = self.ports.secrets
        secret = store.get_secret(self.name)
        versions = tuple(store.list_secret_versions(self.name))
        if self.target.kind is not Kind.SA_KEY:
            return p.Snapshot(secret=secret, versions=versions)
        email = self.target.service_account or ""
        keys = tuple(self.ports.keys.list_service_account_keys(email))
        project = self.target.account_project or ""
        if project not in self.run.policies:
            self.run.policies[project] = self.ports.policies.key_policy(project)
        self._resolve_key_ids(secret.annotations, secret.version_aliases, versions)
        return p.Snapshot(
            secret=secret,
            versions=versions,
            keys=keys,
            key_policy=self.run.policies[project],
            resolved_key_ids=dict(self.key_ids),
        )

    def _resolve_key_ids(
        self, annotations: Mapping[str, str], aliases: Mapping[str, int], versions: tuple[VersionInfo, ...]
    ) -> None:
        """Read the key id of versions the planner may need that the state does not map yet: the
        newest enabled one (adoption, a version stored before a crash) and aliased ones."""
        try:
            mapped = read_state(annotations).key_ids
        except TargetError:
            return  # the planner reports the malformed annotation
        enabled = {v.number for v in versions if v.state is VersionState.ENABLED}
        wanted = {n for n in aliases.values() if n in enabled}
        if enabled:
            wanted.add(max(enabled))
        for number in sorted(wanted - set(mapped) - self.read_versions):
            accessed = self.ports.secrets.access_secret_version(self.name, str(number))
            self.read_versions.add(number)
            key_id = key_id_of(accessed.payload)
            if key_id:
                self.key_ids[number] = key_id

    # -- the loop -------------------------------------------------------------------------------

    def run_target(self) -> TargetReport:
        status, reason = "unchanged", ""
        notes: tuple[str, ...] = ()
        planned: tuple[str, ...] = ()
        snap: p.Snapshot | None = None
        conflicts = 0
        first = True
        try:
            for _ in range(self.settings.max_steps):
                snap = self.load()
                now = self.ports.clock.now()
                ctx = p.Context(
                    now=now,
                    settings=self.settings,
                    own_rotations=frozenset(self.run.own_rotations),
                    force_before=self.force_before,
                    revoke=self.revoke,
                )
                plan = p.plan(self.target, snap, ctx)
                notes = plan.notes
                if first:
                    # what was due when this run found the target; later plans follow from our steps
                    self.due, first = list(plan.due), False
                self._note_rotation(snap)
                if plan.skip:
                    return self._report(snap, "skipped", plan.skip, notes)
                if plan.error:
                    return self._report(snap, "failed", plan.error, notes)
                if plan.busy:
                    return self._report(snap, "busy", plan.busy, notes)
                if plan.refusal and not plan.steps:
                    status, reason = "refused", plan.refusal.message
                    break
                if self.plan_only:
                    planned = tuple(step.describe() for step in plan.steps)
                    if plan.refusal:
                        status, reason = "refused", plan.refusal.message
                    elif plan.deferred and not planned:
                        status, reason = "failed", plan.deferred
                    elif planned:
                        status, reason = "planned", "; ".join(plan.due)
                    break
                if not plan.steps:
                    if plan.deferred:
                        status, reason = "failed", plan.deferred
                    break
                if self.rejection and not isinstance(plan.steps[0], _ABANDON):
                    break  # after a rejection only the abandon steps run; the next run starts over
                try:
                    self._apply(plan.steps[0], snap, now)
                except ConflictError as exc:
                    conflicts += 1
                    self._record(now, plan.steps[0].describe(), "conflict (re-planned)", str(exc))
                    if conflicts > self.settings.max_conflicts:
                        raise TransientError(f"gave up after {conflicts} concurrent changes") from None
                except _ReplanError as exc:
                    conflicts += 1
                    self._record(now, plan.steps[0].describe(), "re-planned", str(exc))
                    if conflicts > self.settings.max_conflicts:
                        raise TransientError(f"gave up after {conflicts} re-plans: {exc}") from None
                except CredentialRejectedError as exc:
                    self._record(now, plan.steps[0].describe(), "failed", str(exc))
            else:
                raise PermanentError(f"no fixed point after {self.settings.max_steps} steps")
        except _RefusedError as exc:
            status, reason = "refused", exc.refusal.message
        except GatehouseError as exc:
            kind = "transient" if isinstance(exc, TransientError) else type(exc).__name__
            status, reason = "failed", f"{kind}: {redact(str(exc))}"
        except Exception as exc:  # a bug or an unmapped client error: this target fails, others go on
            status, reason = "failed", f"unexpected {type(exc).__name__}: {redact(str(exc))}"
        if self.rejection and status not in ("failed", "refused"):
            status = "failed"
            reason = f"the new credential failed its test: {self.rejection}; that rotation was abandoned"
        elif status == "unchanged":
            status, reason = self._outcome()
        if status in ("failed", "refused"):
            event(
                _log, "rotation target " + status, level=logging.WARNING, secret_name=self.name, reason=reason
            )
        return self._report(snap, status, reason, notes, planned)

    def _note_rotation(self, snap: p.Snapshot) -> None:
        raw = snap.secret.annotations
        try:
            record = read_state(raw).record
        except TargetError:
            return
        if record is not None:
            self.rotation_id = record.id

    def _outcome(self) -> tuple[str, str]:
        done = [a for a in self.actions if a.result == "done"]
        if self.finished:
            return "rotated", "; ".join(self.due)
        if done:
            return "maintained", "; ".join(self.due)
        return "unchanged", "nothing due"

    def _record(self, at: datetime, step: str, result: str, detail: str = "") -> None:
        self.actions.append(Action(at=at, step=step, result=result, detail=redact(detail)))
        event(_log, "rotation step", secret_name=self.name, step=step, result=result, detail=redact(detail))

    # -- steps ----------------------------------------------------------------------------------

    def _apply(self, step: p.Step, snap: p.Snapshot, now: datetime) -> None:
        detail = ""
        match step:
            case p.Adopt(version=n, key_id=key_id):
                created = next(v.create_time for v in snap.versions if v.number == n)
                self._update(
                    snap,
                    aliases={p.CURRENT: n},
                    state=lambda s: replace(s, key_ids=_put(s.key_ids, n, key_id), current_since=created),
                )
            case p.Begin(base=base, known_keys=known, force=force, revoke=revoke):
                rotation_id = new_rotation_id(now)
                record = Record(
                    rotation_id, self.settings.holder, now, base, known, force=force, revoke=revoke
                )
                self._update(snap, state=lambda s: replace(s, record=record))
                self.run.own_rotations.add(rotation_id)
                self.rotation_id = rotation_id
                detail = f"rotation {rotation_id}"
            case p.Create():
                detail = self._create()
            case p.RemoveOrphan(key_id=key_id):
                email = self.target.service_account or ""
                detail = _gone_ok(lambda: self.ports.keys.disable_service_account_key(email, key_id))
                detail = _gone_ok(lambda: self.ports.keys.delete_service_account_key(email, key_id)) or detail
            case p.MarkPending(version=n, key_id=key_id):
                self._update(
                    snap,
                    aliases={p.PENDING: n},
                    state=lambda s: replace(s, key_ids=_put(s.key_ids, n, key_id)),
                )
            case p.Test(version=n, key_id=key_id):
                try:
                    self._test(n, key_id)
                except CredentialRejectedError as exc:
                    # recorded before anything else: a concurrent finish now loses the etag race
                    self.rejection = str(exc)
                    self._update(snap, state=lambda s: _mark(s, rejected=True, at=now))
                    raise
                self._update(snap, state=lambda s: _mark(s, rejected=False, at=now))
            case p.Finish(version=n, previous=old, mirrors=copies, revoke=revoke):
                aliases: dict[str, int | None] = {p.CURRENT: n, p.PENDING: None}
                if old is not None:
                    aliases[p.PREVIOUS] = old
                replaced = {**_put({}, old, now), **dict.fromkeys(copies, now)}
                self._update(
                    snap,
                    aliases=aliases,
                    state=lambda s: replace(
                        s,
                        record=None,
                        retired={**s.retired, **replaced},
                        revoked={**s.revoked, **replaced} if revoke else s.revoked,
                        current_since=now,
                        rejections=None,
                    ),
                )
                self.finished = True
            case p.AddMirror(source=n):
                detail = self._add_mirror(n)
            case p.RecordMirror(versions=copies, of=original, key_id=key_id, supersedes=older):
                self._update(
                    snap,
                    state=lambda s: replace(
                        s,
                        mirrors={**s.mirrors, **dict.fromkeys(copies, original)},
                        key_ids={**s.key_ids, **{c: key_id for c in copies if key_id}},
                        retired={**s.retired, **dict.fromkeys(older, now)},
                    ),
                )
            case p.DisableRejected(version=n):
                self._guard_newest(step, snap, n)
                self._version_op(self.ports.secrets.disable_secret_version, snap, n)
            case p.DisableVersion(version=n):
                self._guard_newest(step, snap, n)
                self._version_op(self.ports.secrets.disable_secret_version, snap, n)
            case p.DestroyVersion(version=n):
                self._guard_newest(step, snap, n)
                self._version_op(self.ports.secrets.destroy_secret_version, snap, n)
            case p.DisableKey(key_id=key_id):
                email = self.target.service_account or ""
                detail = _gone_ok(lambda: self.ports.keys.disable_service_account_key(email, key_id))
            case p.DeleteKey(key_id=key_id):
                email = self.target.service_account or ""
                detail = _gone_ok(lambda: self.ports.keys.delete_service_account_key(email, key_id))
            case p.Forget(version=n):
                drop = {p.PREVIOUS: None} if snap.secret.version_aliases.get(p.PREVIOUS) == n else {}
                self._update(
                    snap,
                    aliases=drop,
                    state=lambda s: replace(
                        s,
                        retired=_drop(s.retired, n),
                        key_ids=_drop(s.key_ids, n),
                        mirrors=_drop(s.mirrors, n),
                        revoked=_drop(s.revoked, n),
                    ),
                )
            case p.ReleasePending(version=n):
                alive = any(v.number == n and v.state is not VersionState.DESTROYED for v in snap.versions)
                self._update(
                    snap,
                    aliases={p.PENDING: None},
                    state=lambda s: replace(
                        s,
                        record=None,
                        retired=_put(s.retired, n if alive else None, now),
                        key_ids=s.key_ids if alive else _drop(s.key_ids, n),
                        rejections=_rejected_again(s, now),
                    ),
                )
            case p.ClearRecord():
                self._update(snap, state=lambda s: replace(s, record=None))
        self._record(now, step.describe(), "already done" if detail == "already gone" else "done", detail)

    def _update(
        self,
        snap: p.Snapshot,
        *,
        aliases: Mapping[str, int | None] | None = None,
        state: Callable[[RotationState], RotationState] | None = None,
    ) -> None:
        """One UpdateSecret with the snapshot's etag; only the fields that change are sent."""
        secret = snap.secret
        new_aliases = None
        if aliases:
            merged = {**secret.version_aliases, **aliases}
            new_aliases = {k: v for k, v in merged.items() if v is not None}
        new_annotations = None
        if state is not None:
            new_annotations = write_state(secret.annotations, state(read_state(secret.annotations)))
        self.ports.secrets.update_secret(
            self.name,
            etag=secret.etag,
            version_aliases=new_aliases if new_aliases != dict(secret.version_aliases) else None,
            annotations=new_annotations if new_annotations != dict(secret.annotations) else None,
        )

    def _guard_newest(self, step: p.Step, snap: p.Snapshot, number: int) -> None:
        """Refuse a step that would leave ``latest`` (the highest-numbered version) unreadable."""
        newest = max((v.number for v in snap.versions), default=None)
        if number != newest:
            return
        if isinstance(step, p.DisableRejected):
            current = snap.secret.version_aliases.get(p.CURRENT)
            if not any(v.number == current and v.state is VersionState.ENABLED for v in snap.versions):
                return  # nothing valid to copy: latest cannot be kept readable
        raise PermanentError(
            f"refusing to {step.describe()}: version {number} is the newest, which latest names "
            "(a planner bug; nothing was changed)"
        )

    def _add_mirror(self, source: int) -> str:
        """AddSecretVersion with a copy of version ``source``: the material goes straight across."""
        try:
            accessed = self.ports.secrets.access_secret_version(self.name, str(source))
        except PermanentError as exc:
            if exc.reason == FAILED_PRECONDITION and not isinstance(exc, ConflictError):
                raise _ReplanError(f"version {source} is no longer enabled") from None
            raise
        data = accessed.payload.reveal()
        if accessed.crc32c is not None and accessed.crc32c != crc32c(data):
            raise TransientError(f"version {source} was read with a CRC32C mismatch")
        number = self.ports.secrets.add_secret_version(self.name, accessed.payload, crc32c=crc32c(data))
        if self.target.kind is Kind.SA_KEY:
            key_id = key_id_of(accessed.payload)
            if key_id:
                self.key_ids[number] = key_id
            self.read_versions.add(number)
        return f"version {number} holds a copy of version {source}"

    def _version_op(self, call: Any, snap: p.Snapshot, number: int) -> None:
        version = next(v for v in snap.versions if v.number == number)
        try:
            call(self.name, number, etag=version.etag)
        except PermanentError as exc:
            if exc.reason == FAILED_PRECONDITION and not isinstance(exc, ConflictError):
                raise _ReplanError(f"version {number} changed state") from None
            raise

    def _create(self) -> str:
        if self.target.kind is Kind.SA_KEY:
            email = self.target.service_account or ""
            try:
                new = self.ports.keys.create_service_account_key(email)
            except PermanentError as exc:
                if exc.reason != FAILED_PRECONDITION:
                    raise
                refusal = p.Refusal(
                    "iam-refused",
                    f"IAM refused to create a key for {email} (FAILED_PRECONDITION: the account has "
                    f"{self.settings.key_limit} keys, or an organization policy such as "
                    "iam.disableServiceAccountKeyCreation or "
                    f"iam.managed.disableServiceAccountKeyCreation forbids key creation): {p.ADVICE}",
                )
                self._record(self.ports.clock.now(), p.Create(Kind.SA_KEY).describe(), "refused", str(exc))
                self._clear_record_quietly()
                raise _RefusedError(refusal) from None
            payload = new.private_key_data
            number = self.ports.secrets.add_secret_version(
                self.name, payload, crc32c=crc32c(payload.reveal())
            )
            self.key_ids[number] = new.key_id
            self.read_versions.add(number)
            return f"key {new.key_id} stored as version {number}"
        value = Material(generate(self._spec()).encode("ascii"))
        number = self.ports.secrets.add_secret_version(self.name, value, crc32c=crc32c(value.reveal()))
        return f"stored as version {number}"

    def _spec(self) -> GeneratorSpec:
        if self.target.generator is None:  # parse_target always sets it for generated secrets
            raise PermanentError(f"{self.name}: generated target without a generator spec")
        return self.target.generator

    def _clear_record_quietly(self) -> None:
        """After a refusal the record must not linger; if this write fails, the next run clears it."""
        try:
            snap = self.load()
            self._update(snap, state=lambda s: replace(s, record=None))
        except GatehouseError as exc:
            event(
                _log,
                "could not clear the rotation record",
                level=logging.WARNING,
                secret_name=self.name,
                error=str(exc),
            )

    def _test(self, number: int, key_id: str | None) -> None:
        try:
            accessed = self.ports.secrets.access_secret_version(self.name, str(number))
        except PermanentError as exc:
            if exc.reason == FAILED_PRECONDITION and not isinstance(exc, ConflictError):
                raise _ReplanError(f"version {number} is no longer enabled") from None
            raise
        if self.target.kind is Kind.SA_KEY:
            email = self.target.service_account or ""
            public = None
            if key_id is not None:
                try:
                    public = self.ports.keys.get_public_key(email, key_id)
                except NotFoundError:
                    raise TransientError(f"IAM does not show key {key_id} yet (propagation)") from None
            check_key_file(accessed.payload, email=email, key_id=key_id, public_key_pem=public)
            if self.settings.token_exchange:
                if self.ports.token_exchange is None:
                    raise PermanentError("token_exchange is on but no TokenExchange port is configured")
                self.ports.token_exchange.exchange(accessed.payload)
        else:
            check_generated(accessed.payload, accessed.crc32c, self._spec())

    # -- consumers and the report ---------------------------------------------------------------

    def _report(
        self,
        snap: p.Snapshot | None,
        status: str,
        reason: str,
        notes: tuple[str, ...],
        planned: tuple[str, ...] = (),
    ) -> TargetReport:
        report = TargetReport(
            secret=self.name,
            status=status,
            reason=reason,
            kind=self.target.kind.value,
            service_account=self.target.service_account,
            policy=self.target.describe(),
            rotation_id=self.rotation_id,
            due=tuple(self.due),
            planned=planned,
            notes=notes,
        )
        if snap is None:
            return replace(report, actions=tuple(self.actions))
        try:
            snap = self.load() if self.actions else snap
        except GatehouseError as exc:
            notes = (*notes, f"final state could not be read: {redact(str(exc))}")
        report = replace(report, notes=notes, **_inventory(snap, self.ports.clock.now()))
        if self.ports.consumers is not None and status != "skipped":
            report = self._consumers(self.ports.consumers, report, snap)
        return replace(report, actions=tuple(self.actions))

    def _consumers(self, consumers: Consumers, report: TargetReport, snap: p.Snapshot) -> TargetReport:
        try:
            refs = consumers.list_consumers(self.name)
            state = read_state(snap.secret.annotations)
        except (GatehouseError, TargetError) as exc:
            return replace(
                report, notes=(*report.notes, f"consumers could not be listed: {redact(str(exc))}")
            )
        findings = assess(
            refs,
            aliases=snap.secret.version_aliases,
            states={v.number: v.state for v in snap.versions},
            current_since=state.current_since,
        )
        rows = []
        failed = ""
        roll = self.settings.roll_consumers and not self.plan_only and not report.failed
        for f in findings:
            rolled = None
            if roll and f.roll_to is not None:
                now = self.ports.clock.now()
                step = f"roll {f.consumer.kind} {f.consumer.name} to read {f.roll_to}"
                try:
                    rolled = consumers.roll(f.consumer, version=f.roll_to)
                    self._record(now, step, "done", rolled)
                except GatehouseError as exc:
                    failed = f"rolling {f.consumer.name} failed: {redact(str(exc))}"
                    self._record(now, step, "failed", str(exc))
            c = f.consumer
            rows.append(
                ConsumerRow(
                    c.name, c.kind, c.container, c.via, c.detail, c.version, f.severity, f.message, rolled
                )
            )
        report = replace(report, consumers=tuple(rows))
        if failed:
            report = replace(report, status="failed", reason=failed)
        return report


def _inventory(snap: p.Snapshot, now: datetime) -> dict[str, Any]:
    """Version and key rows for the report, roles derived from aliases and state."""
    try:
        state = read_state(snap.secret.annotations)
    except TargetError:
        state = RotationState()
    roles: dict[int, list[str]] = {}
    for alias, number in sorted(snap.secret.version_aliases.items()):
        roles.setdefault(number, []).append(alias)
    if snap.versions:  # latest: the highest-numbered version, whatever its state
        roles.setdefault(max(v.number for v in snap.versions), []).append("latest")
    for number in state.mirrors:
        roles.setdefault(number, []).append("mirror")
    for number in state.retired:
        roles.setdefault(number, []).append("retired")
    for number in state.revoked:
        roles.setdefault(number, []).append("revoked")
    versions = tuple(
        VersionRow(
            number=v.number,
            state=v.state.value,
            age_days=round((now - v.create_time).total_seconds() / 86400, 2),
            roles=tuple(
                roles.get(v.number) or (["unmanaged"] if v.state is not VersionState.DESTROYED else [])
            ),
            retired_at=state.retired.get(v.number),
            scheduled_destroy=v.scheduled_destroy,
        )
        for v in sorted(snap.versions, key=lambda v: -v.number)
    )
    key_ids = {**snap.resolved_key_ids, **state.key_ids}
    holders: dict[str, list[int]] = {}  # a mirror holds the same key as its original
    for number, key_id in sorted(key_ids.items()):
        holders.setdefault(key_id, []).append(number)

    def key_role(key_id: str) -> str:
        if key_id not in holders:
            return "not held by this secret"
        held = [r for n in holders[key_id] for r in roles.get(n, [])]
        return ", ".join(dict.fromkeys(held)) or "held"

    keys = tuple(
        KeyRow(
            key_id=k.key_id,
            age_days=round((now - k.valid_after).total_seconds() / 86400, 2),
            disabled=k.disabled,
            expires=k.valid_before,
            role=key_role(k.key_id),
            version=holders[k.key_id][0] if k.key_id in holders else None,
        )
        for k in sorted(snap.keys, key=lambda k: k.valid_after)
    )
    return {"versions": versions, "keys": keys}


def _rejected_again(state: RotationState, at: datetime) -> Rejections | None:
    """The rejection count after releasing an abandoned rotation (unchanged when the pending version
    was abandoned for another reason, e.g. disabled by hand)."""
    if state.record is None or state.record.rejected is None:
        return state.rejections
    count = state.rejections.count if state.rejections else 0
    return Rejections(count + 1, at)


def _mark(state: RotationState, *, rejected: bool, at: datetime) -> RotationState:
    """Record the outcome of the pending version's test in the rotation record."""
    if state.record is None:
        return state
    outcome = replace(state.record, rejected=at) if rejected else replace(state.record, tested=at)
    return replace(state, record=outcome)


def _put(mapping: Mapping[int, Any], key: int | None, value: Any) -> dict[int, Any]:
    out = dict(mapping)
    if key is not None and value is not None:
        out[key] = value
    return out


def _drop(mapping: Mapping[int, Any], key: int) -> dict[int, Any]:
    return {k: v for k, v in mapping.items() if k != key}


def _gone_ok(call: Any) -> str:
    """Run an IAM call whose target may already be gone (a concurrent or interrupted run)."""
    try:
        call()
    except NotFoundError:
        return "already gone"
    return ""
