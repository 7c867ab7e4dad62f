"""Kill the job after every external write of a full rotation lifecycle, restart it, and check the
safety invariants at every call in between.

Two lifecycles, for a service-account key and for a generated value:

* tested: day 0 the target (set up by hand, 100 days old) is adopted and rotated; day 8 grace 1 is
  over and the old credential is disabled; day 31 grace 2 is over and it is deleted and destroyed;
* rejected: the same, but the first new credential is stored damaged and fails its test. The
  rotation is abandoned (a copy of ``current`` is added and noted as its mirror, then the rejected
  version is disabled, its key deleted, ``pending`` released) and the next run rotates for real;
  the mirror is retired together with the original, on the same days, and their shared key once.

For each k the process is killed right after write k (the write took effect, the caller never
learned of it); then the job runs again until a run changes nothing. A restart is either the same
Cloud Run task retrying (same holder: resumes once IAM's key list has settled, 2 minutes) or a
later execution (another holder: waits for the 15-minute create-window lease). After every port
call the observer checks, reading the way consumers read: ``current`` (once set) is valid;
``latest`` (the highest-numbered version, whatever its state, as Secret Manager resolves it) can be
read, i.e. is ENABLED, and is valid (in the rejected lifecycle except while it names the untested
pending version, the one that is about to be rejected); the account has at most 10 keys.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from rotation_fakes import Crash, World

from gatehouse.rotation.generate import Alphabet, GeneratorSpec
from gatehouse.rotation.job import run
from gatehouse.rotation.ports import VersionState
from gatehouse.rotation.settings import RotationSettings
from gatehouse.rotation.state import read_state

NAME = "projects/p1/secrets/app-credential"
SA = "app-one@proj-one.iam.gserviceaccount.com"
JOB = "rotator@proj-one.iam.gserviceaccount.com"
SPEC = GeneratorSpec(length=32, alphabet=Alphabet.HEX)
FOREIGN_KEYS = 7  # keys a human made for the same account: never touched, and they use slots
PHASES = (timedelta(0), timedelta(days=8), timedelta(days=23))
DEFAULTS = RotationSettings(holder="x")
OUTCOMES = ("tested", "rejected")


def make_world(kind: str, outcome: str = "tested") -> World:
    world = World()
    # rejected: the first new version is stored damaged (with a matching checksum), so its test fails
    world.sm.corrupt_next_add = outcome == "rejected"
    if kind == "sa-key":
        for _ in range(FOREIGN_KEYS):
            world.iam.seed_key(SA, world.clock.now() - timedelta(days=300))
        world.add_sa_key_target(NAME, SA)
    else:
        world.add_generated_target(
            NAME,
            annotations={"gatehouse-length": "32", "gatehouse-alphabet": "hex"},
            value="0123456789abcdef" * 2,
        )
    return world


def holders(variant: str) -> Iterator[str]:
    if variant == "same-task":
        return itertools.repeat("exec-1/0")
    return (f"exec-{i}/0" for i in itertools.count(1))


def run_until_quiet(world: World, names: Iterator[str], variant: str) -> None:
    """Run the job (one process per run) until a run finds nothing to do."""
    wait = DEFAULTS.key_list_settle if variant == "same-task" else DEFAULTS.intent_lease
    for _ in range(20):
        settings = RotationSettings(projects=("p1",), job_identity=JOB, holder=next(names))
        try:
            report = run(world.ports(consumers=False), settings)
        except Crash:
            world.faults.crash_after_write = None  # killed once; the restart runs normally
            continue
        (target,) = report.targets
        rejected = target.status == "failed" and "failed its test" in target.reason
        assert rejected or target.status in {"rotated", "maintained", "unchanged", "busy"}, (
            target.status,
            target.reason,
        )
        if target.status == "busy":
            world.clock.advance(wait + timedelta(seconds=1))
        elif target.status == "unchanged":
            return
    pytest.fail("the job did not converge")


def observe(world: World, kind: str, outcome: str) -> list[str]:
    problems: list[str] = []
    spec = SPEC if kind == "generated" else None

    def check(method: str) -> None:
        for problem in world.invariant_problems(NAME, spec, untested_latest=outcome == "rejected"):
            problems.append(f"after {method} (write {len(world.faults.writes)}): {problem}")

    world.faults.observers.append(check)
    return problems


def lifecycle(world: World, variant: str) -> list[dict[str, object]]:
    """Run the three phases; return what the secret looked like at the end of each."""
    names = holders(variant)
    seen = []
    for delta in PHASES:
        world.clock.advance(delta)
        run_until_quiet(world, names, variant)
        secret = world.secret(NAME)
        seen.append(
            {
                "aliases": dict(secret.aliases),
                "states": {n: v.state for n, v in secret.versions.items()},
                "keys": {k: key.disabled for k, key in world.iam.keys.get(SA, {}).items()},
            }
        )
    return seen


@functools.cache
def clean_writes(kind: str, outcome: str) -> tuple[str, ...]:
    world = make_world(kind, outcome)
    problems = observe(world, kind, outcome)
    lifecycle(world, "same-task")
    assert problems == []
    return tuple(world.faults.writes)


def cases() -> list[tuple[str, str, str, int]]:
    return [
        (kind, outcome, variant, k)
        for kind in ("sa-key", "generated")
        for outcome in OUTCOMES
        for variant in ("same-task", "next-execution")
        for k in range(1, len(clean_writes(kind, outcome)) + 1)
    ]


def test_the_clean_lifecycle_makes_the_expected_writes() -> None:
    assert clean_writes("sa-key", "tested") == (
        "update_secret",  # adopt
        "update_secret",  # begin
        "create_service_account_key",
        "add_secret_version",
        "update_secret",  # mark pending
        "update_secret",  # tested
        "update_secret",  # finish
        "disable_secret_version",
        "disable_service_account_key",
        "delete_service_account_key",
        "destroy_secret_version",
        "update_secret",  # forget
    )
    assert "create_service_account_key" not in clean_writes("generated", "tested")


def test_the_rejected_lifecycle_makes_the_expected_writes() -> None:
    assert clean_writes("sa-key", "rejected") == (
        "update_secret",  # adopt
        "update_secret",  # begin
        "create_service_account_key",
        "add_secret_version",  # damaged: version 2
        "update_secret",  # mark pending
        "update_secret",  # rejected
        "add_secret_version",  # abandon: a copy of current (version 1) becomes version 3 = latest
        "update_secret",  # note version 3 as a mirror of 1, with key 1's id
        "disable_secret_version",  # the rejected version 2 (no longer latest)
        "delete_service_account_key",  # its key
        "update_secret",  # release pending and the record; the next run starts over
        "update_secret",  # begin
        "create_service_account_key",
        "add_secret_version",  # version 4
        "update_secret",  # mark pending
        "update_secret",  # tested
        "update_secret",  # finish: 4 current, 1 previous; 1 and its mirror 3 retired together
        "disable_secret_version",  # day 8: version 1
        "disable_service_account_key",  # key 1, once both its versions are retired
        "disable_secret_version",  # version 3
        "delete_service_account_key",  # day 31: key 1, once
        "destroy_secret_version",  # version 1
        "update_secret",  # forget 1
        "destroy_secret_version",  # version 2 (its key went with the abandon)
        "update_secret",  # forget 2
        "destroy_secret_version",  # version 3
        "update_secret",  # forget 3
    )
    generated = [w for w in clean_writes("sa-key", "rejected") if "service_account_key" not in w]
    assert clean_writes("generated", "rejected") == tuple(generated)


@pytest.mark.parametrize(("kind", "outcome", "variant", "k"), cases())
def test_killed_after_write_k_converges_safely(kind: str, outcome: str, variant: str, k: int) -> None:
    world = make_world(kind, outcome)
    old_key = key_of(world, 1) if kind == "sa-key" else ""
    foreign = set(world.iam.keys.get(SA, {})) - {old_key}
    problems = observe(world, kind, outcome)
    world.faults.crash_after_write = k
    killed_at = clean_writes(kind, outcome)[k - 1]

    day0, day8, day31 = lifecycle(world, variant)

    assert world.faults.crash_after_write is None, "the crash happened"
    assert problems == []
    E, D, X = VersionState.ENABLED, VersionState.DISABLED, VersionState.DESTROYED  # noqa: N806
    # tested: version 2 is the new credential. rejected: 2 was rejected (disabled at once), 3 is
    # the mirror of 1 (a copy, retired with it), 4 is the new credential
    new = 2 if outcome == "tested" else 4
    old = {1: E} if outcome == "tested" else {1: E, 2: D, 3: E}
    # day 0: exactly one new version is current, the old one is previous and still enabled (grace 1)
    assert day0["aliases"] == {"current": new, "previous": 1}
    assert day0["states"] == {**old, new: E}
    # day 8: the old one (and its mirror) disabled; day 31: destroyed, key deleted, previous gone
    assert day8["states"] == {**dict.fromkeys(old, D), new: E}
    assert day31["aliases"] == {"current": new}
    assert day31["states"] == {**dict.fromkeys(old, X), new: E}
    state = read_state(world.secret(NAME).annotations)
    assert state.record is None and not state.retired and not state.mirrors
    if kind == "sa-key":
        new_key = key_of(world, new)
        assert day0["keys"] == {**dict.fromkeys(foreign, False), old_key: False, new_key: False}
        assert day8["keys"] == {**dict.fromkeys(foreign, False), old_key: True, new_key: False}
        assert day31["keys"] == {**dict.fromkeys(foreign, False), new_key: False}, "no extra keys remain"
        # a second key only when killed inside a create window (the first one's private key is lost)
        expected = 1 if outcome == "tested" else 2
        assert len(world.iam.created) == expected + (killed_at == "create_service_account_key")
        assert state.key_ids == {new: new_key}


def key_of(world: World, number: int) -> str:
    payload = world.secret(NAME).versions[number].payload
    assert payload is not None
    return str(json.loads(payload)["private_key_id"])


@pytest.mark.parametrize("variant", ["same-task", "next-execution"])
def test_a_forced_rotation_killed_after_its_intent_is_completed_by_a_later_run(variant: str) -> None:
    """The force is recorded with the intent: the run that picks the rotation up (a retry of the
    task, or tomorrow's scheduled run, neither of which received the command) completes it, and as
    a leak response, revokes the replaced key at once."""
    world = World()
    world.add_sa_key_target(NAME, SA, age=timedelta(days=10))  # not due by age
    names = holders(variant)
    settings = RotationSettings(projects=("p1",), job_identity=JOB, holder=next(names))
    run(world.ports(consumers=False), settings)  # adopt
    problems = observe(world, "sa-key", "tested")
    world.faults.crash_after_write = len(world.faults.writes) + 1  # right after "begin"
    with pytest.raises(Crash):
        run(world.ports(consumers=False), settings, secret=NAME, force_before=world.clock.now())
    world.faults.crash_after_write = None
    old_key = key_of(world, 1)

    run_until_quiet(world, names, variant)  # no force passed: only the record knows

    assert problems == []
    secret = world.secret(NAME)
    assert secret.aliases == {"current": 2, "previous": 1}
    assert secret.versions[1].state is VersionState.DISABLED
    assert world.iam.keys[SA][old_key].disabled is True
    assert len(world.iam.created) == 1
