"""``gatehouse demo``: the main job, end to end, on one machine.

Starts the local stack (unless one is running), deploys a sample fleet into the Cloud Run
stand-in through the official Cloud Run client, and waits until every opted-in service has been
registered by ``on_run_event`` — audit entry -> Pub/Sub emulator -> push -> function -> Apigee.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from deploy.local.stack import StackError, load_state, settings_env, up

SAMPLE_FLEET: list[dict[str, Any]] = [
    {
        "name": "orders",
        "labels": {"apigee-expose": "true"},
        "annotations": {"gatehouse.dev/base-path": "/v1/orders"},
    },
    {
        "name": "payments",
        "labels": {"apigee-expose": "true", "apigee-profile": "jwt"},
        "annotations": {"gatehouse.dev/jwt-audience": "payments-api"},
    },
    {"name": "inventory", "labels": {"apigee-expose": "true", "apigee-profile": "oauth2"}, "annotations": {}},
    {
        "name": "status-page",
        "labels": {"apigee-expose": "true", "apigee-profile": "public"},
        "annotations": {},
    },
    {
        "name": "catalog",
        "labels": {"apigee-expose": "true"},
        "annotations": {
            "gatehouse.dev/rate-limit": "50ps",
            "gatehouse.dev/quota": "1000/hour",
            "gatehouse.dev/environments": "test,prod",
        },
    },
    {"name": "batch-worker", "labels": {"team": "data"}, "annotations": {}},
]


def fleet(count: int) -> list[dict[str, Any]]:
    services = SAMPLE_FLEET[:count]
    services += [
        {"name": f"svc-{i:03d}", "labels": {"apigee-expose": "true"}, "annotations": {}}
        for i in range(len(services), count)
    ]
    return services


def deploy_fleet(state: dict[str, Any], services: list[dict[str, Any]]) -> None:
    """Create (or update) each service through the Cloud Run Admin API v2 client."""
    from google.api_core import exceptions as gexc
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import run_v2

    client = run_v2.ServicesClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=state["cloudrun"]),
    )
    parent = f"projects/{state['project']}/locations/{state['region']}"
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
        except gexc.AlreadyExists:
            service.name = f"{parent}/services/{spec['name']}"
            client.update_service(service=service).result()


def wait_registered(state: dict[str, Any], keys: list[str], timeout: float = 120.0) -> dict[str, Any]:
    """Poll the outcomes the functions record until every key has a final one."""
    from shared.adapters.firestore import FirestoreCoordinator

    coordinator = FirestoreCoordinator(state["project"])
    deadline = time.monotonic() + timeout
    final: dict[str, Any] = {}
    while time.monotonic() < deadline:
        final = {
            o.key: o
            for o in coordinator.outcomes(f"projects/{state['project']}/")
            if o.key in keys and o.result in ("registered", "unchanged", "error", "conflict")
        }
        if len(final) == len(keys):
            break
        time.sleep(0.5)
    return final


def run_demo(state_dir: Path, *, services: int = 6, keep: bool = True) -> bool:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False, highlight=False)
    try:
        state = load_state(state_dir)
    except StackError:
        state = up(state_dir, log=lambda m: console.print(f"[dim]{m}[/]"))
    os.environ.update(settings_env(state))
    specs = fleet(services)
    console.print(f"deploying {len(specs)} services into the Cloud Run stand-in ({state['cloudrun']})")
    started = time.monotonic()
    deploy_fleet(state, specs)
    exposed = [s for s in specs if s["labels"].get("apigee-expose") == "true"]
    keys = [f"projects/{state['project']}/locations/{state['region']}/services/{s['name']}" for s in exposed]
    outcomes = wait_registered(state, keys)
    elapsed = time.monotonic() - started

    from shared import runtime
    from shared.config import load_settings

    apigee = runtime.apigee(load_settings())
    table = Table("service", "profile", "proxy", "rev", "deployed in", "result", title="gatehouse demo")
    for spec in specs:
        key = f"projects/{state['project']}/locations/{state['region']}/services/{spec['name']}"
        outcome = outcomes.get(key)
        profile = spec["labels"].get("apigee-profile", "apikey" if spec in exposed else "-")
        if spec not in exposed:
            table.add_row(spec["name"], "-", "-", "-", "-", "[dim]not opted in[/]")
            continue
        proxy = outcome.proxy if outcome else None
        envs = (
            ", ".join(sorted({d.environment for d in apigee.list_proxy_deployments(proxy)})) if proxy else ""
        )
        result = outcome.result if outcome else "timed out"
        style = "green" if result in ("registered", "unchanged") else "red"
        table.add_row(
            spec["name"],
            profile,
            proxy or "-",
            str(outcome.revision or "-") if outcome else "-",
            envs or "-",
            f"[{style}]{result}[/]",
        )
    console.print(table)
    ok = len(outcomes) == len(keys) and all(
        o.result in ("registered", "unchanged") for o in outcomes.values()
    )
    console.print(
        f"{len(outcomes)}/{len(keys)} opted-in services registered in {elapsed:.1f}s "
        f"(stack state: {state_dir}/stack.json; logs: {state_dir}/logs)"
    )
    if not keep:
        from deploy.local.stack import down

        down(state_dir)
    return ok
