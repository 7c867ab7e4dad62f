"""The ``gatehouse`` command line.

Every command reads settings from the environment (``GATEHOUSE_*``); ``--stack DIR`` points the
command at a local stack started with ``gatehouse local up`` instead. Heavy imports happen inside
commands so that ``gatehouse --help`` and ``explain-event`` start fast.

Exit codes, decided in one place (:func:`run`): 0 done; 1 the work itself failed; 2 the user must
fix something (arguments, settings, credentials, a stack that is not running). Every error is one
line on stderr; ``--debug`` (or ``GATEHOUSE_DEBUG=1``) adds the traceback of an unexpected one.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from gatehouse.errors import GatehouseError, InputError, PermanentError

if TYPE_CHECKING:
    from gatehouse.config import Settings

EXIT_INPUT = 2
EXIT_FAILED = 1
_TRUE = ("1", "true", "yes", "on")
_debug = {"on": False}


def _fail(message: str, code: int = EXIT_INPUT) -> NoReturn:
    click.echo(f"gatehouse: error: {_one_line(message)}", err=True)
    sys.exit(code)


def _one_line(message: str) -> str:
    return " ".join(message.split()) or "(no message)"


def _read_limited(path: str, limit: int) -> bytes:
    """Read at most ``limit + 1`` bytes so that an oversized input is detected, not slurped."""
    try:
        if path == "-":
            return sys.stdin.buffer.read(limit + 1)
        with open(path, "rb") as fh:
            return fh.read(limit + 1)
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}")


def _writable_dir(path: Path, option: str) -> None:
    """Fail (exit 2) unless ``path`` is, or can be created as, a directory this process may write;
    creates nothing, so that a run that writes nothing leaves nothing behind."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        _fail(f"{option} {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        _fail(f"{option} {path}: {existing} is not writable")


@dataclass(frozen=True)
class _Stack:
    """The local stack ``--stack DIR`` points at."""

    dir: str
    state: dict[str, Any]


def _plan_or_apply(*, default_plan: bool, plan_help: str) -> Callable[[Callable[..., Any]], Any]:
    """``--plan`` and ``--apply`` as two flags that exclude each other (exit 2 when both are given);
    the command receives ``plan_only``."""

    def decorate(command: Callable[..., Any]) -> Any:
        @functools.wraps(command)
        def wrapper(*args: Any, plan: bool, apply: bool, **kwargs: Any) -> Any:
            if plan and apply:
                raise click.UsageError("--plan and --apply exclude each other: give one of them")
            return command(*args, plan_only=plan or (default_plan and not apply), **kwargs)

        default = "--plan" if default_plan else "--apply"
        wrapper = click.option("--apply", "apply", is_flag=True, help=f"Change things. [default: {default}]")(
            wrapper
        )
        return click.option("--plan", "plan", is_flag=True, help=plan_help)(wrapper)

    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--stack",
    envvar="GATEHOUSE_STACK",
    metavar="DIR",
    help="Use the local stack in DIR (from `gatehouse local up`) instead of Google Cloud.",
)
@click.option(
    "--debug",
    is_flag=True,
    envvar="GATEHOUSE_DEBUG",
    help="Show the traceback of an unexpected error (also GATEHOUSE_DEBUG=1).",
)
@click.version_option(package_name="gatehouse")
@click.pass_context
def cli(ctx: click.Context, stack: str | None, debug: bool) -> None:
    """gatehouse: Apigee in front of a fleet of Cloud Run services.

    Exit codes: 0 done, 1 the work failed, 2 something to fix first (arguments, settings,
    credentials, a local stack that is not running).
    """
    _debug["on"] = _debug["on"] or debug
    # `local` and `demo` take --state-dir: they start, stop and read stacks themselves
    if not stack or ctx.invoked_subcommand in ("local", "demo"):
        return
    from gatehouse.local.stack import load_state, settings_env

    state = load_state(Path(stack))
    os.environ.update(settings_env(state))
    ctx.obj = _Stack(stack, state)


def _settings() -> Settings:
    """The settings (exit 2 on missing or invalid ones), with logs configured onto stderr."""
    from gatehouse.config import load_settings
    from gatehouse.logging import configure

    settings = load_settings()
    configure(stream=sys.stderr, level=int(os.environ.get("GATEHOUSE_LOG_LEVEL", "30")))
    return settings


def _require(**settings: object) -> None:
    """Exit 2 naming every setting (``GATEHOUSE_X=value``) that is empty."""
    missing = [name for name, value in settings.items() if not value]
    if missing:
        raise InputError(f'this command needs {", ".join(missing)} (README "Settings")')


def _connect(settings: Settings) -> None:
    """Before any client is built: fail at once (exit 2) when the local stack is not running or
    there are no Google credentials, instead of a client's minutes of retries or its traceback."""
    stack = click.get_current_context().find_root().obj
    if isinstance(stack, _Stack):
        from gatehouse.local.stack import check_running

        check_running(stack.state, stack.dir)
    if not settings.anonymous_credentials:
        import google.auth

        google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])


def _classify(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one line for an exception that reached the top."""
    if isinstance(exc, InputError):
        return EXIT_INPUT, str(exc)
    # only ever raised once their module is imported: no import here, so the CLI stays fast
    auth = sys.modules.get("google.auth.exceptions")
    if auth is not None and isinstance(exc, auth.DefaultCredentialsError | auth.RefreshError):
        return EXIT_INPUT, (
            f"no usable Google credentials ({exc}): run `gcloud auth application-default login`, "
            "set GOOGLE_APPLICATION_CREDENTIALS, or use --stack DIR for the local stack"
        )
    core = sys.modules.get("google.api_core.exceptions")
    if core is not None and isinstance(exc, core.Unauthenticated | core.PermissionDenied):
        return EXIT_INPUT, f"Google refused the credentials: {exc}"
    if isinstance(exc, PermanentError) and exc.status in (401, 403):
        return EXIT_INPUT, f"Google refused the credentials: {exc}"
    if isinstance(exc, GatehouseError):
        return EXIT_FAILED, str(exc)
    return EXIT_FAILED, (
        f"unexpected {type(exc).__name__}: {exc} (--debug or GATEHOUSE_DEBUG=1 shows the traceback)"
    )


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code: the one place exceptions become exit codes."""
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None, prog_name="gatehouse", standalone_mode=False
        )
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("gatehouse: interrupted", err=True)
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_FAILED)
    except Exception as exc:
        code, message = _classify(exc)
        if _debug["on"] or os.environ.get("GATEHOUSE_DEBUG", "").strip().lower() in _TRUE:
            import traceback

            traceback.print_exc()
        from gatehouse.logging import redact

        click.echo(f"gatehouse: error: {_one_line(redact(message))}", err=True)
        return code
    return result if isinstance(result, int) else 0


def main() -> NoReturn:
    """The ``gatehouse`` console script."""
    sys.exit(run())


# -- explain-event ------------------------------------------------------------------------------


@cli.command("explain-event")
@click.argument("path", default="-", metavar="[PATH|-]")
def explain_event(path: str) -> None:
    """Decode ONE payload exactly as a handler receives it and print what gatehouse sees.

    Accepts Pub/Sub push envelopes, CloudEvents (structured, or the LogEntry body of a binary one),
    Monitoring incidents, Secret Manager notifications and command messages. Exit 2 on bad input.
    """
    from gatehouse import events

    raw = _read_limited(path, events.MAX_PAYLOAD_BYTES)
    decoded = events.decode(raw)
    click.echo(json.dumps(decoded.to_dict(), sort_keys=True))


PRODUCT_FILE = "apiproduct.json"

# -- render -------------------------------------------------------------------------------------


