"""The inventory on the local stack: the demo fleet after the rotation and tickets runs fills every
section; the reconcile job publishes both files to the Storage emulator; `history` of a demo
service shows its registration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gatehouse.exposure import proxy_name
from tests.conftest import wait_for

pytestmark = pytest.mark.stack
CLI = [sys.executable, "-m", "gatehouse.cli"]
BUCKET = "gatehouse-inventory-e2e"


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from gatehouse.local.demo import run_demo
    from gatehouse.local.stack import down, settings_env, up

    state_dir = tmp_path_factory.mktemp("inventory-stack")
    saved = dict(os.environ)
    state = up(state_dir, extra_env={"GATEHOUSE_INVENTORY_BUCKET": BUCKET})
    try:
        os.environ.update(settings_env(state))
        assert run_demo(state_dir, keep=True)
        yield state
    finally:
        os.environ.clear()
        os.environ.update(saved)
        down(state_dir)


def _cli(state: dict[str, Any], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*CLI, "--stack", state["state_dir"], *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert "Traceback" not in done.stderr, done.stderr
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def _make_problems(state: dict[str, Any]) -> dict[str, str]:
    """A hand-made proxy in a new service's way, an orphan, drift, and a service reading a target."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import run_v2

    from gatehouse import runtime
    from gatehouse.config import load_settings
    from gatehouse.local import samples
    from gatehouse.local.demo import deploy_fleet, wait_registered

    project, region = state["project"], state["region"]
    apigee = runtime.apigee(load_settings())
    legacy = proxy_name(project, region, "legacy")
    samples.seed_proxy(state, legacy, owner="platform-team")  # a human's proxy under the wanted name
    ghost = "ghost-0000abcd"
    samples.seed_proxy(state, ghost)
    apigee.set_labels(
        ghost,
        {
            "gatehouse-owner": state["owner_id"],
            "gatehouse-project": project,
            "gatehouse-region": region,
            "gatehouse-service": "ghost",
        },
    )
    orders = proxy_name(project, region, "orders")
    labels = dict(apigee.get_proxy(orders).labels)  # type: ignore[union-attr]
    apigee.set_labels(orders, {**labels, "gatehouse-hash": "0" * 48})
    since = datetime.now(UTC) - timedelta(seconds=2)
    deploy_fleet(state, [{"name": "legacy", "labels": {"apigee-expose": "true"}, "annotations": {}}])
    key = f"projects/{project}/locations/{region}/services/legacy"
    assert wait_registered(state, [key], since=since)[key].result == "conflict"
    client = run_v2.ServicesClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=state["cloudrun"]),
    )
    env = run_v2.EnvVar(
        name="WEBHOOK_TOKEN",
        value_source=run_v2.EnvVarSource(
            secret_key_ref=run_v2.SecretKeySelector(secret="partner-webhook-token", version="current")
        ),
    )
    client.create_service(
        parent=f"projects/{project}/locations/{region}",
        service_id="webhooks",
        service=run_v2.Service(
            labels={"team": "partners"},
            template=run_v2.RevisionTemplate(
                containers=[run_v2.Container(image="example/webhooks:1", env=[env])]
            ),
        ),
    ).result()
    return {"legacy": legacy, "ghost": ghost, "orders": orders}


