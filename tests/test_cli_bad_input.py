"""Every subcommand of the CLI against a matrix of bad inputs: each must exit 2 with one line on
stderr and never a traceback (README "CLI").

The commands run as a user runs them (``python -m gatehouse.cli``, one subprocess per case) with no
Google credentials (``GOOGLE_APPLICATION_CREDENTIALS`` names a missing file, ``HOME`` is empty) and
no ``GATEHOUSE_*`` settings unless a case sets them. The subcommands are enumerated from the click
group itself, so a new subcommand fails ``test_every_subcommand_is_in_the_matrix`` until it has
cases here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest

from gatehouse.cli import cli

ROOT = Path(__file__).resolve().parents[1]
SERVICE_JSON = ROOT / "tests" / "fixtures" / "services" / "v1-gcloud-describe.json"
# a stopped stack must be reported at once, not after the clients' retries
TIMEOUT = 30

# enough settings to get past validation to the credentials
SETTINGS = {
    "GATEHOUSE_APIGEE_ORG": "acme",
    "GATEHOUSE_PROJECTS": "acme-prod",
    "GATEHOUSE_REGIONS": "europe-west1",
    "GATEHOUSE_TICKETS_SUBSCRIPTION": "projects/acme-prod/subscriptions/alerts",
    "GATEHOUSE_TICKETS_TARGET": "acme/routing",
    "GATEHOUSE_TICKETS_TOKEN_SECRET": "projects/acme-prod/secrets/tracker-token",
}
# two projects and two regions: a bare name is ambiguous
AMBIGUOUS = {
    **SETTINGS,
    "GATEHOUSE_PROJECTS": "acme-prod,acme-dev",
    "GATEHOUSE_REGIONS": "europe-west1,us-east1",
}


def command_paths(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command and group of the CLI, as the words that invoke it."""
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        yield path
        if isinstance(command, click.Group):
            yield from command_paths(command, path)


