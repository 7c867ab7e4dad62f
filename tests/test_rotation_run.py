"""The rotation job end to end against the in-memory fakes."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from rotation_fakes import World

from gatehouse.errors import TransientError
from gatehouse.logging import CloudLoggingFormatter
from gatehouse.rotation.generate import Alphabet, Format, GeneratorSpec
from gatehouse.rotation.job import run
from gatehouse.rotation.material import Material
from gatehouse.rotation.ports import ConsumerRef, CredentialRejectedError, KeyPolicy, VersionState
from gatehouse.rotation.report import RunReport, TargetReport, render_json, render_markdown
from gatehouse.rotation.settings import RotationSettings
from gatehouse.rotation.state import read_state

JOB = "rotator@proj-one.iam.gserviceaccount.com"
SA1 = "app-one@proj-one.iam.gserviceaccount.com"
SA2 = "app-two@proj-two.iam.gserviceaccount.com"
KEY1 = "projects/p1/secrets/app-one-key"
KEY2 = "projects/p1/secrets/app-two-key"
TOKEN = "projects/p1/secrets/api-token"
PASSWORD = "projects/p1/secrets/db-password"
HEX32 = "0123456789abcdef" * 2
GENERATED = {
    TOKEN: (GeneratorSpec(), {}),
    PASSWORD: (
        GeneratorSpec(length=24, alphabet=Alphabet.ASCII_PRINTABLE, format=Format.PASSWORD),
        {"gatehouse-length": "24", "gatehouse-alphabet": "ascii-printable", "gatehouse-format": "password"},
    ),
}


def settings(holder: str = "exec-1/0", **changes: object) -> RotationSettings:
    return replace(RotationSettings(projects=("p1",), job_identity=JOB, holder=holder), **changes)


def fleet(world: World) -> World:
    world.add_sa_key_target(KEY1, SA1)
    world.add_sa_key_target(KEY2, SA2, age=timedelta(days=30))
    world.add_generated_target(TOKEN, value="A" * 16 + "b" * 16)
    world.add_generated_target(
        PASSWORD, annotations=GENERATED[PASSWORD][1], value="aB3$" * 6, age=timedelta(days=200)
    )
    return world


def statuses(report: RunReport) -> dict[str, str]:
    return {t.secret: t.status for t in report.targets}


def spec_of(name: str) -> GeneratorSpec | None:
    return GENERATED[name][0] if name in GENERATED else None


def holders() -> Iterator[str]:
    n = 0
    while True:
        n += 1
        yield f"exec-{n}/0"


def converge(
    world: World, names: Iterator[str], *, step: timedelta = timedelta(hours=1), limit: int = 200
) -> int:
    """Run (one new process per run) until a run is clean and changes nothing; return the runs."""
    for attempt in range(1, limit + 1):
        report = run(world.ports(), settings(next(names)))
        if not report.errors and all(t.status == "unchanged" for t in report.targets):
            return attempt
        world.clock.advance(step)
    pytest.fail("no convergence")


# -- age gating ------------------------------------------------------------------------------------


def test_daily_runs_act_only_on_what_is_due() -> None:
    world = fleet(World())
    first = run(world.ports(), settings())
    assert statuses(first) == {KEY1: "rotated", KEY2: "maintained", TOKEN: "rotated", PASSWORD: "rotated"}
    assert first.exit_code == 0
    writes = len(world.faults.writes)

    second = run(world.ports(), settings("exec-2/0"))
    assert set(statuses(second).values()) == {"unchanged"}
    assert len(world.faults.writes) == writes, "a second run in a row writes nothing"

    world.clock.advance(timedelta(days=61))  # KEY2 (adopted at 30 days) is now 91 days old
    third = run(world.ports(), settings("exec-3/0"))
    assert statuses(third)[KEY2] == "rotated"
    assert statuses(third)[KEY1] == "maintained"  # its old key: grace 2 over, deleted


def test_targets_rotated_in_parallel_end_as_they_do_one_by_one() -> None:
    sequential, parallel = fleet(World()), fleet(World())
    one = run(sequential.ports(), settings())
    four = run(parallel.ports(), settings(), workers=4)
    assert statuses(four) == statuses(one)
    assert [t.secret for t in four.targets] == [t.secret for t in one.targets]  # report order is stable
    assert sorted(parallel.faults.writes) == sorted(sequential.faults.writes)


def test_plan_only_writes_nothing_and_says_what_it_would_do() -> None:
    world = fleet(World())
    report = run(world.ports(), settings(), plan_only=True)
    assert report.mode == "plan" and world.faults.writes == []
    target = next(t for t in report.targets if t.secret == KEY1)
    assert target.status == "planned"
    assert target.planned == ("adopt version 1 (key " + _version_key(world, KEY1, 1) + ") as current",)
    assert any("100.0d old" in d for d in target.due)
    assert "Would do (plan only)" in render_markdown(report)


def test_force_rotates_once_even_when_the_command_is_redelivered() -> None:
    world = fleet(World())
    run(world.ports(), settings())
    world.clock.advance(timedelta(days=1))
    requested = world.clock.now()
    forced = run(world.ports(), settings("exec-2/0"), secret=KEY2, force_before=requested)
    assert [t.status for t in forced.targets] == ["rotated"]
    again = run(world.ports(), settings("exec-3/0"), secret=KEY2, force_before=requested)
    assert [t.status for t in again.targets] == ["unchanged"]
    assert len([c for c in world.iam.created if c[0] == SA2]) == 1


# -- faults ----------------------------------------------------------------------------------------


def test_twenty_percent_transient_faults_converge_without_breaking_an_invariant() -> None:
    world = fleet(World())
    world.add_sa_key_target("projects/p1/secrets/app-three-key", "app-three@proj-one.iam.gserviceaccount.com")
    problems: list[str] = []

    def check(method: str) -> None:
        for name in world.sm.secrets:
            problems.extend(
                f"{name} after {method}: {p}" for p in world.invariant_problems(name, spec_of(name))
            )

    world.faults.observers.append(check)
    world.faults.transient_rate = 0.2
    names = holders()
    runs = [converge(world, names) for _ in range(1)]
    world.clock.advance(timedelta(days=8))
    runs.append(converge(world, names))
    world.clock.advance(timedelta(days=23))
    runs.append(converge(world, names))

    assert problems == []
    assert sum(world.faults.counts.values()) > 300 and max(runs) > 1, "the faults really hit"
    for name, secret in world.sm.secrets.items():
        state = read_state(secret.annotations)
        current = secret.aliases["current"]
        assert set(secret.aliases) == {"current"} and state.record is None and not state.retired, name
        assert world.version_problem(name, current, spec_of(name)) is None
        assert secret.versions[current].number == max(secret.versions)
        email = secret.annotations.get("gatehouse-service-account")
        if email:
            assert list(world.iam.keys[email]) == [state.key_ids[current]], "no orphan or old key remains"


def test_a_transient_failure_fails_only_that_target_and_the_next_run_resumes() -> None:
    world = fleet(World())
    world.faults.fail_nth.add(("create_service_account_key", 1))
    report = run(world.ports(), settings())
    assert statuses(report)[KEY1] == "failed" and "transient" in _target(report, KEY1).reason
    assert statuses(report)[TOKEN] == "rotated"
    assert report.exit_code == 1
    world.clock.advance(timedelta(minutes=3))
    resumed = run(world.ports(), settings())  # the same task retrying
    assert statuses(resumed)[KEY1] == "rotated" and resumed.exit_code == 0


def test_a_rejected_credential_is_disabled_at_once_behind_a_copy_of_current() -> None:
    world = fleet(World())
    run(world.ports(), settings())
    world.clock.advance(timedelta(days=91))
    world.sm.corrupt_next_add = True  # the next stored value is damaged: the test must catch it
    report = run(world.ports(), settings("exec-2/0"), secret=TOKEN)
    (target,) = report.targets
    assert target.status == "failed" and "does not conform" in target.reason
    assert [a.step.split(" (")[0].split(",")[0] for a in target.actions][-5:] == [
        "test pending version 3",
        "add a copy of current version 2 as a new version",
        "note version(s) 4 as mirror(s) of current version 2",
        "disable pending version 3",
        "release abandoned pending version 3; current is unchanged",
    ]
    secret = world.secret(TOKEN)
    assert secret.aliases == {"current": 2}  # version 1 was destroyed in the same run (grace 2)
    assert secret.versions[3].state is VersionState.DISABLED
    # latest is the newest version whatever its state: a copy of current, not the rejected one
    assert world.sm.access(TOKEN, "latest").number == 4
    assert secret.versions[4].payload == secret.versions[2].payload
    state = read_state(secret.annotations)
    assert state.record is None and state.mirrors == {4: 2} and set(state.retired) == {3}
    roles = {v.number: v.roles for v in target.versions}
    assert roles[4] == ("latest", "mirror") and roles[2] == ("current",)
    assert world.invariant_problems(TOKEN, spec_of(TOKEN), untested_latest=False) == []

    healed = run(world.ports(), settings("exec-3/0"), secret=TOKEN)
    assert [t.status for t in healed.targets] == ["rotated"]
    secret = world.secret(TOKEN)
    assert secret.aliases == {"current": 5, "previous": 2}
    assert set(read_state(secret.annotations).retired) == {2, 3, 4}, "the mirror retires with current"
    world.clock.advance(timedelta(days=31))
    assert [t.status for t in run(world.ports(), settings("exec-4/0"), secret=TOKEN).targets] == [
        "maintained"
    ]
    secret = world.secret(TOKEN)
    assert {n: v.state for n, v in secret.versions.items()} == {
        **dict.fromkeys((1, 2, 3, 4), VersionState.DESTROYED),
        5: VersionState.ENABLED,
    }
    state = read_state(secret.annotations)
    assert secret.aliases == {"current": 5} and not state.retired and not state.mirrors


def test_a_rotation_rejected_twice_keeps_one_live_mirror_and_one_key() -> None:
    world = fleet(World())
    run(world.ports(), settings(), secret=KEY1)  # adopt 1 (100 days old) and rotate: 2 current
    world.clock.advance(timedelta(days=91))
    for attempt in (1, 2):
        world.sm.corrupt_next_add = True
        report = run(world.ports(), settings(f"exec-{attempt + 1}/0"), secret=KEY1)
        assert [t.status for t in report.targets] == ["failed"]
        assert world.invariant_problems(KEY1, untested_latest=False) == []
    secret = world.secret(KEY1)
    # 3 and 5 rejected, 4 and 6 copies of 2; 4 was superseded by 6 and is retired
    state = read_state(secret.annotations)
    assert secret.aliases == {"current": 2} and world.sm.access(KEY1, "latest").number == 6
    assert state.mirrors == {4: 2, 6: 2} and set(state.retired) >= {3, 4, 5}
    assert state.key_ids[4] == state.key_ids[6] == state.key_ids[2]
    world.clock.advance(timedelta(days=8))  # grace 1 of the superseded mirror: its key lives on
    run(world.ports(), settings("exec-4/0"), secret=KEY1)
    secret = world.secret(KEY1)
    assert secret.versions[4].state is VersionState.DISABLED
    assert world.invariant_problems(KEY1, untested_latest=False) == []
    key2 = state.key_ids[2]
    assert world.iam.keys[SA1][key2].disabled is False
    assert secret.aliases["current"] == 7, "the rotation was due again and succeeded"
    assert world.sm.access(KEY1, "latest").number == 7


def test_the_executor_refuses_to_disable_or_destroy_the_newest_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gatehouse.rotation import plan as p

    world = fleet(World())
    run(world.ports(), settings(), secret=TOKEN)  # current 2, previous 1
    for bad in (p.DisableVersion(2), p.DestroyVersion(2), p.DisableRejected(2)):
        monkeypatch.setattr(p, "plan", lambda *args, bad=bad: p.Plan(steps=(bad,), due=("injected",)))
        report = run(world.ports(), settings("exec-2/0"), secret=TOKEN)
        (target,) = report.targets
        assert target.status == "failed" and "is the newest, which latest names" in target.reason, target
        assert world.secret(TOKEN).versions[2].state is VersionState.ENABLED


def test_token_exchange_rejection_abandons_the_key() -> None:
    world = fleet(World())
    world.token_exchange.reject = CredentialRejectedError("invalid_grant: account disabled")
    ports = world.ports(token_exchange=True)
    report = run(ports, settings(token_exchange=True), secret=KEY1)
    (target,) = report.targets
    assert target.status == "failed" and "invalid_grant" in target.reason
    created = world.iam.created[-1][1]
    assert created not in world.iam.keys[SA1], "the rejected key was deleted"
    assert world.secret(KEY1).aliases == {"current": 1}
    world.token_exchange.reject = None
    report = run(ports, settings(token_exchange=True), secret=KEY1)
    assert [t.status for t in report.targets] == ["rotated"]
    assert world.token_exchange.exchanged == 2


def test_token_exchange_during_propagation_is_retried_later() -> None:
    world = fleet(World())
    world.token_exchange.reject = TransientError("invalid_grant: key not yet usable")
    ports = world.ports(token_exchange=True)
    report = run(ports, settings(token_exchange=True), secret=KEY1)
    assert [t.status for t in report.targets] == ["failed"]
    assert world.secret(KEY1).aliases == {"current": 1, "pending": 2}, "pending kept"
    world.token_exchange.reject = None
    report = run(ports, settings(token_exchange=True), secret=KEY1)
    assert [t.status for t in report.targets] == ["rotated"] and len(world.iam.created) == 1


# -- refusals and validation -----------------------------------------------------------------------


def test_too_few_key_slots_refuses_that_target_only() -> None:
    world = fleet(World())
    for _ in range(8):
        world.iam.seed_key(SA1, world.clock.now() - timedelta(days=400))
    report = run(world.ports(), settings())
    target = _target(report, KEY1)
    assert target.status == "refused"
    assert "9 of 10 user-managed keys" in target.reason and "1 free" in target.reason
    assert statuses(report)[TOKEN] == "rotated"
    assert report.exit_code == 1
    assert not [c for c in world.iam.created if c[0] == SA1]


def test_org_policy_refusal_advises_workload_identity() -> None:
    world = fleet(World())
    world.policies.by_project["proj-one"] = KeyPolicy(
        creation_blocked_by="iam.managed.disableServiceAccountKeyCreation"
    )
    report = run(world.ports(), settings())
    target = _target(report, KEY1)
    assert target.status == "refused"
    assert (
        "iam.managed.disableServiceAccountKeyCreation" in target.reason
        and "workload identity" in target.reason
    )
    assert "create_service_account_key" not in world.faults.counts


def test_iam_refusing_creation_is_reported_as_a_policy_refusal() -> None:
    world = fleet(World())
    world.iam.unreadable_blocks.add("proj-one")  # the job cannot read org policy, IAM enforces it anyway
    report = run(world.ports(), settings(), secret=KEY1)
    (target,) = report.targets
    assert target.status == "refused" and "FAILED_PRECONDITION" in target.reason
    assert "workload identity" in target.reason
    assert read_state(world.secret(KEY1).annotations).record is None, "the rotation record was cleared"


def test_slots_taken_between_preflight_and_create_end_in_a_refusal_not_an_eleventh_key() -> None:
    world = fleet(World())
    for _ in range(6):
        world.iam.seed_key(SA1, world.clock.now() - timedelta(days=400))

    def someone_adds_keys(method: str) -> None:  # after the job's last listing, before its create
        record = world.secret(KEY1).annotations.get("gatehouse-state-rotation", "")
        if method == "list_service_account_keys" and record and len(world.iam.keys[SA1]) < 10:
            for _ in range(10 - len(world.iam.keys[SA1])):
                world.iam.seed_key(SA1, world.clock.now())

    world.faults.observers.append(someone_adds_keys)
    report = run(world.ports(), settings(), secret=KEY1)
    (target,) = report.targets
    assert target.status == "refused" and "FAILED_PRECONDITION" in target.reason
    assert "iam.disableServiceAccountKeyCreation" in target.reason and "workload identity" in target.reason
    assert len(world.iam.keys[SA1]) == 10 and world.iam.created == []
    assert read_state(world.secret(KEY1).annotations).record is None, "the rotation record was cleared"
    assert [a.result for a in target.actions][-1] == "refused"


def test_key_expiry_policy_is_reported_and_keys_expire() -> None:
    world = fleet(World())
    world.policies.by_project["proj-one"] = KeyPolicy(expiry_hours=2160)
    report = run(world.ports(), settings(), secret=KEY1)
    (target,) = report.targets
    assert target.status == "rotated"
    assert any("2160h" in n and "workload identity" in n for n in target.notes)
    new = next(k for k in target.keys if "current" in k.role)
    assert new.expires == world.clock.now() + timedelta(hours=2160)
    world.clock.advance(timedelta(days=84))  # 6 days before the key expires: rotate early
    early = run(world.ports(), settings("exec-2/0"), secret=KEY1)
    assert [t.status for t in early.targets] == ["rotated"] and "expires" in early.targets[0].reason


def test_own_identity_is_never_rotated() -> None:
    world = World()
    world.add_sa_key_target(KEY1, JOB)
    report = run(world.ports(), settings())
    assert statuses(report) == {KEY1: "skipped"} and report.exit_code == 0
    assert world.faults.writes == []


def test_invalid_targets_fail_with_a_reason_and_the_others_continue() -> None:
    world = fleet(World())
    world.add_generated_target(
        "projects/p1/secrets/bad",
        annotations={"gatehouse-rotation-period": "quarterly", "gatehouse-length": "8"},
    )
    world.add_sa_key_target("projects/p1/secrets/dup", SA1)
    report = run(world.ports(), settings())
    by_name = {t.secret: t for t in report.targets}
    bad = by_name["projects/p1/secrets/bad"]
    assert bad.status == "failed"
    assert (
        "gatehouse-rotation-period" in bad.reason and "'quarterly'" in bad.reason and "length 8" in bad.reason
    )
    dup = by_name["projects/p1/secrets/dup"]
    assert dup.status == "failed" and f"already rotated by {KEY1}" in dup.reason
    assert by_name[KEY1].status == "rotated" and report.exit_code == 1


def test_one_secret_by_name() -> None:
    world = fleet(World())
    world.sm.create("projects/p1/secrets/plain", {}, {})
    report = run(world.ports(), settings(), secret=TOKEN)
    assert statuses(report) == {TOKEN: "rotated"}
    missing = run(world.ports(), settings(), secret="projects/p1/secrets/nope")
    assert "does not exist" in missing.targets[0].reason and missing.exit_code == 1
    plain = run(world.ports(), settings(), secret="projects/p1/secrets/plain")
    assert "not a rotation target" in plain.targets[0].reason


def test_a_project_that_cannot_be_listed_is_a_run_error() -> None:
    world = fleet(World())
    world.faults.fail_nth.add(("list_secrets", 1))
    report = run(world.ports(), settings())
    assert report.targets == () and report.exit_code == 1
    assert "could not be listed" in report.errors[0]


# -- concurrency -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_concurrent_runs_never_double_act(seed: int) -> None:
    world = fleet(World())
    world.faults.rng.seed(seed)
    world.faults.jitter = 0.002
    problems: list[str] = []
    world.faults.observers.append(
        lambda method: problems.extend(
            p for name in world.sm.secrets for p in world.invariant_problems(name, spec_of(name))
        )
    )
    reports: list[RunReport] = []

    def job(holder: str) -> None:
        reports.append(run(world.ports(), settings(holder)))

    threads = [threading.Thread(target=job, args=(f"exec-{i}/0",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert problems == []
    assert all(t.status in {"rotated", "maintained", "unchanged", "busy"} for r in reports for t in r.targets)
    assert sorted(email for email, _ in world.iam.created) == [SA1], "one key, created once"
    for name in (KEY1, TOKEN, PASSWORD):
        assert len(world.secret(name).versions) == 2, f"{name}: one new version"
    world.clock.advance(timedelta(minutes=16))  # a loser that saw a fresh record waits out the lease
    after = run(world.ports(), settings("exec-9/0"))
    assert set(statuses(after).values()) == {"unchanged"}


# -- consumers, sharding, the report ---------------------------------------------------------------


def consumers(world: World) -> None:
    updated = world.clock.now() - timedelta(days=3)
    world.consumers.refs[TOKEN] = [
        ConsumerRef(
            "service", "projects/p1/locations/eu/services/api", "app", "env", "API_TOKEN", "latest", updated
        ),
        ConsumerRef(
            "service", "projects/p1/locations/eu/services/old", "app", "env", "API_TOKEN", "1", updated
        ),
        ConsumerRef(
            "service",
            "projects/p1/locations/eu/services/web",
            "app",
            "volume",
            "/s/token",
            "current",
            updated,
        ),
        ConsumerRef(
            "job", "projects/p1/locations/eu/jobs/batch", "main", "env", "API_TOKEN", "current", updated
        ),
    ]


def test_consumers_are_reported_and_not_rolled_by_default() -> None:
    world = fleet(World())
    consumers(world)
    report = run(world.ports(), settings(), secret=TOKEN)
    rows = {c.name.rsplit("/", 1)[-1]: c for c in report.targets[0].consumers}
    assert rows["api"].severity == "warning" and "resolved at instance start" in rows["api"].message
    assert "latest can name a pending version" in rows["api"].message
    assert rows["old"].severity == "warning" and "pins old version 1" in rows["old"].message
    assert rows["web"].severity == "ok" and "follows rotations" in rows["web"].message
    assert rows["batch"].severity == "info" and "each execution" in rows["batch"].message
    assert world.consumers.rolled == [] and all(c.rolled is None for c in rows.values())


def test_consumers_are_rolled_behind_the_flag() -> None:
    world = fleet(World())
    consumers(world)
    report = run(world.ports(), settings(roll_consumers=True), secret=TOKEN)
    assert sorted(world.consumers.rolled) == [
        ("projects/p1/locations/eu/services/api", "latest"),
        ("projects/p1/locations/eu/services/old", "2"),
    ]
    rolled = {c.name.rsplit("/", 1)[-1]: c.rolled for c in report.targets[0].consumers}
    assert rolled["api"] and rolled["old"] and not rolled["web"]
    again = run(world.ports(), settings("exec-2/0", roll_consumers=True), secret=TOKEN)
    assert len(world.consumers.rolled) == 2 and again.targets[0].status == "unchanged", (
        "rolling is level-triggered"
    )


def test_pinned_version_that_is_disabled_is_an_error() -> None:
    world = fleet(World())
    consumers(world)
    run(world.ports(), settings(), secret=TOKEN)
    world.clock.advance(timedelta(days=8))
    report = run(world.ports(), settings("exec-2/0"), secret=TOKEN)
    old = next(c for c in report.targets[0].consumers if c.name.endswith("/old"))
    assert old.severity == "error" and "DISABLED" in old.message


def test_shards_split_the_targets_deterministically() -> None:
    world = fleet(World())
    for i in range(12):
        world.add_generated_target(f"projects/p1/secrets/extra-{i}")
    seen: dict[str, int] = {}
    for index in range(3):
        report = run(world.ports(), settings(f"exec-1/{index}"), plan_only=True, shard=(index, 3))
        for t in report.targets:
            assert t.secret not in seen
            seen[t.secret] = index
    assert set(seen) == set(world.sm.secrets)
    assert len(set(seen.values())) == 3
    again = run(world.ports(), settings(), plan_only=True, shard=(1, 3))
    assert {t.secret for t in again.targets} == {s for s, i in seen.items() if i == 1}


def test_report_json_and_markdown_are_audit_evidence() -> None:
    world = fleet(World())
    run(world.ports(), settings())
    world.clock.advance(timedelta(days=8))
    report = run(world.ports(), settings("exec-2/0"))

    data = json.loads(render_json(report))
    assert data["exit_code"] == 0 and data["counts"] == {"maintained": 3, "unchanged": 1}
    key1 = next(t for t in data["targets"] if t["secret"] == KEY1)
    assert key1["kind"] == "sa-key" and key1["service_account"] == SA1
    assert key1["policy"].startswith("sa-key") and "rotate every 90d" in key1["policy"]
    assert [a["step"].split(" (")[0] for a in key1["actions"]] == [
        "disable version 1",
        "disable key " + _version_key(world, KEY1, 1) + " of version 1",
    ]
    assert all(a["at"].endswith("Z") and a["result"] == "done" for a in key1["actions"])
    assert {v["number"]: v["state"] for v in key1["versions"]} == {1: "DISABLED", 2: "ENABLED"}
    assert {k["role"] for k in key1["keys"]} == {"previous, retired", "current, latest"}
    assert key1["due"] == ["version 1: grace 1 (7d) over since 2025-01-13T09:00:00Z"]

    markdown = render_markdown(report)
    assert markdown.startswith("# Credential rotation report")
    assert f"## `{KEY1}`: maintained" in markdown
    assert "| version | state | age | role | retired |" in markdown
    assert "disable version 1 (grace 1 over)" in markdown


# -- material never leaves Secret Manager ----------------------------------------------------------


def windows(text: str, size: int = 16) -> set[str]:
    return {line[i : i + size] for line in text.splitlines() for i in range(max(0, len(line) - size + 1))}


def test_no_material_in_logs_reports_exceptions_or_reprs(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG, logger="gatehouse")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(CloudLoggingFormatter())
    logging.getLogger("gatehouse").addHandler(handler)
    try:
        world = fleet(World())
        consumers(world)
        outputs: list[str] = []

        def progress(target: object) -> None:
            print(repr(target))

        world.faults.transient_rate = 0.15
        names = holders()
        for _ in range(30):
            outputs += _render(run(world.ports(), settings(next(names)), progress=progress))
            world.clock.advance(timedelta(days=2))
        world.faults.transient_rate = 0
        world.sm.corrupt_next_add = True
        world.clock.advance(timedelta(days=200))
        world.token_exchange.reject = CredentialRejectedError("rejected by the token endpoint")
        report = run(
            world.ports(token_exchange=True), settings(next(names), token_exchange=True), progress=progress
        )
        outputs += _render(report)
        assert any(t.status == "failed" for t in report.targets)
        accessed = world.sm.access_secret_version(KEY1, "current")
        outputs += [repr(accessed), str(accessed.payload), f"{accessed.payload}", repr(Material(b"x" * 40))]
        try:
            world.sm.access_secret_version(KEY1, "1")
        except Exception as exc:  # destroyed by now
            outputs.append(repr(exc))
    finally:
        logging.getLogger("gatehouse").removeHandler(handler)

    captured = capsys.readouterr()
    everything = "\n".join([*outputs, caplog.text, stream.getvalue(), captured.out, captured.err])
    assert "current" in everything and len(everything) > 10_000  # the scan has something to scan
    leaked_from: list[str] = []
    output_windows = windows(everything)
    for pem, _ in _pairs():
        body = "\n".join(line for line in pem.splitlines() if "-----" not in line)
        if windows(body) & output_windows:
            leaked_from.append("a private key")
    for payload in world.sm.stored:
        text = payload.decode("utf-8", "replace")
        if not text.lstrip().startswith("{") and windows(text) & output_windows:
            leaked_from.append("a generated value")
    assert len(world.sm.stored) > 8
    assert leaked_from == []


def _target(report: RunReport, name: str) -> TargetReport:
    return next(t for t in report.targets if t.secret == name)


def _render(report: RunReport) -> list[str]:
    return [render_json(report), render_markdown(report), repr(report), *(t.reason for t in report.targets)]


def _pairs() -> tuple[tuple[str, bytes], ...]:
    from rotation_fakes import rsa_key_pairs

    return rsa_key_pairs()


def _version_key(world: World, name: str, number: int) -> str:
    payload = world.secret(name).versions[number].payload
    assert payload is not None
    return str(json.loads(payload)["private_key_id"])
