"""The pure planner as tables: a state snapshot and a clock in, the next steps out."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gatehouse.rotation.plan import (
    AddMirror,
    Adopt,
    Begin,
    ClearRecord,
    Context,
    Create,
    DeleteKey,
    DestroyVersion,
    DisableKey,
    DisableRejected,
    DisableVersion,
    Finish,
    Forget,
    MarkPending,
    Plan,
    RecordMirror,
    ReleasePending,
    RemoveOrphan,
    Snapshot,
    Test,
    plan,
)
from gatehouse.rotation.ports import KeyInfo, KeyPolicy, SecretInfo, VersionInfo, VersionState
from gatehouse.rotation.settings import RotationSettings
from gatehouse.rotation.state import Record, RotationState, write_state
from gatehouse.rotation.target import Kind, Target, parse_target

NOW = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
NAME = "projects/p1/secrets/app-key"
SA = "app-one@proj-one.iam.gserviceaccount.com"
SETTINGS = RotationSettings(holder="task-a", job_identity="rotator@proj-one.iam.gserviceaccount.com")
ENABLED, DISABLED, DESTROYED = VersionState.ENABLED, VersionState.DISABLED, VersionState.DESTROYED
K1, K2, K3 = "k1" * 20, "k2" * 20, "k3" * 20


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def version(number: int, age_days: float, state: VersionState = ENABLED) -> VersionInfo:
    return VersionInfo(number, state, ago(age_days), f'"v{number}{state}"')


def key(key_id: str, age_days: float, *, disabled: bool = False, expires_in: float | None = None) -> KeyInfo:
    before = NOW + timedelta(days=expires_in) if expires_in is not None else None
    return KeyInfo(key_id, ago(age_days), before, disabled)


def sa_target(**annotations: str) -> Target:
    return parse_target(
        NAME, {"gatehouse-rotate": "sa-key"}, {"gatehouse-service-account": SA, **annotations}, SETTINGS
    )


def generated_target() -> Target:
    return parse_target(NAME, {"gatehouse-rotate": "generated"}, {}, SETTINGS)


def snapshot(
    versions: list[VersionInfo],
    *,
    aliases: dict[str, int] | None = None,
    state: RotationState | None = None,
    keys: list[KeyInfo] | None = None,
    policy: KeyPolicy | None = None,
    resolved: dict[int, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> Snapshot:
    base = {"gatehouse-service-account": SA, **(annotations or {})}
    secret = SecretInfo(
        name=NAME,
        labels={"gatehouse-rotate": "sa-key"},
        annotations=write_state(base, state or RotationState()),
        version_aliases=aliases or {},
        etag='"e1"',
        create_time=ago(400),
    )
    return Snapshot(secret, tuple(versions), tuple(keys or ()), policy or KeyPolicy(), resolved or {})


def steady(**state_changes: Any) -> dict[str, Any]:
    """Version 2 (key K2) current for 5 days; version 1 (key K1) previous, in grace 1."""
    state = RotationState(key_ids={1: K1, 2: K2}, retired={1: ago(5)}, current_since=ago(5))
    return {
        "versions": [version(1, 100), version(2, 5)],
        "aliases": {"current": 2, "previous": 1},
        "state": replace(state, **state_changes),
        "keys": [key(K1, 100), key(K2, 5)],
    }


def due(**state_changes: Any) -> dict[str, Any]:
    """Version 2 (key K2) current for 91 days; version 1 destroyed and forgotten long ago."""
    state = RotationState(key_ids={2: K2}, current_since=ago(91))
    return {
        "versions": [version(1, 181, DESTROYED), version(2, 91)],
        "aliases": {"current": 2},
        "state": replace(state, **state_changes),
        "keys": [key(K2, 91)],
    }


def record(**changes: Any) -> Record:
    base = Record(id="r1", holder="task-b", started=ago(1), base=2, known_keys=frozenset({K1, K2}))
    return replace(base, **changes)


def ctx(**changes: Any) -> Context:
    return replace(Context(now=NOW, settings=SETTINGS), **changes)


def run_plan(target: Target, snap: Snapshot, context: Context | None = None) -> Plan:
    return plan(target, snap, context or ctx())


# -- the rotation state machine --------------------------------------------------------------------

ROTATION_CASES = [
    ("not due: current is 5 days old", steady(), ctx(), []),
    ("due: current is 91 days old -> begin", due(), ctx(), [Begin(2, frozenset({K2}))]),
    (
        "set up by hand: adopt the newest enabled version",
        {"versions": [version(1, 30, DISABLED), version(2, 20)], "keys": [key(K2, 20)], "resolved": {2: K2}},
        ctx(),
        [Adopt(2, K2)],
    ),
    ("empty secret: create the first", {"versions": [], "keys": []}, ctx(), [Begin(0, frozenset())]),
    (
        "begun by this process: create",
        due(record=record(holder="task-a")),
        ctx(own_rotations=frozenset({"r1"})),
        [Create(Kind.SA_KEY)],
    ),
    (
        "create window of a crashed run, the same Cloud Run task retrying: recover after 2 minutes",
        due(record=record(holder="task-a", started=ago(3 / 1440))),
        ctx(),
        [Begin(2, frozenset({K2}))],
    ),
    (
        "create window: a key the killed run made was never stored -> remove that orphan first",
        {**due(record=record(started=ago(1))), "keys": [key(K2, 91), key(K3, 1 - 1 / 1440)]},
        ctx(),
        [RemoveOrphan(K3)],
    ),
    (
        "a key created well after the record's window is not ours: never removed",
        {**due(record=record(started=ago(3))), "keys": [key(K2, 91), key(K3, 1)]},
        ctx(),
        [Begin(2, frozenset({K2, K3}))],
    ),
    (
        "stored but not marked (killed after AddSecretVersion): mark it pending",
        {**due(record=record()), "versions": [version(2, 91), version(3, 0)], "resolved": {3: K3}},
        ctx(),
        [MarkPending(3, K3)],
    ),
    (
        "pending, untested: test",
        {
            **due(record=record(), key_ids={2: K2, 3: K3}),
            "versions": [version(2, 91), version(3, 0)],
            "aliases": {"current": 2, "pending": 3},
            "keys": [key(K2, 91), key(K3, 0)],
        },
        ctx(),
        [Test(3, K3)],
    ),
    (
        "pending, tested, awaiting finish: finish",
        {
            **due(record=record(tested=NOW), key_ids={2: K2, 3: K3}),
            "versions": [version(2, 91), version(3, 0)],
            "aliases": {"current": 2, "pending": 3},
            "keys": [key(K2, 91), key(K3, 0)],
        },
        ctx(),
        [Finish(3, 2)],
    ),
    (
        "pending failed its test: copy current first (latest is the newest version, whatever its state)",
        {
            **due(record=record(rejected=NOW), key_ids={2: K2, 3: K3}),
            "versions": [version(2, 91), version(3, 0)],
            "aliases": {"current": 2, "pending": 3},
            "keys": [key(K2, 91), key(K3, 0)],
        },
        ctx(),
        [AddMirror(2)],
    ),
    (
        "killed after adding the copy: note it as a mirror of current (same key), add no second one",
        {
            **due(record=record(rejected=NOW), key_ids={2: K2, 3: K3}),
            "versions": [version(2, 91), version(3, 0), version(4, 0)],
            "aliases": {"current": 2, "pending": 3},
            "keys": [key(K2, 91), key(K3, 0)],
            "resolved": {4: K2},
        },
        ctx(),
        [RecordMirror((4,), 2, K2)],
    ),
    (
        "copy noted: now disable the rejected version (latest stays on the copy)",
        {
            **due(record=record(rejected=NOW), key_ids={2: K2, 3: K3, 4: K2}, mirrors={4: 2}),
            "versions": [version(2, 91), version(3, 0), version(4, 0)],
            "aliases": {"current": 2, "pending": 3},
            "keys": [key(K2, 91), key(K3, 0)],
        },
        ctx(),
        [DisableRejected(3)],
    ),
    (
        "pending failed its test (disabled): delete its key",
        {
            **due(record=record(rejected=NOW), key_ids={2: K2, 3: K3, 4: K2}, mirrors={4: 2}),
            "versions": [version(2, 91), version(3, 0, DISABLED), version(4, 0)],
            "aliases": {"current": 2, "pending": 3},
            "keys": [key(K2, 91), key(K3, 0)],
        },
        ctx(),
        [DeleteKey(K3, 3)],
    ),
    (
        "pending failed, key gone: release pending",
        {
            **due(record=record(rejected=NOW), key_ids={2: K2, 3: K3, 4: K2}, mirrors={4: 2}),
            "versions": [version(2, 91), version(3, 0, DISABLED), version(4, 0)],
            "aliases": {"current": 2, "pending": 3},
            "keys": [key(K2, 91)],
        },
        ctx(),
        [ReleasePending(3)],
    ),
    (
        "rejected payload was not a key file (id unknown): remove the key the rotation created",
        {
            **due(record=record(rejected=NOW), key_ids={2: K2, 4: K2}, mirrors={4: 2}),
            "versions": [version(2, 91), version(3, 1, DISABLED), version(4, 0)],
            "aliases": {"current": 2, "pending": 3},
            "keys": [key(K2, 91), key(K3, 1)],
        },
        ctx(),
        [RemoveOrphan(K3)],
    ),
    (
        "pending disabled by someone (latest unreadable): copy current first",
        {
            **due(record=record(), key_ids={2: K2, 3: K3}),
            "versions": [version(2, 91), version(3, 0, DISABLED)],
            "aliases": {"current": 2, "pending": 3},
            "keys": [key(K2, 91), key(K3, 0)],
        },
        ctx(),
        [AddMirror(2)],
    ),
    (
        "rejected again: the new copy is noted and the older mirror, no longer latest, is retired",
        {
            **due(
                record=record(base=4, rejected=NOW),
                key_ids={2: K2, 3: K3, 4: K2, 5: K1},
                mirrors={4: 2},
                retired={3: ago(1)},
            ),
            "versions": [
                version(2, 92),
                version(3, 1, DISABLED),
                version(4, 1),
                version(5, 0),
                version(6, 0),
            ],
            "aliases": {"current": 2, "pending": 5},
            "keys": [key(K2, 92), key(K1, 0)],
            "resolved": {6: K2},
        },
        ctx(),
        [RecordMirror((6,), 2, K2, supersedes=(4,))],
    ),
    (
        "a version above pending holding another key is not a copy: left alone, latest is readable",
        {
            **due(record=record(rejected=NOW), key_ids={2: K2, 3: K3}),
            "versions": [version(2, 91), version(3, 0), version(4, 0)],
            "aliases": {"current": 2, "pending": 3},
            "keys": [key(K2, 91), key(K3, 0), key(K1, 0)],
            "resolved": {4: K1},
        },
        ctx(),
        [DisableRejected(3)],
    ),
    (
        "pending tested while current has a mirror: finish retires the mirror with current",
        {
            **due(record=record(base=4, tested=NOW), key_ids={2: K2, 4: K2, 5: K3}, mirrors={4: 2}),
            "versions": [version(2, 92), version(4, 1), version(5, 0)],
            "aliases": {"current": 2, "pending": 5},
            "keys": [key(K2, 92), key(K3, 0)],
        },
        ctx(),
        [Finish(5, 2, (4,))],
    ),
    (
        "rotation requested for credentials created before now: due",
        steady(),
        ctx(force_before=NOW),
        [Begin(2, frozenset({K1, K2}), force=NOW)],  # the force is recorded with the intent
    ),
    (
        "the same request redelivered after the rotation: nothing",
        steady(),
        ctx(force_before=ago(6)),
        [],
    ),
    (
        "current version disabled by someone: due at once",
        {**steady(), "versions": [version(1, 100), version(2, 5, DISABLED)]},
        ctx(),
        [Begin(2, frozenset({K1, K2}))],
    ),
    (
        "current key deleted by someone: due at once",
        {**steady(), "keys": [key(K1, 100)]},
        ctx(),
        [Begin(2, frozenset({K1}))],
    ),
    (
        "current key expires within the margin (expiry policy): due",
        {**steady(), "keys": [key(K1, 100), key(K2, 5, expires_in=5)]},
        ctx(),
        [Begin(2, frozenset({K1, K2}))],
    ),
    (
        "stale record but nothing due any more: clear it",
        steady(record=record(started=ago(2))),
        ctx(),
        [ClearRecord()],
    ),
]


@pytest.mark.parametrize(
    ("snap", "context", "expected"), [c[1:] for c in ROTATION_CASES], ids=[c[0] for c in ROTATION_CASES]
)
def test_rotation_steps(snap: dict[str, Any], context: Context, expected: list[object]) -> None:
    result = run_plan(sa_target(), snapshot(**snap), context)
    assert not (result.busy or result.error or result.refusal or result.skip), result
    assert list(result.steps) == expected
    if expected:
        assert result.due, "every step has a reason in the report"


def test_someone_elses_create_window_is_left_alone() -> None:
    snap = snapshot(**steady(record=record(holder="task-b", started=ago(5 / 1440))))
    result = run_plan(sa_target(), snap)
    assert result.busy and "task-b" in result.busy and not result.steps


def test_the_same_task_retrying_waits_for_the_key_list_to_settle() -> None:
    snap = snapshot(**due(record=record(holder="task-a", started=ago(1 / 1440))))
    result = run_plan(sa_target(), snap)
    assert result.busy and "key list settles" in result.busy


def test_busy_also_holds_back_retirement() -> None:
    snap = snapshot(**steady(record=record(started=ago(1 / 1440)), retired={1: ago(40)}))
    result = run_plan(sa_target(), snap)
    assert result.busy and result.steps == ()


def test_generated_secret_rotation_has_no_key_steps() -> None:
    gen = generated_target()
    snap = snapshot([version(1, 100)], aliases={"current": 1})
    assert run_plan(gen, snap).steps == (Begin(1, frozenset()),)
    mine = snapshot([version(1, 100)], aliases={"current": 1}, state=RotationState(record=record(base=1)))
    assert run_plan(gen, mine, ctx(own_rotations=frozenset({"r1"}))).steps == (Create(Kind.GENERATED),)


# -- retirement ------------------------------------------------------------------------------------

RETIREMENT_CASES = [
    ("grace 1 running (6 days)", {"retired": {1: ago(6)}}, [], []),
    ("grace 1 over (8 days): disable", {"retired": {1: ago(8)}}, [], [DisableVersion(1), DisableKey(K1, 1)]),
    ("grace 1 over, already disabled", {"retired": {1: ago(8)}}, ["disabled"], []),
    (
        "grace 2 over (31 days): delete key and destroy version",
        {"retired": {1: ago(31)}},
        ["disabled"],
        [DeleteKey(K1, 1), DestroyVersion(1)],
    ),
    ("grace 2 over, key deleted", {"retired": {1: ago(31)}}, ["disabled", "key-gone"], [DestroyVersion(1)]),
    ("grace 2 over, all gone: forget", {"retired": {1: ago(31)}}, ["destroyed", "key-gone"], [Forget(1)]),
    (
        "missed runs: straight from enabled to deleted",
        {"retired": {1: ago(60)}},
        [],
        [DeleteKey(K1, 1), DestroyVersion(1)],
    ),
]


@pytest.mark.parametrize(
    ("state", "world", "expected"), [c[1:] for c in RETIREMENT_CASES], ids=[c[0] for c in RETIREMENT_CASES]
)
def test_retirement_steps(state: dict[str, Any], world: list[str], expected: list[object]) -> None:
    base = steady(**state)
    v1_state = DESTROYED if "destroyed" in world else DISABLED if "disabled" in world else ENABLED
    base["versions"] = [version(1, 100, v1_state), version(2, 5)]
    base["keys"] = [key(K2, 5)] + (
        [] if "key-gone" in world else [key(K1, 100, disabled=v1_state is not ENABLED)]
    )
    assert list(run_plan(sa_target(), snapshot(**base)).steps) == expected


def test_retirement_comes_before_the_next_rotation() -> None:
    base = {**steady(retired={1: ago(95)}), "versions": [version(1, 190, DISABLED), version(2, 95)]}
    base["keys"] = [key(K1, 190, disabled=True), key(K2, 95)]
    steps = run_plan(sa_target(), snapshot(**base)).steps
    assert steps == (DeleteKey(K1, 1), DestroyVersion(1), Begin(2, frozenset({K1, K2})))


def test_no_enabled_current_to_copy_disables_the_rejected_version_and_says_so() -> None:
    snap = snapshot(
        [version(1, 0)],
        aliases={"pending": 1},
        state=RotationState(record=record(base=0, rejected=NOW), key_ids={1: K1}),
        keys=[key(K1, 0)],
    )
    result = run_plan(sa_target(), snap)
    assert result.steps == (DisableRejected(1),)
    assert any("no enabled current to copy" in n for n in result.notes)


def mirrored(**state_changes: Any) -> dict[str, Any]:
    """A rejected rotation left version 3 as a mirror of version 1 (key K1); version 2 was the
    rejected one (its key deleted); a later rotation made version 4 (key K3) current."""
    state = RotationState(
        key_ids={1: K1, 2: K2, 3: K1, 4: K3},
        mirrors={3: 1},
        retired={1: ago(8), 2: ago(8), 3: ago(8)},
        current_since=ago(8),
    )
    return {
        "versions": [version(1, 100), version(2, 8, DISABLED), version(3, 8), version(4, 8)],
        "aliases": {"current": 4, "previous": 1},
        "state": replace(state, **state_changes),
        "keys": [key(K1, 100), key(K3, 8)],
    }


SHARED_KEY_CASES = [
    (
        "grace 1: the original and its mirror are disabled, their one key once",
        mirrored(),
        [DisableVersion(1), DisableKey(K1, 1), DisableVersion(3)],
    ),
    (
        "grace 2: the key is deleted once, both versions destroyed",
        {
            **mirrored(retired={1: ago(31), 2: ago(31), 3: ago(31)}),
            "keys": [key(K1, 100, disabled=True), key(K3, 8)],
        },
        [DeleteKey(K1, 1), DestroyVersion(1), DestroyVersion(2), DestroyVersion(3)],
    ),
    (
        "both holders destroyed, their key not yet deleted: delete it before forgetting either",
        {
            **mirrored(retired={1: ago(31), 2: ago(31), 3: ago(31)}),
            "versions": [
                version(1, 100, DESTROYED),
                version(2, 8, DESTROYED),
                version(3, 8, DESTROYED),
                version(4, 8),
            ],
            "keys": [key(K1, 100, disabled=True), key(K3, 8)],
        },
        [DeleteKey(K1, 1), Forget(2)],
    ),
    (
        "a retired mirror whose key current still holds: only the version is disabled",
        {
            "versions": [
                version(1, 100),
                version(2, 8, DISABLED),
                version(3, 8),
                version(4, 0, DISABLED),
                version(5, 0),
            ],
            "aliases": {"current": 1},
            "state": RotationState(
                key_ids={1: K1, 2: K2, 3: K1, 4: K3, 5: K1},
                mirrors={3: 1, 5: 1},
                retired={2: ago(8), 3: ago(8), 4: ago(8)},
            ),
            "keys": [key(K1, 100)],
        },
        [DisableVersion(3)],
    ),
    (
        "that mirror destroyed: forgotten although the key lives on (current holds it)",
        {
            "versions": [version(1, 100), version(3, 40, DESTROYED), version(5, 30)],
            "aliases": {"current": 1},
            "state": RotationState(key_ids={1: K1, 3: K1, 5: K1}, mirrors={3: 1, 5: 1}, retired={3: ago(31)}),
            "keys": [key(K1, 100)],
        },
        [Forget(3)],
    ),
    (
        "the key is retired with its last holder: a mirror retired later keeps it enabled",
        {**mirrored(retired={1: ago(8), 2: ago(8), 3: ago(2)})},
        [DisableVersion(1)],
    ),
]


@pytest.mark.parametrize(
    ("snap", "expected"), [c[1:] for c in SHARED_KEY_CASES], ids=[c[0] for c in SHARED_KEY_CASES]
)
def test_a_key_shared_by_a_mirror_is_retired_once_with_its_last_holder(
    snap: dict[str, Any], expected: list[object]
) -> None:
    # rotation period 365d: only retirement is planned
    result = run_plan(sa_target(**{"gatehouse-rotation-period": "365d"}), snapshot(**snap))
    assert list(result.steps) == expected


def test_the_newest_version_is_never_disabled_or_destroyed_by_retirement() -> None:
    # a rotation of an empty secret was rejected and released: its version is retired and newest
    state = RotationState(key_ids={1: K1}, retired={1: ago(40)})
    snap = snapshot([version(1, 40)], state=state, keys=[])
    result = run_plan(sa_target(), snap)
    assert not any(isinstance(s, (DisableVersion, DestroyVersion)) for s in result.steps), result.steps
    assert any("newest version, which latest names" in n for n in result.notes)
    disabled = snapshot([version(1, 40, DISABLED)], state=state, keys=[])
    result = run_plan(sa_target(), disabled)
    assert not any(isinstance(s, DestroyVersion) for s in result.steps), result.steps
    assert any("latest names version 1, which is DISABLED" in n for n in result.notes)


# -- preflight -------------------------------------------------------------------------------------


def due_with(keys: list[KeyInfo] | None = None, policy: KeyPolicy | None = None) -> Snapshot:
    base = due()
    if keys is not None:
        base["keys"] = keys
    return snapshot(**base, policy=policy)


def foreign_keys(n: int) -> list[KeyInfo]:
    return [key(f"{i:040x}", 300) for i in range(n)]


def test_fewer_than_two_free_key_slots_refuses() -> None:
    result = run_plan(sa_target(), due_with(keys=[key(K2, 91), *foreign_keys(8)]))
    assert result.refusal is not None and result.refusal.code == "key-slots"
    assert "9 of 10" in result.refusal.message and "1 free" in result.refusal.message
    assert f"{0:040x}" in result.refusal.message  # names the keys that hold the slots
    assert not result.steps


def test_two_free_key_slots_are_enough() -> None:
    result = run_plan(sa_target(), due_with(keys=[key(K2, 91), *foreign_keys(7)]))
    assert result.refusal is None and isinstance(result.steps[0], Begin)


def test_slots_are_checked_again_before_creating() -> None:
    snap = due_with(keys=[key(K2, 91), *foreign_keys(8)])
    snap = replace(
        snap, secret=replace(snap.secret, annotations=write_state({}, RotationState(record=record())))
    )
    result = run_plan(sa_target(), snap, ctx(own_rotations=frozenset({"r1"})))
    assert result.steps == (ClearRecord(),) and result.refusal and result.refusal.code == "key-slots"


@pytest.mark.parametrize(
    "constraint", ["iam.disableServiceAccountKeyCreation", "iam.managed.disableServiceAccountKeyCreation"]
)
def test_org_policy_blocking_key_creation_refuses_with_advice(constraint: str) -> None:
    result = run_plan(sa_target(), due_with(policy=KeyPolicy(creation_blocked_by=constraint)))
    assert result.refusal is not None and result.refusal.code == "org-policy"
    assert constraint in result.refusal.message and "workload identity" in result.refusal.message


def test_org_policy_block_is_noted_before_a_rotation_is_due() -> None:
    result = run_plan(sa_target(), snapshot(**steady(), policy=KeyPolicy(creation_blocked_by="iam.x")))
    assert not result.steps and result.refusal is None
    assert any("will be refused" in n and "workload identity" in n for n in result.notes)


def test_key_expiry_policy_too_short_for_a_daily_job_refuses() -> None:
    result = run_plan(sa_target(), due_with(policy=KeyPolicy(expiry_hours=168)))
    assert result.refusal is not None and result.refusal.code == "org-policy-expiry"
    assert "workload identity" in result.refusal.message


def test_key_expiry_policy_is_noted() -> None:
    result = run_plan(sa_target(), snapshot(**steady(), policy=KeyPolicy(expiry_hours=2160)))
    assert any("iam.serviceAccountKeyExpiryHours=2160h" in n for n in result.notes)


def test_own_identity_is_skipped() -> None:
    target = parse_target(
        NAME,
        {"gatehouse-rotate": "sa-key"},
        {"gatehouse-service-account": "rotator@proj-one.iam.gserviceaccount.com"},
        SETTINGS,
    )
    result = run_plan(target, due_with())
    assert result.skip and "own identity" in result.skip and not result.steps


def test_unmanaged_keys_are_noted() -> None:
    result = run_plan(
        sa_target(), snapshot(**{**steady(), "keys": [key(K1, 100), key(K2, 5), *foreign_keys(2)]})
    )
    assert any("2 key(s)" in n for n in result.notes)


# -- states that need a human ----------------------------------------------------------------------


def test_pending_without_a_record_needs_a_human() -> None:
    base = {**steady(), "versions": [version(1, 100), version(2, 5), version(3, 0)]}
    base["aliases"] = {"current": 2, "pending": 3}
    result = run_plan(sa_target(), snapshot(**base))
    assert result.error and "pending" in result.error and not result.steps


def test_malformed_state_annotation_fails_the_target() -> None:
    snap = snapshot(**steady())
    broken = {**snap.secret.annotations, "gatehouse-state-retired": "1=yesterday"}
    snap = replace(snap, secret=replace(snap.secret, annotations=broken))
    result = run_plan(sa_target(), snap)
    assert result.error and "gatehouse-state-retired" in result.error
