"""Kill the job after every external write of a full rotation lifecycle, restart it, and check the
safety invariants at every call in between.

The lifecycle: day 0 the target (set up by hand, 100 days old) is adopted and rotated; day 8
grace 1 is over and the old credential is disabled; day 31 grace 2 is over and it is deleted and
destroyed. For each k the process is killed right after write k (the write took effect, the caller
never learned of it); then the job runs again until a run changes nothing. A restart is either the
same Cloud Run task retrying (same holder: resumes once IAM's key list has settled, 2 minutes) or a
later execution (another holder: waits for the 15-minute create-window lease). After every port
call the observer checks that ``current`` (once set) is valid, that current or latest is valid,
and that the account has at most 10 keys.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from rotation_fakes import Crash, World

from shared.rotation.generate import Alphabet, GeneratorSpec
from shared.rotation.job import run
from shared.rotation.ports import VersionState
from shared.rotation.settings import RotationSettings
from shared.rotation.state import read_state

NAME = "projects/p1/secrets/app-credential"
SA = "app-one@proj-one.iam.gserviceaccount.com"
JOB = "rotator@proj-one.iam.gserviceaccount.com"
SPEC = GeneratorSpec(length=32, alphabet=Alphabet.HEX)
FOREIGN_KEYS = 7  # keys a human made for the same account: never touched, and they use slots
PHASES = (timedelta(0), timedelta(days=8), timedelta(days=23))
DEFAULTS = RotationSettings(holder="x")


def make_world(kind: str) -> World:
    world = World()
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
        assert target.status in {"rotated", "maintained", "unchanged", "busy"}, (target.status, target.reason)
        if target.status == "busy":
            world.clock.advance(wait + timedelta(seconds=1))
        elif target.status == "unchanged":
            return
    pytest.fail("the job did not converge")


def observe(world: World, kind: str) -> list[str]:
    problems: list[str] = []
    spec = SPEC if kind == "generated" else None

    def check(method: str) -> None:
        for problem in world.invariant_problems(NAME, spec):
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
def clean_writes(kind: str) -> tuple[str, ...]:
    world = make_world(kind)
    lifecycle(world, "same-task")
    return tuple(world.faults.writes)


def cases() -> list[tuple[str, str, int]]:
    return [
        (kind, variant, k)
        for kind in ("sa-key", "generated")
        for variant in ("same-task", "next-execution")
        for k in range(1, len(clean_writes(kind)) + 1)
    ]


def test_the_clean_lifecycle_makes_the_expected_writes() -> None:
    assert clean_writes("sa-key") == (
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
    assert "create_service_account_key" not in clean_writes("generated")


@pytest.mark.parametrize(("kind", "variant", "k"), cases())
def test_killed_after_write_k_converges_safely(kind: str, variant: str, k: int) -> None:
    world = make_world(kind)
    old_key = key_of(world, 1) if kind == "sa-key" else ""
    foreign = set(world.iam.keys.get(SA, {})) - {old_key}
    problems = observe(world, kind)
    world.faults.crash_after_write = k
    killed_at = clean_writes(kind)[k - 1]

    day0, day8, day31 = lifecycle(world, variant)

    assert world.faults.crash_after_write is None, "the crash happened"
    assert problems == []
    # day 0: exactly one new version is current, the old one is previous and still enabled (grace 1)
    assert day0["aliases"] == {"current": 2, "previous": 1}
    assert day0["states"] == {1: VersionState.ENABLED, 2: VersionState.ENABLED}
    # day 8: the old one is disabled; day 31: destroyed, its key deleted, the previous alias gone
    assert day8["states"] == {1: VersionState.DISABLED, 2: VersionState.ENABLED}
    assert day31["aliases"] == {"current": 2}
    assert day31["states"] == {1: VersionState.DESTROYED, 2: VersionState.ENABLED}
    state = read_state(world.secret(NAME).annotations)
    assert state.record is None and not state.retired
    if kind == "sa-key":
        new_key = key_of(world, 2)
        assert day0["keys"] == {**dict.fromkeys(foreign, False), old_key: False, new_key: False}
        assert day8["keys"] == {**dict.fromkeys(foreign, False), old_key: True, new_key: False}
        assert day31["keys"] == {**dict.fromkeys(foreign, False), new_key: False}, "no extra keys remain"
        # a second key only when killed inside the create window (the first one's private key is lost)
        assert len(world.iam.created) == (2 if killed_at == "create_service_account_key" else 1)
        assert state.key_ids == {2: new_key}


def key_of(world: World, number: int) -> str:
    payload = world.secret(NAME).versions[number].payload
    assert payload is not None
    return str(json.loads(payload)["private_key_id"])