def command_of(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def has_plan_and_apply(path: tuple[str, ...]) -> bool:
    flags = {opt for p in command_of(path).params for opt in (*p.opts, *p.secondary_opts)}
    return {"--plan", "--apply"} <= flags


@dataclass(frozen=True)
class Case:
    category: str
    command: tuple[str, ...]
    args: tuple[str, ...]  # after the command words
    env: dict[str, str] = field(default_factory=dict)
    stack: str | None = None  # which prepared state dir --stack points at
    says: tuple[str, ...] = ()  # stderr must contain each (case-insensitive)

    @property
    def id(self) -> str:
        args = " ".join(self.args).replace("{dir}/", "").replace(str(ROOT) + "/", "")
        return f"{self.category}:{' '.join(self.command)}:{args}"


STATIC_CASES = [
    # missing or contradicting arguments
    Case("args", ("explain-event",), ("{dir}/no-such-file.json",), says=("cannot read",)),
    Case("args", ("render",), ()),
    Case("args", ("render",), (str(SERVICE_JSON),), says=("--out",)),
    Case("args", ("reconcile",), (), says=("--all",)),
    Case("args", ("reconcile",), ("svc", "--all"), says=("--all",)),
    Case("args", ("local",), ()),
    Case("args", ("demo",), ("--services", "0")),
    Case("args", ("rollout",), ()),
    Case("args", ("freeze",), ("--reason", "release"), SETTINGS, says=("--until",)),
    Case("args", ("freeze",), ("--until", "tomorrow", "--reason", "x"), SETTINGS, says=("RFC 3339",)),
    Case("args", ("freeze",), ("--until", "2020-01-01T00:00:00Z", "--reason", "x"), SETTINGS, says=("past",)),
    Case("args", ("freeze",), ("--until", "2999-01-01T00:00:00", "--reason", "x"), SETTINGS, says=("zone",)),
    Case(
        "args",
        ("freeze",),
        ("--until", "2999-01-01T00:00:00Z", "--reason", " "),
        SETTINGS,
        says=("--reason",),
    ),
    # names that are not resource names, or are ambiguous
    Case(
        "name", ("reconcile",), ("projects/acme-prod/services/x", "--plan"), AMBIGUOUS, says=("projects/P",)
    ),
    Case(
        "name", ("reconcile",), ("orders", "--plan"), AMBIGUOUS, says=("projects/P/locations/R/services/S",)
    ),
    Case("name", ("status",), ("orders",), AMBIGUOUS, says=("projects/P/locations/R/services/S",)),
    Case("name", ("status",), ("a/b/c",), SETTINGS, says=("projects/P/locations/R/services/S",)),
    Case(
        "name",
        ("rotate",),
        ("--plan", "--secret", "tracker-token"),
        AMBIGUOUS,
        says=("projects/P/secrets/S",),
    ),
    Case(
        "name",
        ("rotate",),
        ("--plan", "--secret", "projects//secrets/x"),
        SETTINGS,
        says=("projects/P/secrets/S",),
    ),
    # outputs that cannot be written (a path below a regular file fails even for root)
    Case("unwritable", ("render",), (str(SERVICE_JSON), "--out", "{dir}/a-file/out"), says=("a-file",)),
    Case(
        "unwritable", ("rotate",), ("--plan", "--report", "{dir}/a-file/reports"), SETTINGS, says=("a-file",)
    ),
    Case("unwritable", ("local", "up"), ("--state-dir", "{dir}/a-file/stack"), says=("a-file",)),
    Case("unwritable", ("demo",), ("--state-dir", "{dir}/a-file/stack"), says=("a-file",)),
    Case("unwritable", ("local", "down"), ("--state-dir", "{dir}/a-file")),
    # no Google credentials: settings are complete, credentials are not
    Case("credentials", ("status",), (), SETTINGS, says=("credentials",)),
    Case("credentials", ("status",), ("orders",), SETTINGS, says=("credentials",)),
    Case("credentials", ("reconcile",), ("--all", "--plan"), SETTINGS, says=("credentials",)),
    Case("credentials", ("reconcile",), ("orders", "--plan"), SETTINGS, says=("credentials",)),
    Case("credentials", ("rotate",), ("--plan",), SETTINGS, says=("credentials",)),
    Case(
        "credentials", ("rotate",), ("--plan", "--secret", "tracker-token"), SETTINGS, says=("credentials",)
    ),
    Case("credentials", ("tickets",), ("--plan",), SETTINGS, says=("credentials",)),
    Case("credentials", ("tickets", "list"), (), SETTINGS, says=("credentials",)),
    Case("credentials", ("inventory",), ("--json",), SETTINGS, says=("credentials",)),
    Case("credentials", ("history",), ("orders",), SETTINGS, says=("credentials",)),
    Case("unwritable", ("inventory",), ("--html", "{dir}/a-file/inv.html"), SETTINGS, says=("a-file",)),
    Case("settings", ("inventory",), (), says=("GATEHOUSE_APIGEE_ORG",)),
    Case("settings", ("history",), ("orders", "--since", "soon"), SETTINGS, says=("--since",)),
    Case("name", ("history",), ("a/b/c",), SETTINGS, says=("projects/P/secrets/S",)),
    *(
        Case("credentials", command, args, SETTINGS, says=("credentials",))
        for command, args in [
            (("rollout", "status"), ()),
            (("rollout", "advance"), ()),
            (("rollout", "resume"), ()),
            (("rollout", "abort"), ()),
            (("freeze",), ("--until", "2999-01-01T00:00:00Z", "--reason", "release")),
            (("unfreeze",), ()),
        ]
    ),
    Case("settings", ("rollout", "advance"), (), says=("GATEHOUSE_APIGEE_ORG",)),
    # a freeze must be able to name the Scheduler jobs it pauses, and reach them
    Case(
        "settings",
        ("freeze",),
        ("--until", "2999-01-01T00:00:00Z", "--reason", "release"),
        {
            **{k: v for k, v in SETTINGS.items() if k != "GATEHOUSE_REGIONS"},
            "GATEHOUSE_ANONYMOUS_CREDENTIALS": "true",
        },
        says=("GATEHOUSE_SCHEDULER_LOCATION",),
    ),
    Case(
        "settings",
        ("freeze",),
        ("--until", "2999-01-01T00:00:00Z", "--reason", "release"),
        {**SETTINGS, "GATEHOUSE_ANONYMOUS_CREDENTIALS": "true"},
        says=("GATEHOUSE_SCHEDULER_ENDPOINT",),
    ),
    # no settings at all, or invalid ones
    Case("settings", ("status",), ()),
    Case("settings", ("reconcile",), ("--all", "--plan"), says=("GATEHOUSE_APIGEE_ORG",)),
    Case("settings", ("reconcile",), ("--all", "--plan"), {**SETTINGS, "GATEHOUSE_KEEP_REVISIONS": "0"}),
    Case(
        "settings",
        ("rotate",),
        ("--plan",),
        {**SETTINGS, "GATEHOUSE_ROTATION_PERIOD": "banana"},
        says=("GATEHOUSE_ROTATION_PERIOD",),
    ),
    Case(
        "settings",
        ("tickets",),
        ("--plan",),
        {**SETTINGS, "GATEHOUSE_TICKETS_MAX_NEW_PER_HOUR": "-1"},
        says=("GATEHOUSE_TICKETS_MAX_NEW_PER_HOUR",),
    ),
    Case(
        "settings",
        ("tickets", "list"),
        (),
        {k: v for k, v in SETTINGS.items() if "TARGET" not in k},
        says=("GATEHOUSE_TICKETS_TARGET",),
    ),
    # a stack that is not running: its state file names ports nothing listens on
    *(
        Case(
            "stopped-stack",
            command,
            args,
            stack="stopped",
            says=("not running", "{dir}/stopped", "gatehouse local up"),
        )
        for command, args in [
            (("status",), ()),
            (("reconcile",), ("--all", "--plan")),
            (("rotate",), ("--plan",)),
            (("tickets",), ("--plan",)),
            (("tickets", "list"), ()),
            (("inventory",), ()),
            (("history",), ("orders",)),
            (("rollout", "status"), ()),
            (("freeze",), ("--until", "2999-01-01T00:00:00Z", "--reason", "release")),
            (("unfreeze",), ()),
        ]
    ),
    Case(
        "stopped-stack", ("local", "env"), ("--state-dir", "{dir}/nothing-here"), says=("gatehouse local up",)
    ),
    Case("stopped-stack", ("status",), (), stack="nothing-here", says=("gatehouse local up",)),
    # malformed JSON
    Case("json", ("explain-event",), ("{dir}/bad.json",)),
    Case("json", ("render",), ("{dir}/bad.json", "--out", "{dir}/out"), says=("not JSON",)),
    Case("json", ("status",), (), stack="malformed", says=("stack.json",)),
    Case("json", ("local", "env"), ("--state-dir", "{dir}/malformed"), says=("stack.json",)),
    Case("json", ("local", "down"), ("--state-dir", "{dir}/malformed"), says=("stack.json",)),
]
# generic: an unknown option for every command; --plan with --apply wherever both exist
GENERIC_CASES = [Case("unknown-option", path, ("--no-such-option",)) for path in command_paths()] + [
    Case("plan-and-apply", path, ("--plan", "--apply"), SETTINGS, says=("--plan", "--apply"))
    for path in command_paths()
    if has_plan_and_apply(path)
]
CASES = STATIC_CASES + GENERIC_CASES


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stopped_state(state_dir: Path) -> dict[str, object]:
    """What ``gatehouse local up`` writes, for a stack whose processes are all gone."""
    url = lambda: f"http://127.0.0.1:{closed_port()}"  # noqa: E731
    return {
        "project": "gatehouse-local",
        "project_number": "123456789012",
        "region": "europe-west1",
        "organization": "gatehouse-local",
        "environment": "test",
        "owner_id": "gatehouse-local",
        "proxy_service_account": "apigee-proxy@gatehouse-local.iam.gserviceaccount.com",
        "rotation_identity": "gatehouse-rotate@gatehouse-local.iam.gserviceaccount.com",
        "tracker_repo": "platform/apigee-routing",
        "tracker_token_secret": "projects/gatehouse-local/secrets/gatehouse-tracker-token",
        "pubsub_emulator": f"127.0.0.1:{closed_port()}",
        "firestore_emulator": f"127.0.0.1:{closed_port()}",
        **{name: url() for name in ("apigee", "cloudrun", "iam", "secretmanager", "orgpolicy", "github")},
        "functions": {"on_run_event": url(), "on_command": url()},
        "jobs": {},
        "topics": {},
        "subscriptions": {"alerts": "projects/gatehouse-local/subscriptions/gatehouse-alerts-tickets"},
        "state_dir": str(state_dir),
        "processes": [],
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-bad-input")
    (root / "home").mkdir()
    (root / "a-file").write_text("not a directory\n")
    (root / "bad.json").write_text('{"message": {"data": ')
    (root / "stopped").mkdir()
    (root / "stopped" / "stack.json").write_text(json.dumps(stopped_state(root / "stopped")))
    (root / "malformed").mkdir()
    (root / "malformed" / "stack.json").write_text('{"project": "gatehouse-local", ')
    return root


def clean_env(root: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GATEHOUSE_", "GOOGLE_", "CLOUDSDK_"))
        and k not in ("PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST")
    }
    env.update(
        HOME=str(root / "home"),
        GOOGLE_APPLICATION_CREDENTIALS=str(root / "home" / "missing-credentials.json"),
        CLOUDSDK_CONFIG=str(root / "home" / "gcloud"),
        NO_GCE_CHECK="True",
    )
    return env


def run_cli(root: Path, case: Case) -> subprocess.CompletedProcess[str]:
    prefix = ["--stack", str(root / case.stack)] if case.stack else []
    argv = [*prefix, *case.command, *(a.format(dir=root) for a in case.args)]
    return subprocess.run(
        [sys.executable, "-m", "gatehouse.cli", *argv],
        env={**clean_env(root), **case.env},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
        cwd=root,
        check=False,
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_exits_2_with_one_line_and_no_traceback(workdir: Path, case: Case) -> None:
    done = run_cli(workdir, case)
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    assert done.returncode == 2, output
    lines = done.stderr.strip().splitlines()
    assert lines, "no message on stderr"
    if not lines[0].startswith("Usage:"):  # click's usage errors: the usage, then one line
        assert len(lines) == 1, done.stderr
    for words in case.says:
        assert words.format(dir=workdir).lower() in done.stderr.lower(), done.stderr


def test_every_subcommand_is_in_the_matrix() -> None:
    covered = {c.command for c in STATIC_CASES}
    missing = set(command_paths()) - covered
    assert not missing, f"subcommands without bad-input cases: {sorted(missing)}"
    categories = {c.category for c in CASES}
    assert {
        "args",
        "name",
        "unwritable",
        "credentials",
        "stopped-stack",
        "json",
        "plan-and-apply",
    } <= categories


def test_plan_and_apply_cases_cover_every_command_that_has_both() -> None:
    assert {c.command for c in GENERIC_CASES if c.category == "plan-and-apply"} == {
        ("reconcile",),
        ("rotate",),
        ("tickets",),
    }


def test_an_unexpected_error_exits_1_with_one_line(workdir: Path) -> None:
    """Work that fails for a reason nobody foresaw: one line and exit 1, the traceback only on
    request (GATEHOUSE_DEBUG=1)."""
    code = (
        "import sys, gatehouse.cli as c\n"
        "@c.cli.command('boom')\n"
        "def boom():\n"
        "    raise RuntimeError('kaput')\n"
        "c.main()\n"
    )
    env = clean_env(workdir)
    done = subprocess.run(
        [sys.executable, "-c", code, "boom"],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "kaput" in done.stderr
    debug = subprocess.run(
        [sys.executable, "-c", code, "boom"],
        env={**env, "GATEHOUSE_DEBUG": "1"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr
