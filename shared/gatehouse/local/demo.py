"""``gatehouse demo``: the three jobs, end to end, on one machine.

1. Registration: a sample fleet is deployed into the Cloud Run stand-in through the official
   client; each audit entry goes through the Pub/Sub emulator to ``on_run_event``, which registers
   every opted-in service in the Apigee stand-in.
2. Rotation: a few targets are declared on Secret Manager secrets; a ``rotate`` command on the
   commands topic makes ``on_command`` start the ``rotate-credentials`` job, which creates, tests
   and promotes their first credentials.
3. Tickets: Apigee analytics show a latency incident on two proxies; Cloud Monitoring-style
   notifications go to the alerts topic; a ``tickets`` command starts the ``latency-tickets`` job,
   which opens one routing-policy ticket per problem in the GitHub stand-in.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from gatehouse.local import samples
from gatehouse.local.stack import (
    StackError,
    StackNotRunningError,
    check_running,
    load_state,
    settings_env,
    up,
)


def deploy_fleet(state: dict[str, Any], services: list[dict[str, Any]]) -> None:
    """Create (or update) each service through the Cloud Run Admin API v2 client."""
    from google.api_core import exceptions as gexc

    client = _run_client(state)
    parent = f"projects/{state['project']}/locations/{state['region']}"
    from google.cloud import run_v2

    for spec in services:
        service = run_v2.Service(
            labels=spec["labels"],
            annotations=spec["annotations"],
            template=run_v2.RevisionTemplate(
                service_account=f"{spec['name']}@{state['project']}.iam.gserviceaccount.com",
                containers=[
                    run_v2.Container(image=f"europe-docker.pkg.dev/{state['project']}/apps/{spec['name']}:1")
                ],
            ),
        )
        try:
            client.create_service(parent=parent, service=service, service_id=spec["name"]).result()
        except (gexc.AlreadyExists, gexc.Conflict):
            # REST maps every 409 to Conflict; on a create without an etag it means "exists" (an
            # earlier demo): deploy it again instead, as `gcloud run deploy` would
            service.name = f"{parent}/services/{spec['name']}"
            client.update_service(service=service).result()


def _run_client(state: dict[str, Any]) -> Any:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import run_v2

    return run_v2.ServicesClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=state["cloudrun"]),
    )


def wait_registered(
    state: dict[str, Any], keys: list[str], *, since: datetime, timeout: float = 120.0
) -> dict[str, Any]:
    """Poll the outcomes the functions record until every key has a final one recorded at or after
    ``since`` (a demo run again must not take the last run's outcomes for this run's)."""
    from gatehouse.adapters.firestore import FirestoreCoordinator

    def recent(at: str) -> bool:
        try:
            return datetime.fromisoformat(at.replace("Z", "+00:00")) >= since
        except ValueError:
            return False

    coordinator = FirestoreCoordinator(state["project"])
    deadline = time.monotonic() + timeout
    final: dict[str, Any] = {}
    while time.monotonic() < deadline:
        final = {
            o.key: o
            for o in coordinator.outcomes(f"projects/{state['project']}/")
            if o.key in keys and o.result in ("registered", "unchanged", "error", "conflict") and recent(o.at)
        }
        if len(final) == len(keys):
            break
        time.sleep(0.5)
    return final


def run_command(state: dict[str, Any], command: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    """Publish a command, find the job execution ``on_command`` started for it, wait for it to end."""
    request_id = f"demo-{uuid.uuid4().hex[:8]}"
    samples.publish(state, "commands", [{**command, "request_id": request_id}])
    log_file = Path(state["state_dir"], "logs", "on_command.log")
    deadline = time.monotonic() + timeout
    execution = None
    while execution is None and time.monotonic() < deadline:
        for line in log_file.read_text(errors="replace").splitlines():
            if request_id in line and '"execution"' in line:
                execution = json.loads(line)["execution"]
        time.sleep(0.2)
    if execution is None:
        raise StackError(f"on_command did not start a job for {command} (see {log_file})")
    while time.monotonic() < deadline:
        status = requests.get(f"{state['cloudrun']}/v2/{execution}", timeout=10).json()
        if status.get("completionTime"):
            return dict(status)
        time.sleep(0.3)
    raise StackError(f"job execution {execution} did not finish within {timeout:.0f}s")


def run_demo(state_dir: Path, *, services: int = 6, keep: bool = True) -> bool:
    from rich.console import Console

    console = Console(highlight=False)
    try:
        state = load_state(state_dir)
        check_running(state, state_dir)
    except StackNotRunningError:
        # none yet, or one whose processes are gone (a reboot): start afresh
        state = up(state_dir, log=lambda m: console.print(m, style="dim", markup=False))
    os.environ.update(settings_env(state))
    try:
        ok = _registration(console, state, services)
        ok = _rotation(console, state) and ok
        ok = _tickets(console, state) and ok
    finally:
        if not keep:
            from gatehouse.local.stack import down

            down(state_dir)
    console.print(closing_hint(state_dir), markup=False, soft_wrap=True)
    return ok


def closing_hint(state_dir: Path) -> str:
    """Commands that work as printed: the gatehouse beside this interpreter (``.venv/bin/gatehouse``
    after `make demo`), which need not be on PATH; whole lines, never wrapped mid-path."""
    exe = Path(sys.executable).parent / "gatehouse"
    gatehouse = shlex.quote(os.path.relpath(exe) if exe.is_relative_to(Path.cwd()) else str(exe))
    stack = shlex.quote(str(state_dir))
    return "\n".join(
        [
            f"\nstack state: {state_dir}/stack.json; logs: {state_dir}/logs. To look around:",
            *(
                f"  {gatehouse} --stack {stack} {command}"
                for command in ("status", "rotate --plan", "tickets list")
            ),
            f"stop the stack: {gatehouse} local down --state-dir {stack}",
        ]
    )


def _registration(console: Any, state: dict[str, Any], count: int) -> bool:
    from rich.markup import escape
    from rich.table import Table

    from gatehouse import runtime
    from gatehouse.config import load_settings

    specs = samples.fleet(count)
    console.rule("registration")
    console.print(
        f"deploying {len(specs)} services into the Cloud Run stand-in ({state['cloudrun']})", markup=False
    )
    started = time.monotonic()
    # whole seconds: the recorded outcome times may carry no fraction
    since = datetime.now(UTC).replace(microsecond=0)
    samples.serve_fleet_specs(state, specs)  # orders serves its OpenAPI spec: it lands in the bundle
    deploy_fleet(state, specs)
    exposed = [s for s in specs if s["labels"].get("apigee-expose") == "true"]
    key = f"projects/{state['project']}/locations/{state['region']}/services/"
    outcomes = wait_registered(state, [key + s["name"] for s in exposed], since=since)
    elapsed = time.monotonic() - started
    apigee = runtime.apigee(load_settings())
    table = Table("service", "profile", "proxy", "rev", "deployed in", "product", "result")
    for spec in specs:
        if spec not in exposed:
            table.add_row(escape(spec["name"]), "-", "-", "-", "-", "-", "[dim]not opted in[/]")
            continue
        outcome = outcomes.get(key + spec["name"])
        proxy = outcome.proxy if outcome else None
        deployments = apigee.list_proxy_deployments(proxy) if proxy else []
        envs = ", ".join(sorted({d.environment for d in deployments}))
        # the deployed revision: an unchanged outcome names none, the proxy still runs one
        revisions = ", ".join(str(r) for r in sorted({d.revision for d in deployments}))
        result = outcome.result if outcome else "timed out"
        style = "green" if result in ("registered", "unchanged") else "red"
        table.add_row(
            escape(spec["name"]),
            escape(spec["labels"].get("apigee-profile", "apikey")),
            escape(proxy or "-"),
            revisions or "-",
            escape(envs or "-"),
            escape(outcome.product or "-") if outcome else "-",
            f"[{style}]{escape(result)}[/]",
        )
    console.print(table)
    ok = len(outcomes) == len(exposed) and all(
        o.result in ("registered", "unchanged") for o in outcomes.values()
    )
    console.print(f"{len(outcomes)}/{len(exposed)} opted-in services registered in {elapsed:.1f}s")
    return ok


def _rotation(console: Any, state: dict[str, Any]) -> bool:
    from rich.markup import escape
    from rich.table import Table

    console.rule("rotation")
    existing = requests.get(
        f"{state['secretmanager']}/v1/projects/{state['project']}/secrets", timeout=10
    ).json()
    if not any(s["name"].endswith("/orders-client-key") for s in existing.get("secrets", [])):
        samples.seed_rotation_targets(state)
    console.print("a rotate command on the commands topic starts the rotate-credentials job")
    execution = run_command(state, {"command": "rotate", "secret": "all", "mode": "apply"})
    reports = sorted(Path(state["state_dir"], "reports").glob("*.json"))
    table = Table("secret", "kind", "status", "current", "steps this run")
    report: dict[str, Any] = json.loads(reports[-1].read_text()) if reports else {"targets": []}
    for t in report["targets"]:
        current = next(
            (f"version {v['number']}" for v in t.get("versions", []) if "current" in v.get("roles", [])), "-"
        )
        done = str(sum(1 for a in t.get("actions", []) if a["result"] in ("done", "already done")))
        style = "red" if t["status"] in ("failed", "refused") else "green"
        table.add_row(
            escape(t["secret"].rsplit("/", 1)[-1]),
            escape(t.get("kind") or "-"),
            f"[{style}]{escape(t['status'])}[/]",
            current,
            done or "-",
        )
    console.print(table)
    if reports:
        console.print(f"auditor's report: {reports[-1].with_suffix('.md')}", markup=False, soft_wrap=True)
    ok = execution.get("succeededCount") == 1
    console.print("rotation job " + ("[green]succeeded[/]" if ok else "[red]failed[/]"))
    return ok


def _tickets(console: Any, state: dict[str, Any]) -> bool:
    from gatehouse import runtime
    from gatehouse.cli_views import print_tickets
    from gatehouse.config import load_settings, load_tickets_config
    from gatehouse.exposure import proxy_name

    console.rule("tickets")
    env = state["environment"]
    orders = proxy_name(state["project"], state["region"], "orders")
    catalog = proxy_name(state["project"], state["region"], "catalog")
    orders_started = samples.seed_stats(state, env, orders, samples.scenario("target"))
    catalog_started = samples.seed_stats(state, env, catalog, samples.scenario("traffic"))
    slow_orders = samples.incident(
        state,
        incident_id="0.demo-orders",
        proxy=orders,
        environment=env,
        started_at=orders_started,
        family="target",
    )
    notifications = [
        slow_orders,
        slow_orders,  # a redelivery
        samples.incident(
            state, incident_id="0.demo-catalog", proxy=catalog, environment=env, started_at=catalog_started
        ),
        samples.test_notification(),
        samples.uptime_incident(state),
        b"{not json",
    ]
    samples.publish(state, "alerts", notifications)
    console.print(
        f"published {len(notifications)} notifications (2 latency incidents, a redelivery, the console's "
        "test message, an uptime check, a malformed message) to the alerts topic"
    )
    execution = run_command(state, {"command": "tickets"})
    found = runtime.tracker(load_settings(), load_tickets_config()).list_tickets("gatehouse")
    print_tickets(found)
    ok = execution.get("succeededCount") == 1 and len(found) >= 2
    console.print("tickets job " + ("[green]succeeded[/]" if ok else "[red]failed[/]"))
    return ok