@cli.command()
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
    describe --format=json`). Prints {"proxy", "base_path", "profile", "environments", "hash",
    "product"} and writes the API product JSON gatehouse would create next to apiproxy/, as
    apiproduct.json ("product" null and no file for a profile without caller auth); writes nothing
    for a service that has not opted in (it prints {"proxy": null, "reason"})."""
    from gatehouse import bundle, exposure
    from gatehouse.profiles import load_profiles
    from gatehouse.registration import products

    _writable_dir(out_dir, "--out")
    raw = _read_limited(service_json, 1024 * 1024)
    if len(raw) > 1024 * 1024:
        _fail(f"{service_json} is over the 1 MiB limit")
    settings = _settings()
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        _fail(f"{service_json} is not JSON: {msg}{where}")
    if not isinstance(doc, dict):
        raise InputError("SERVICE_JSON must hold a JSON object")
    profiles = load_profiles(profiles_file or settings.profiles_file)
    service = exposure.RunService.from_json(doc, project=project, region=region)
    spec = exposure.desired(service, profiles, default_environments=settings.apigee_environments)
    if isinstance(spec, exposure.NotExposed):
        click.echo(json.dumps({"proxy": None, "reason": spec.reason}))
        return
    profile = profiles.get(spec.profile)
    rendered = bundle.render(spec, profile, owner_id=settings.owner_id)
    wanted = products.for_service(spec, profile)
    created = (
        products.plan_product(wanted, None, owner_id=settings.owner_id, policy=settings.policy).product
        if wanted
        else None
    )
    try:
        bundle.write_tree(rendered, out_dir)
        if created is not None:
            (out_dir / PRODUCT_FILE).write_text(json.dumps(created.to_json(), indent=2) + "\n")
    except OSError as exc:
        _fail(f"cannot write the bundle into {out_dir}: {exc.strerror or exc}")
    click.echo(
        json.dumps(
            {
                "proxy": spec.proxy_name,
                "base_path": spec.base_path,
                "profile": spec.profile,
                "environments": list(spec.environments),
                "hash": rendered.content_hash,  # the gatehouse-hash label holds its first 48 characters
                "product": created.name if created else None,
            }
        )
    )


# -- reconcile / status -------------------------------------------------------------------------


@cli.command()
@click.argument("service", required=False, metavar="[SERVICE]")
@click.option(
    "--all", "sweep_all", is_flag=True, help="Every service of GATEHOUSE_PROJECTS x GATEHOUSE_REGIONS."
)
@_plan_or_apply(default_plan=True, plan_help="Print what would change and change nothing. [default]")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON lines.")
def reconcile(service: str | None, sweep_all: bool, plan_only: bool, as_json: bool) -> None:
    """Bring Apigee in line with Cloud Run for SERVICE or --all.

    SERVICE is projects/P/locations/R/services/S, or just S when GATEHOUSE_PROJECTS and
    GATEHOUSE_REGIONS name one project and one region. Prints one row per service with its
    actions; exit 1 when a service is in conflict or error."""
    from gatehouse import names, runtime
    from gatehouse.cli_views import print_reports, progress_bar
    from gatehouse.registration.plan import ServiceRef

    if bool(service) == sweep_all:
        raise click.UsageError("give either SERVICE or --all")
    settings = _settings()
    _require(GATEHOUSE_APIGEE_ORG=settings.apigee_org)
    if sweep_all:
        _require(GATEHOUSE_PROJECTS=settings.projects, GATEHOUSE_REGIONS=settings.regions)
    ref = (
        ServiceRef.parse(names.service_key(service, settings.projects, settings.regions)) if service else None
    )
    _connect(settings)
    registrar = runtime.registrar(settings)
    if ref is not None:
        reports = [registrar.reconcile_service(ref, apply=not plan_only)]
    else:
        with progress_bar("reconciling", enabled=not as_json) as progress:
            reports = registrar.sweep(apply=not plan_only, progress=progress).reports
    print_reports(reports, as_json=as_json, applied=not plan_only)
    if any(r.outcome.result in ("error", "conflict") for r in reports):
        sys.exit(EXIT_FAILED)


@cli.command()
@click.argument("service", required=False, metavar="[SERVICE]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def status(service: str | None, as_json: bool) -> None:
    """Show the last registration outcome per service (registered, unchanged, conflict, error).

    SERVICE is projects/P/locations/R/services/S (or just S, as for `reconcile`); projects/P or
    projects/P/locations/R shows every service there."""
    from gatehouse import names, runtime
    from gatehouse.cli_views import print_outcomes

    settings = _settings()
    key, exact = (
        names.service_selector(service, settings.projects, settings.regions) if service else ("", False)
    )
    _connect(settings)
    outcomes = runtime.coordinator(settings).outcomes(key)
    if exact:
        outcomes = [o for o in outcomes if o.key == key]
    import time

    from gatehouse.cli_views import freeze_lines

    # on stderr: the table (or JSON lines) on stdout stays what scripts parse
    for line in freeze_lines(runtime.freeze_record(settings), time.time()):
        click.echo(line, err=True)
    print_outcomes(outcomes, as_json=as_json, selected=key)


# -- inventory / history ------------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the inventory as one JSON document.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Also write the inventory as one self-contained HTML page to FILE.",
)
@click.option(
    "--live-states",
    is_flag=True,
    help="Read each deployment's runtime state (one more Apigee call per deployed proxy).",
)
@click.option("--no-tickets", is_flag=True, help="Do not read the tracker.")
def inventory(as_json: bool, html_file: Path | None, live_states: bool, no_tickets: bool) -> None:
    """One view of the fleet: every service with its proxy, access, last outcome, credentials and
    open tickets, then conflicts, orphans, drift, rotation targets and the service-account map.

    Read in bulk (README "Inventory"); exit 1 when some read failed (the output says which)."""
    from gatehouse import runtime
    from gatehouse.cli_views import print_inventory

    if html_file is not None:
        _writable_dir(html_file.parent if str(html_file.parent) else Path("."), "--html")
        if html_file.is_dir():
            _fail(f"--html {html_file}: is a directory")
    settings = _settings()
    _require(
        GATEHOUSE_APIGEE_ORG=settings.apigee_org,
        GATEHOUSE_PROJECTS=settings.projects,
        GATEHOUSE_REGIONS=settings.regions,
    )
    _connect(settings)
    found = runtime.inventory(settings, with_tickets=not no_tickets, live_states=live_states)
    if html_file is not None:
        from gatehouse.inventory.render import to_html

        try:
            html_file.parent.mkdir(parents=True, exist_ok=True)
            html_file.write_text(to_html(found), encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot write {html_file}: {exc.strerror or exc}")
    if as_json:
        from gatehouse.inventory.render import to_json

        click.echo(to_json(found))
    else:
        print_inventory(found)
    if found.incomplete:
        sys.exit(EXIT_FAILED)


@cli.command()
@click.argument("resource", metavar="SERVICE|SECRET|PROXY")
@click.option("--since", default="30d", show_default=True, help="How far back: 90m, 12h, 30d, 2w.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per row.")
def history(resource: str, since: str, as_json: bool) -> None:
    """What gatehouse did to one service, secret or proxy, from its own entries in Cloud Logging:
    time, trigger (audit entry, sweep, command, schedule), correlation id, actions and outcome.

    SERVICE is projects/P/locations/R/services/S, SECRET projects/P/secrets/S; a bare name is
    looked up as a proxy, a service of the one configured project and region, and a secret."""
    from dataclasses import asdict
    from datetime import UTC, datetime

    from gatehouse.cli_views import print_history
    from gatehouse.exposure import proxy_name
    from gatehouse.inventory import history as timeline

    window = timeline.parse_since(since)
    settings = _settings()
    target = timeline.resource(
        resource,
        projects=settings.projects,
        regions=settings.regions,
        project_numbers=settings.project_numbers,
        proxy_of=proxy_name,
    )
    project = settings.logging_project or (settings.projects[0] if settings.projects else "")
    _require(GATEHOUSE_PROJECTS=project)
    _connect(settings)
    from gatehouse.adapters.logreader import LogReader

    reader = LogReader(project, endpoint=settings.logging_endpoint, anonymous=settings.anonymous_credentials)
    query = timeline.query(target, since=datetime.now(UTC) - window)
    rows = timeline.timeline(reader.entries(query, limit=timeline.MAX_ENTRIES))
    if as_json:
        for row in rows:
            click.echo(json.dumps(asdict(row), sort_keys=True))
        return
    print_history(rows, resource=resource, since=since)


# -- rotation ---------------------------------------------------------------------------------------


@cli.command()
@_plan_or_apply(default_plan=False, plan_help="Read everything and change nothing: print what is due.")
@click.option(
    "--secret",
    metavar="projects/P/secrets/S",
    help="Only this secret (still age-gated); just S when rotation searches one project.",
)
@click.option("--force", is_flag=True, help="Rotate now whatever is older than this moment (after a leak).")
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write the run report as JSON and Markdown into this directory.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run report as JSON.")
def rotate(plan_only: bool, secret: str | None, force: bool, report_dir: Path | None, as_json: bool) -> None:
    """Rotate the service-account keys and generated secrets that are due (README "Rotation").

    Prints a summary table; exit 1 when a target failed or was refused."""
    from datetime import UTC, datetime

    from gatehouse import names, runtime
    from gatehouse.cli_views import print_rotation, progress_bar
    from gatehouse.rotation.job import run as run_rotation
    from gatehouse.rotation.report import render_json, render_markdown
    from gatehouse.rotation.settings import RotationSettings

    if report_dir is not None:
        _writable_dir(report_dir, "--report")
    settings = _settings()
    rotation = RotationSettings.from_env(os.environ)
    name = names.secret_name(secret, rotation.projects, settings.project_numbers) if secret else None
    _connect(settings)
    ports = runtime.rotation_ports(settings, rotation)
    with progress_bar("rotating", enabled=not as_json) as progress:
        done = 0

        def advance(_: object) -> None:
            nonlocal done
            done += 1
            progress(done, None)

        report = run_rotation(
            ports,
            rotation,
            plan_only=plan_only,
            secret=name,
            force_before=datetime.now(UTC) if force else None,
            progress=advance,
            workers=rotation.workers,
        )
    if report_dir:
        try:
            report_dir.mkdir(parents=True, exist_ok=True)
            (report_dir / f"{report.run_id}.json").write_text(render_json(report))
            (report_dir / f"{report.run_id}.md").write_text(render_markdown(report))
        except OSError as exc:
            _fail(f"cannot write the report into {report_dir}: {exc.strerror or exc}")
    if as_json:
        click.echo(render_json(report))
    else:
        print_rotation(report)
    sys.exit(report.exit_code)


# -- tickets ----------------------------------------------------------------------------------------


@cli.group(invoke_without_command=True)
@_plan_or_apply(default_plan=False, plan_help="Drain nothing and write nothing: print what a run would do.")
@click.option("--json", "as_json", is_flag=True, help="Print the run report as JSON.")
@click.pass_context
def tickets(ctx: click.Context, plan_only: bool, as_json: bool) -> None:
    """Turn Apigee latency alerts into routing-policy tickets (one run of the job).

    Exit 1 when something was left for the next run."""
    if ctx.invoked_subcommand is not None:
        return
    from gatehouse import runtime
    from gatehouse.config import load_tickets_config
    from gatehouse.tickets import run as run_tickets

    settings = _settings()
    config = load_tickets_config()
    _require(
        GATEHOUSE_APIGEE_ORG=settings.apigee_org,
        GATEHOUSE_TICKETS_SUBSCRIPTION=config.subscription,
        GATEHOUSE_TICKETS_TARGET=config.target,
        GATEHOUSE_TICKETS_TOKEN_SECRET=config.token_secret,
    )
    _connect(settings)
    report = run_tickets(
        runtime.ticket_ports(settings, config), runtime.ticket_settings(config, settings), plan=plan_only
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), sort_keys=True, default=str))
    else:
        click.echo(report.plan_text)
    sys.exit(report.exit_code)


@tickets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def tickets_list(as_json: bool) -> None:
    """Show the tickets gatehouse opened (open and closed) as a table, their links below it."""
    from dataclasses import asdict

    from gatehouse import runtime
    from gatehouse.cli_views import print_tickets
    from gatehouse.config import load_tickets_config
    from gatehouse.tickets.settings import TicketSettings

    settings = _settings()
    config = load_tickets_config()
    _require(GATEHOUSE_TICKETS_TARGET=config.target, GATEHOUSE_TICKETS_TOKEN_SECRET=config.token_secret)
    _connect(settings)
    found = runtime.tracker(settings, config).list_tickets(TicketSettings().labels[0])
    if as_json:
        for ticket in found:
            row = asdict(ticket)
            row.pop("body", None)  # the description is for the inventory's evidence, not this list
            click.echo(json.dumps(row, sort_keys=True))
        return
    print_tickets(found)


# -- local stack ---------------------------------------------------------------------------------

_STATE_DIR = click.option(
    "--state-dir",
    default=".gatehouse/local",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the stack keeps stack.json and its logs.",
)


@cli.group(no_args_is_help=True)
def local() -> None:
    """The one-machine stack: real emulators + stand-ins, wired like production."""


@local.command("up")
@_STATE_DIR
def local_up(state_dir: Path) -> None:
    """Start the stack in the background; print its endpoints as JSON (last line)."""
    from gatehouse.local.stack import up

    state = up(state_dir, log=lambda m: click.echo(m, err=True))
    click.echo(json.dumps(state, sort_keys=True))


@local.command("down")
@_STATE_DIR
def local_down(state_dir: Path) -> None:
    """Stop everything `local up` started."""
    from gatehouse.local.stack import down

    stopped = down(state_dir, log=lambda line: click.echo(line, err=True))
    summary = f"stopped {len(stopped)} processes" if stopped else f"no stack running in {state_dir}"
    click.echo(summary, err=True)


@local.command("env")
@_STATE_DIR
def local_env(state_dir: Path) -> None:
    """Print shell exports that point gatehouse (and gcloud-style clients) at the stack."""
    from gatehouse.local.stack import load_state, settings_env

    state = load_state(state_dir)
    for key, value in sorted(settings_env(state).items()):
        click.echo(f"export {key}={shlex.quote(value)}")


@cli.command()
@_STATE_DIR
@click.option(
    "--services",
    default=6,
    show_default=True,
    type=click.IntRange(1, 200),
    help="How many sample services to deploy (1-200).",
)
@click.option("--keep/--down", default=True, show_default=True, help="Leave the stack running afterwards.")
def demo(state_dir: Path, services: int, keep: bool) -> None:
    """The three jobs on one machine: start the stack (unless it runs), then print three tables.

    Registration: deploy a sample fleet into the Cloud Run stand-in and wait until every opted-in
    service is registered in Apigee. Rotation: rotate the sample secrets. Tickets: turn a latency
    incident into routing-policy tickets. Exit 1 when one of the three did not succeed."""
    from gatehouse.local.demo import run_demo

    ok = run_demo(state_dir, services=services, keep=keep)
    sys.exit(0 if ok else EXIT_FAILED)


# -- rollouts and freeze ----------------------------------------------------------------------------


@cli.group()
def rollout() -> None:
    """Fleet-wide changes (profiles file, gatehouse version, bundle settings) in health-gated waves."""


@rollout.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the rollout record as JSON.")
def rollout_status(as_json: bool) -> None:
    """The current rollout: state, waves, each proxy's state and verdict with its numbers."""
    from gatehouse import runtime
    from gatehouse.cli_views import print_rollout

    settings = _settings()
    _connect(settings)
    engine = runtime.rollout_engine(settings)
    print_rollout(engine.current(), runtime.freeze_record(settings), as_json=as_json)


def _rollout_verb(verb: str) -> None:
    from gatehouse import runtime
    from gatehouse.cli_views import print_rollout

    settings = _settings()
    _require(GATEHOUSE_APIGEE_ORG=settings.apigee_org)
    _connect(settings)
    if verb == "advance":
        result = runtime.rollout_tick(settings, accept_inconclusive=True)
    else:
        engine = runtime.rollout_engine(settings)
        result = engine.resume() if verb == "resume" else engine.abort()
    print_rollout(result, None, as_json=False)


@rollout.command("advance")
def rollout_advance() -> None:
    """Move the rollout on now (a paused wave's inconclusive proxies are accepted)."""
    _rollout_verb("advance")


@rollout.command("resume")
def rollout_resume() -> None:
    """A halted rollout tries its failed wave again; a paused one goes on."""
    _rollout_verb("resume")


@rollout.command("abort")
def rollout_abort() -> None:
    """Put every proxy the rollout reached back on its previous revisions."""
    _rollout_verb("abort")


@cli.command()
@click.option(
    "--until", "until", required=True, metavar="TIME", help="RFC 3339 time, e.g. 2026-12-24T08:00:00Z."
)
@click.option("--reason", required=True, metavar="TEXT", help="Why (shown in status and the rollout view).")
def freeze(until: str, reason: str) -> None:
    """Hold rollouts and rotation until TIME (an owner's own deploy still goes through): record the
    freeze, then pause the rotation and rollout-tick Scheduler jobs (GATEHOUSE_SCHEDULER_FREEZE_JOBS).
    The jobs stay paused until `gatehouse unfreeze`, even after TIME. Exit 1 when a job could not be
    paused (the freeze is recorded all the same)."""
    from datetime import UTC, datetime

    from gatehouse import runtime

    try:
        when = datetime.fromisoformat(until.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--until {until[:40]!r} is not an RFC 3339 time") from None
    if when.tzinfo is None:
        raise InputError("--until needs a time zone (e.g. 2026-12-24T08:00:00Z)")
    if when <= datetime.now(UTC):
        raise InputError("--until is in the past")
    if not reason.strip() or len(reason) > 500:
        raise InputError("--reason must be 1-500 characters")
    from gatehouse.cli_views import print_freeze_results

    settings = _settings()
    _connect(settings)
    results = runtime.freeze(settings, when.timestamp(), reason.strip())
    click.echo(f"frozen until {when.astimezone(UTC).isoformat()}: rollouts and rotation are held")
    print_freeze_results(results, lifted=False)
    _exit_on_failed_jobs(results, "paused")


@cli.command()
def unfreeze() -> None:
    """Lift a freeze and resume the Scheduler jobs it paused (a job paused by someone else before
    the freeze stays paused). Exit 1 when a job could not be resumed (run it again)."""
    from gatehouse import runtime
    from gatehouse.cli_views import print_freeze_results

    settings = _settings()
    _connect(settings)
    results = runtime.freeze(settings, 0.0, "")
    click.echo("unfrozen")
    print_freeze_results(results, lifted=True)
    _exit_on_failed_jobs(results, "resumed")


def _exit_on_failed_jobs(results: list[Any], verb: str) -> None:
    failed = [r.job.rsplit("/", 1)[-1] for r in results if r.failed]
    if failed:
        _fail(f"not {verb}: {', '.join(failed)} (see above)", EXIT_FAILED)


if __name__ == "__main__":  # pragma: no cover
    main()
