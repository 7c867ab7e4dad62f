"""The ``gatehouse`` command line.

Every command reads settings from the environment (``GATEHOUSE_*``); ``--stack DIR`` points the
command at a local stack started with ``gatehouse local up`` instead. Heavy imports happen inside
commands so that ``gatehouse --help`` and ``explain-event`` start fast.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from gatehouse.errors import GatehouseError, InputError

EXIT_INPUT = 2
EXIT_FAILED = 1


def _fail(message: str, code: int = EXIT_INPUT) -> NoReturn:
    click.echo(f"gatehouse: error: {message}", err=True)
    sys.exit(code)


def _read_limited(path: str, limit: int) -> bytes:
    """Read at most ``limit + 1`` bytes so that an oversized input is detected, not slurped."""
    try:
        if path == "-":
            return sys.stdin.buffer.read(limit + 1)
        with open(path, "rb") as fh:
            return fh.read(limit + 1)
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}")


def _use_stack(stack: str | None) -> None:
    """Export the local stack's endpoints into this process's environment."""
    if not stack:
        return
    from gatehouse.local.stack import StackError, load_state, settings_env

    try:
        state = load_state(Path(stack))
    except StackError as exc:
        _fail(str(exc), EXIT_FAILED)
    os.environ.update(settings_env(state))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--stack",
    envvar="GATEHOUSE_STACK",
    metavar="DIR",
    help="Use the local stack in DIR (from `gatehouse local up`) instead of Google Cloud.",
)
@click.version_option(package_name="gatehouse")
def main(stack: str | None) -> None:
    """gatehouse: Apigee in front of a fleet of Cloud Run services."""
    _use_stack(stack)


# -- explain-event ------------------------------------------------------------------------------


@main.command("explain-event")
@click.argument("path", default="-", metavar="[PATH|-]")
def explain_event(path: str) -> None:
    """Decode ONE payload exactly as a handler receives it and print what gatehouse sees.

    Accepts Pub/Sub push envelopes, CloudEvents (structured, or the LogEntry body of a binary one),
    Monitoring incidents, Secret Manager notifications and command messages. Exit 2 on bad input.
    """
    from gatehouse import events

    raw = _read_limited(path, events.MAX_PAYLOAD_BYTES)
    try:
        decoded = events.decode(raw)
    except InputError as exc:
        _fail(str(exc))
    click.echo(json.dumps(decoded.to_dict(), sort_keys=True))


# -- render -------------------------------------------------------------------------------------


@main.command()
@click.argument("service_json", metavar="SERVICE_JSON")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write apiproxy/ into.",
)
@click.option(
    "--profiles",
    "profiles_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Profiles YAML (default: the file shipped with gatehouse, or GATEHOUSE_PROFILES_FILE).",
)
@click.option("--project", help="Project ID (the v1 form names the project by number).")
@click.option("--region", help="Region, when the service JSON does not say.")
def render(
    service_json: str, out_dir: Path, profiles_file: Path | None, project: str | None, region: str | None
) -> None:
    """Render the Apigee proxy bundle of one Cloud Run service (v2 API JSON or `gcloud run services
    describe --format=json`). Prints {"proxy", "base_path", "profile", "hash"}; writes nothing for a
    service that has not opted in."""
    from gatehouse import bundle, exposure
    from gatehouse.config import load_settings
    from gatehouse.profiles import load_profiles

    raw = _read_limited(service_json, 1024 * 1024)
    if len(raw) > 1024 * 1024:
        _fail(f"{service_json} is over the 1 MiB limit")
    try:
        settings = load_settings()
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise InputError("SERVICE_JSON must hold a JSON object")
        profiles = load_profiles(profiles_file or settings.profiles_file)
        service = exposure.RunService.from_json(doc, project=project, region=region)
        spec = exposure.desired(service, profiles, default_environments=settings.apigee_environments)
        if isinstance(spec, exposure.NotExposed):
            click.echo(json.dumps({"proxy": None, "reason": spec.reason}))
            return
        rendered = bundle.render(spec, profiles.get(spec.profile), owner_id=settings.owner_id)
    except json.JSONDecodeError as exc:
        _fail(f"{service_json} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    except GatehouseError as exc:
        _fail(str(exc))
    bundle.write_tree(rendered, out_dir)
    click.echo(
        json.dumps(
            {
                "proxy": spec.proxy_name,
                "base_path": spec.base_path,
                "profile": spec.profile,
                "environments": list(spec.environments),
                "hash": rendered.sha256,
            }
        )
    )


# -- reconcile / status -------------------------------------------------------------------------


def _settings() -> Any:
    from gatehouse.config import load_settings
    from gatehouse.logging import configure

    try:
        settings = load_settings()
    except InputError as exc:
        _fail(str(exc))
    configure(stream=sys.stderr, level=int(os.environ.get("GATEHOUSE_LOG_LEVEL", "30")))
    return settings


@main.command()
@click.argument("service", required=False, metavar="[SERVICE]")
@click.option(
    "--all", "sweep_all", is_flag=True, help="Every service of GATEHOUSE_PROJECTS x GATEHOUSE_REGIONS."
)
@click.option(
    "--plan/--apply",
    "plan_only",
    default=True,
    show_default=True,
    help="--plan prints what would change and changes nothing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON lines.")
def reconcile(service: str | None, sweep_all: bool, plan_only: bool, as_json: bool) -> None:
    """Bring Apigee in line with Cloud Run for SERVICE (projects/P/locations/R/services/S) or --all."""
    from gatehouse import runtime
    from gatehouse.cli_views import print_reports, progress_bar
    from gatehouse.registration.plan import ServiceRef

    if bool(service) == sweep_all:
        _fail("give either SERVICE or --all")
    settings = _settings()
    try:
        registrar = runtime.registrar(settings)
        if service:
            try:
                ref = ServiceRef.parse(service)
            except ValueError as exc:
                _fail(str(exc))
            reports = [registrar.reconcile_service(ref, apply=not plan_only)]
        else:
            with progress_bar("reconciling", enabled=not as_json) as progress:
                reports = registrar.sweep(apply=not plan_only, progress=progress).reports
    except GatehouseError as exc:
        _fail(str(exc), EXIT_FAILED)
    print_reports(reports, as_json=as_json, applied=not plan_only)
    if any(r.outcome.result in ("error", "conflict") for r in reports):
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("service", required=False, metavar="[SERVICE]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def status(service: str | None, as_json: bool) -> None:
    """Show the last registration outcome per service (registered, unchanged, conflict, error)."""
    from gatehouse import runtime
    from gatehouse.cli_views import print_outcomes

    settings = _settings()
    try:
        outcomes = runtime.coordinator(settings).outcomes(service or "")
    except GatehouseError as exc:
        _fail(str(exc), EXIT_FAILED)
    print_outcomes(outcomes, as_json=as_json)


# -- rotation ---------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--plan/--apply",
    "plan_only",
    default=False,
    show_default=True,
    help="--plan reads everything and changes nothing: it prints what is due.",
)
@click.option("--secret", metavar="projects/P/secrets/S", help="Only this secret (still age-gated).")
@click.option("--force", is_flag=True, help="Rotate now whatever is older than this moment (after a leak).")
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write the run report as JSON and Markdown into this directory.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run report as JSON.")
def rotate(plan_only: bool, secret: str | None, force: bool, report_dir: Path | None, as_json: bool) -> None:
    """Rotate the service-account keys and generated secrets that are due (README "Rotation")."""
    from datetime import UTC, datetime

    from gatehouse import runtime
    from gatehouse.cli_views import print_rotation, progress_bar
    from gatehouse.rotation.job import run
    from gatehouse.rotation.report import render_json, render_markdown
    from gatehouse.rotation.settings import RotationSettings

    settings = _settings()
    try:
        rotation = RotationSettings.from_env(os.environ)
        ports = runtime.rotation_ports(settings, rotation)
        with progress_bar("rotating", enabled=not as_json) as progress:
            done = 0

            def advance(_: object) -> None:
                nonlocal done
                done += 1
                progress(done, None)

            report = run(
                ports,
                rotation,
                plan_only=plan_only,
                secret=secret,
                force_before=datetime.now(UTC) if force else None,
                progress=advance,
                workers=rotation.workers,
            )
    except GatehouseError as exc:
        _fail(str(exc), EXIT_FAILED)
    if report_dir:
        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / f"{report.run_id}.json").write_text(render_json(report))
        (report_dir / f"{report.run_id}.md").write_text(render_markdown(report))
    if as_json:
        click.echo(render_json(report))
    else:
        print_rotation(report)
    sys.exit(report.exit_code)


# -- tickets ----------------------------------------------------------------------------------------


@main.group(invoke_without_command=True)
@click.option(
    "--plan/--apply",
    "plan_only",
    default=False,
    show_default=True,
    help="--plan drains nothing and writes nothing: it prints what a run would do.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run report as JSON.")
@click.pass_context
def tickets(ctx: click.Context, plan_only: bool, as_json: bool) -> None:
    """Turn Apigee latency alerts into routing-policy tickets (one run of the job)."""
    if ctx.invoked_subcommand is not None:
        return
    from gatehouse import runtime
    from gatehouse.config import load_tickets_config
    from gatehouse.tickets import run

    settings = _settings()
    try:
        config = load_tickets_config()
        ports = runtime.ticket_ports(settings, config)
        report = run(ports, runtime.ticket_settings(config, settings), plan=plan_only)
    except GatehouseError as exc:
        _fail(str(exc), EXIT_FAILED)
    if as_json:
        click.echo(json.dumps(report.to_dict(), sort_keys=True, default=str))
    else:
        click.echo(report.plan_text)
    sys.exit(report.exit_code)


@tickets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def tickets_list(as_json: bool) -> None:
    """Show the tickets gatehouse opened (open and closed) as a table."""
    from dataclasses import asdict

    from gatehouse import runtime
    from gatehouse.cli_views import print_tickets
    from gatehouse.config import load_tickets_config
    from gatehouse.tickets.settings import TicketSettings

    settings = _settings()
    try:
        config = load_tickets_config()
        found = runtime.tracker(settings, config).list_tickets(TicketSettings().labels[0])
    except GatehouseError as exc:
        _fail(str(exc), EXIT_FAILED)
    if as_json:
        for ticket in found:
            click.echo(json.dumps(asdict(ticket), sort_keys=True))
        return
    print_tickets(found)


# -- local stack ---------------------------------------------------------------------------------


@main.group()
def local() -> None:
    """The one-machine stack: real emulators + stand-ins, wired like production."""


@local.command("up")
@click.option("--state-dir", default=".gatehouse/local", show_default=True, type=click.Path(path_type=Path))
def local_up(state_dir: Path) -> None:
    """Start the stack in the background; print its endpoints as JSON (last line)."""
    from gatehouse.local.stack import StackError, up

    try:
        state = up(state_dir, log=lambda m: click.echo(m, err=True))
    except StackError as exc:
        _fail(str(exc), EXIT_FAILED)
    click.echo(json.dumps(state, sort_keys=True))


@local.command("down")
@click.option("--state-dir", default=".gatehouse/local", show_default=True, type=click.Path(path_type=Path))
def local_down(state_dir: Path) -> None:
    """Stop everything `local up` started."""
    from gatehouse.local.stack import down

    stopped = down(state_dir)
    click.echo(f"stopped {len(stopped)} processes", err=True)


@local.command("env")
@click.option("--state-dir", default=".gatehouse/local", show_default=True, type=click.Path(path_type=Path))
def local_env(state_dir: Path) -> None:
    """Print shell exports that point gatehouse (and gcloud-style clients) at the stack."""
    from gatehouse.local.stack import StackError, load_state, settings_env

    try:
        state = load_state(state_dir)
    except StackError as exc:
        _fail(str(exc), EXIT_FAILED)
    for key, value in sorted(settings_env(state).items()):
        click.echo(f"export {key}={shlex.quote(value)}")


@main.command()
@click.option("--state-dir", default=".gatehouse/local", show_default=True, type=click.Path(path_type=Path))
@click.option("--services", default=6, show_default=True, help="How many sample services to deploy.")
@click.option("--keep/--down", default=True, show_default=True, help="Leave the stack running afterwards.")
def demo(state_dir: Path, services: int, keep: bool) -> None:
    """The main job on one machine: start the stack, deploy a sample fleet into the Cloud Run
    stand-in, wait until every opted-in service is registered in Apigee, and print a table."""
    from gatehouse.local.demo import run_demo
    from gatehouse.local.stack import StackError

    try:
        ok = run_demo(state_dir, services=services, keep=keep)
    except StackError as exc:
        _fail(str(exc), EXIT_FAILED)
    sys.exit(0 if ok else EXIT_FAILED)


if __name__ == "__main__":  # pragma: no cover
    main()