def test_inventory_of_the_demo_fleet_fills_every_section(demo_stack: dict[str, Any], tmp_path: Path) -> None:
    made = _make_problems(demo_stack)
    page = tmp_path / "inventory.html"
    done = _cli(demo_stack, "inventory", "--json", "--html", str(page))
    inv = json.loads(done.stdout)
    services = {s["name"]: s for s in inv["services"]}
    assert {"orders", "payments", "inventory", "status-page", "catalog", "batch-worker", "legacy"} <= set(
        services
    )
    registered = [
        s for s in inv["services"] if s["outcome"] and s["outcome"]["result"] in ("registered", "unchanged")
    ]
    assert all(s["proxy"]["deployments"] for s in registered if s["opted_in"])
    assert all(s["invoker"] is True for s in registered if s["opted_in"])
    assert services["orders"]["tickets"] and services["orders"]["problems"]
    assert [c["proxy"] for c in inv["conflicts"]] == [made["legacy"]]
    assert [o["proxy"] for o in inv["orphans"]] == [made["ghost"]]
    assert [d["proxy"] for d in inv["drift"]] == [made["orders"]]
    targets = {t["secret"].rsplit("/", 1)[-1]: t for t in inv["targets"]}
    assert set(targets) >= {"orders-client-key", "billing-sync-key", "partner-webhook-token"}
    assert all(t["current_version"] for t in targets.values())
    assert targets["orders-client-key"]["keys"] and targets["orders-client-key"]["service_account"]
    assert [c["name"].rsplit("/", 1)[-1] for c in targets["partner-webhook-token"]["consumers"]] == [
        "webhooks"
    ]
    accounts = {a["email"]: a for a in inv["accounts"]}
    proxy_sa = accounts[demo_stack["proxy_service_account"]]
    assert proxy_sa["routes"] and proxy_sa["may_invoke"]
    assert any(a["keys"] for a in accounts.values())
    assert {t["proxy"] for t in inv["tickets"] if t["state"] == "open"} >= {made["orders"]}
    assert any(t["latency_ms"] for t in inv["tickets"])  # the ticket body's evidence, as a series
    assert inv["summary"]["with_problems"] >= 2 and not inv["incomplete"]
    problems_first = [bool(s["problems"]) for s in inv["services"]]
    assert problems_first == sorted(problems_first, reverse=True)
    html = page.read_text()
    assert html.count('<tr class="problem" data-key=') == inv["summary"]["with_problems"]
    terminal = _cli(demo_stack, "inventory")
    assert all(len(line) <= 80 for line in terminal.stdout.splitlines()), terminal.stdout


def test_reconcile_job_publishes_both_files(demo_stack: dict[str, Any]) -> None:
    from google.cloud import storage

    from gatehouse.local.demo import run_command

    client = storage.Client(project=demo_stack["project"])
    bucket = client.bucket(BUCKET)
    if not bucket.exists():
        client.create_bucket(BUCKET)
    execution = run_command(
        demo_stack, {"command": "reconcile", "service": "all", "mode": "apply"}, timeout=180
    )
    assert execution.get("completionTime")
    names = wait_for(
        lambda: (
            {b.name for b in client.list_blobs(BUCKET)} >= {"inventory.html", "inventory.json"}
            and {b.name for b in client.list_blobs(BUCKET)}
        ),
        timeout=60,
        what="inventory.html and inventory.json in the bucket",
    )
    assert names >= {"inventory.html", "inventory.json"}
    doc = json.loads(bucket.blob("inventory.json").download_as_bytes())
    assert any(s["name"] == "orders" for s in doc["services"])
    html = bucket.blob("inventory.html").download_as_bytes().decode()
    assert html.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in html


def test_history_of_a_demo_service_shows_its_registration(demo_stack: dict[str, Any]) -> None:
    key = f"projects/{demo_stack['project']}/locations/{demo_stack['region']}/services/payments"
    rows = [json.loads(line) for line in _cli(demo_stack, "history", key, "--json").stdout.splitlines()]
    registration = [r for r in rows if r["trigger"] == "audit entry" and r["outcome"] == "registered"]
    assert registration, rows
    assert any("import the rendered bundle" in a for a in registration[0]["actions"])
    assert registration[0]["correlation_id"]
    text = _cli(demo_stack, "history", "payments", "--since", "1h").stdout
    assert "registered" in text and "audit entry" in text
    refused = _cli(demo_stack, "history", "payments", "--since", "soon", check=False)
    assert refused.returncode == 2 and "--since" in refused.stderr
