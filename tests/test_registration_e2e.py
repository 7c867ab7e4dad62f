"""Registration end to end on the local stack: Cloud Run stand-in -> audit entry -> Pub/Sub emulator
-> push -> on_run_event (functions-framework) -> Apigee stand-in, with Firestore leases/outcomes.

Nothing here calls gatehouse code in-process to make things happen: services are changed through
the official Cloud Run client, messages go through the real emulator, and the assertions read the
stand-ins' state over HTTP."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2

from gatehouse import exposure
from tests.conftest import read_log, wait_for

pytestmark = pytest.mark.stack


class Fleet:
    """The test's hands: the Cloud Run client, the Apigee stand-in, the recorded outcomes."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.project, self.region = state["project"], state["region"]
        self.parent = f"projects/{self.project}/locations/{self.region}"
        self.client = run_v2.ServicesClient(
            credentials=AnonymousCredentials(),
            transport="rest",
            client_options=ClientOptions(api_endpoint=state["cloudrun"]),
        )
        self.apigee = f"{state['apigee']}/v1/organizations/{state['organization']}"

    def key(self, name: str) -> str:
        return f"{self.parent}/services/{name}"

    def proxy(self, name: str) -> str:
        return exposure.proxy_name(self.project, self.region, name)

    def create(
        self, name: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
    ) -> None:
        service = run_v2.Service(
            labels=labels if labels is not None else {"apigee-expose": "true"},
            annotations=annotations or {},
            template=run_v2.RevisionTemplate(containers=[run_v2.Container(image="img:1")]),
        )
        self.client.create_service(parent=self.parent, service=service, service_id=name).result()

    def update(
        self, name: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
    ) -> None:
        service = self.client.get_service(name=self.key(name))
        if labels is not None:
            service.labels = labels
        if annotations is not None:
            service.annotations = annotations
        self.client.update_service(service=service).result()

    def delete(self, name: str) -> None:
        self.client.delete_service(name=self.key(name)).result()

    def outcome(self, name: str) -> dict[str, Any] | None:
        from gatehouse.adapters.firestore import FirestoreCoordinator

        found = FirestoreCoordinator(self.project).outcomes(self.key(name))
        return found[0].__dict__ if found else None

    def wait_outcome(self, name: str, *results: str, after: str = "", timeout: float = 30) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            o = self.outcome(name)
            return o if o and o["result"] in results and o["at"] >= after else None

        return wait_for(probe, timeout=timeout, what=f"{name} -> {results}")

    def api_proxy(self, name: str) -> dict[str, Any] | None:
        r = requests.get(f"{self.apigee}/apis/{self.proxy(name)}", timeout=10)
        return r.json() if r.status_code == 200 else None

    def deployments(self, name: str) -> dict[str, int]:
        r = requests.get(f"{self.apigee}/apis/{self.proxy(name)}/deployments", timeout=10)
        return {d["environment"]: int(d["revision"]) for d in r.json().get("deployments", [])} if r.ok else {}

    def invokers(self, name: str) -> list[str]:
        policy = self.client.get_iam_policy(request={"resource": self.key(name)})
        return [m for b in policy.bindings if b.role == "roles/run.invoker" for m in b.members]

    def publish(self, topic: str, payload: Any, **attributes: str) -> None:
        from google.cloud.pubsub_v1 import PublisherClient

        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        PublisherClient().publish(self.state["topics"][topic], data, **attributes).result(timeout=10)

    def audit_entry(self, name: str, method: str, *, last: bool = True) -> dict[str, Any]:
        """A v2 audit entry as a log sink publishes it."""
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        return {
            "insertId": uuid.uuid4().hex[:12],
            "logName": f"projects/{self.project}/logs/cloudaudit.googleapis.com%2Factivity",
            "timestamp": now,
            "receiveTimestamp": now,
            "severity": "NOTICE",
            "resource": {
                "type": "cloud_run_revision",
                "labels": {
                    "project_id": self.project,
                    "location": self.region,
                    "service_name": name,
                    "configuration_name": "",
                    "revision_name": "",
                },
            },
            "operation": {
                "id": f"{self.parent}/operations/{uuid.uuid4()}",
                "producer": "run.googleapis.com",
                "last" if last else "first": True,
            },
            "protoPayload": {
                "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                "serviceName": "run.googleapis.com",
                "methodName": f"google.cloud.run.v2.Services.{method}",
                "resourceName": self.key(name),
                "authenticationInfo": {"principalEmail": "dev@example.com"},
            },
        }

    def handled(self, name: str) -> int:
        """How many events for ``name`` on_run_event has finished (one outcome line each)."""
        log = read_log(self.state, "on_run_event")
        return sum(
            1
            for line in log.splitlines()
            if '"message": "service ' in line and f'"service": "{self.key(name)}"' in line
        )


@pytest.fixture(scope="module")
def fleet(stack: dict[str, Any]) -> Fleet:
    return Fleet(stack)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def test_create_update_delete_follow_the_service(fleet: Fleet) -> None:
    fleet.create("e2e-orders", annotations={"gatehouse.dev/base-path": "/v1/e2e-orders"})
    outcome = fleet.wait_outcome("e2e-orders", "registered")
    assert outcome["proxy"] == fleet.proxy("e2e-orders") and outcome["revision"] == 1
    proxy = fleet.api_proxy("e2e-orders")
    assert proxy and proxy["labels"]["gatehouse-owner"] == fleet.state["owner_id"]
    assert fleet.deployments("e2e-orders") == {"test": 1}
    assert f"serviceAccount:{fleet.state['proxy_service_account']}" in fleet.invokers("e2e-orders")

    # a change the proxy cares about -> a new revision
    fleet.update(
        "e2e-orders",
        annotations={"gatehouse.dev/base-path": "/v1/e2e-orders", "gatehouse.dev/rate-limit": "25ps"},
    )
    wait_for(lambda: fleet.deployments("e2e-orders") == {"test": 2}, what="revision 2 deployed")

    # a change it does not care about -> no new revision
    before = _now()
    fleet.update("e2e-orders", labels={"apigee-expose": "true", "team": "shop"})
    assert fleet.wait_outcome("e2e-orders", "unchanged", after=before)["result"] == "unchanged"
    assert fleet.api_proxy("e2e-orders")["revision"] == ["1", "2"]  # type: ignore[index]

    # deletion undeploys (the e2e stack runs with policy sync)
    fleet.delete("e2e-orders")
    fleet.wait_outcome("e2e-orders", "unregistered")
    assert fleet.deployments("e2e-orders") == {}


def test_each_event_delivered_three_times_gives_one_revision(fleet: Fleet) -> None:
    fleet.create("e2e-dup")  # publishes first + last
    entry = fleet.audit_entry("e2e-dup", "CreateService")
    for _ in range(3):
        fleet.publish("run_events", entry)
    wait_for(lambda: fleet.handled("e2e-dup") >= 4, what="all four deliveries handled")
    assert fleet.api_proxy("e2e-dup")["revision"] == ["1"]  # type: ignore[index]
    assert fleet.deployments("e2e-dup") == {"test": 1}


def test_out_of_order_events_converge_on_the_truth(fleet: Fleet) -> None:
    fleet.create("e2e-late")
    fleet.wait_outcome("e2e-late", "registered")
    # a stale delete arrives after the create: the service still exists, so nothing is undeployed
    before = _now()
    fleet.publish("run_events", fleet.audit_entry("e2e-late", "DeleteService"))
    fleet.wait_outcome("e2e-late", "unchanged", after=before)
    assert fleet.deployments("e2e-late") == {"test": 1}
    # a create for a service that is already gone registers nothing
    fleet.publish("run_events", fleet.audit_entry("e2e-ghost", "CreateService"))
    assert fleet.wait_outcome("e2e-ghost", "unchanged")["reason"].startswith("service deleted")
    assert fleet.api_proxy("e2e-ghost") is None


def test_injected_503_and_429_on_both_standins_lose_nothing(fleet: Fleet) -> None:
    faults = {"error_rate": 0.2, "statuses": [503, 429], "seed": 7}
    requests.post(f"{fleet.state['apigee']}/_standin/faults", json=faults, timeout=5).raise_for_status()
    requests.post(
        f"{fleet.state['cloudrun']}/_standin/faults",
        timeout=5,
        json={**faults, "routes": ["services.get", "services.getIamPolicy", "services.setIamPolicy"]},
    ).raise_for_status()
    names = [f"e2e-flaky-{i}" for i in range(8)]
    try:
        for name in names:
            fleet.create(name)
        for name in names:
            fleet.wait_outcome(name, "registered", timeout=90)
    finally:
        for url in (fleet.state["apigee"], fleet.state["cloudrun"]):
            requests.delete(f"{url}/_standin/faults", timeout=5)
    for name in names:
        assert fleet.deployments(name) == {"test": 1}
        assert fleet.api_proxy(name)["revision"] == ["1"]  # type: ignore[index]


def test_permanent_errors_and_bad_messages_are_acknowledged_once(fleet: Fleet) -> None:
    fleet.create("e2e-first", annotations={"gatehouse.dev/base-path": "/shared-path"})
    fleet.wait_outcome("e2e-first", "registered")
    fleet.create("e2e-second", annotations={"gatehouse.dev/base-path": "/shared-path"})
    outcome = fleet.wait_outcome("e2e-second", "conflict")
    assert fleet.proxy("e2e-first") in outcome["reason"] and fleet.deployments("e2e-second") == {}
    fleet.create("e2e-invalid", annotations={"gatehouse.dev/base-path": "/a/../etc"})
    assert "base-path" in fleet.wait_outcome("e2e-invalid", "error")["reason"]
    fleet.publish("run_events", b"\x00not json at all")
    fleet.publish("run_events", {"message": "an envelope inside a message"})
    wait_for(
        lambda: read_log(fleet.state, "on_run_event").count("message rejected: bad input") >= 2,
        what="bad messages rejected",
    )
    time.sleep(3)  # long enough for the emulator's 1 s minimum backoff to redeliver a NACKed message
    assert fleet.handled("e2e-second") == 1 and fleet.handled("e2e-invalid") == 1
    assert read_log(fleet.state, "on_run_event").count("message rejected: bad input") == 2


def test_a_handmade_proxy_with_the_same_name_is_never_touched(fleet: Fleet) -> None:
    from gatehouse import bundle
    from gatehouse.profiles import load_profiles

    # someone imported a proxy by hand under the name gatehouse would choose
    spec = exposure.ProxySpec(
        proxy_name=fleet.proxy("e2e-hand"),
        project=fleet.project,
        region=fleet.region,
        service="e2e-hand",
        target_url="https://elsewhere.example.com",
        audience="https://elsewhere.example.com",
        base_path="/hand",
        profile="apikey",
        environments=("test",),
    )
    zipped = bundle.render(spec, load_profiles().get("apikey"), owner_id="a-human").zip_bytes
    requests.post(
        f"{fleet.apigee}/apis",
        params={"name": spec.proxy_name, "action": "import"},
        files={"file": ("bundle.zip", zipped, "application/zip")},
        timeout=10,
    ).raise_for_status()
    fleet.create("e2e-hand")
    outcome = fleet.wait_outcome("e2e-hand", "conflict")
    assert "not created by gatehouse" in outcome["reason"]
    proxy = fleet.api_proxy("e2e-hand")
    assert proxy and proxy["revision"] == ["1"] and not proxy.get("labels")


def test_commands_and_cli_see_the_same_state(fleet: Fleet, stack: dict[str, Any]) -> None:
    fleet.create("e2e-cli")
    fleet.wait_outcome("e2e-cli", "registered")
    fleet.publish("commands", {"command": "reconcile", "service": fleet.key("e2e-cli"), "mode": "plan"})
    wait_for(
        lambda: f"reconcile plan: {fleet.key('e2e-cli')} -> unchanged" in read_log(stack, "on_command"),
        what="on_command's plan line",
    )
    cli = [sys.executable, "-m", "gatehouse.cli", "--stack", stack["state_dir"]]
    status = subprocess.run(
        [*cli, "status", fleet.key("e2e-cli"), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = [json.loads(line) for line in status.stdout.splitlines()]
    assert [r["result"] for r in rows] == ["registered"]
    plan = subprocess.run(
        [*cli, "reconcile", fleet.key("e2e-cli"), "--plan", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(plan.stdout)["result"] == "unchanged"


def test_push_envelope_posted_directly_is_decoded_like_pubsub_does(
    fleet: Fleet, stack: dict[str, Any]
) -> None:
    """The function answers a hand-made push request the way Pub/Sub's emulator would deliver it."""
    entry = fleet.audit_entry("e2e-direct", "CreateService")
    body = {
        "message": {
            "data": base64.b64encode(json.dumps(entry).encode()).decode(),
            "messageId": "42",
            "publishTime": "2026-01-01T00:00:00Z",
        },
        "subscription": "projects/gatehouse-local/subscriptions/manual",
    }
    r = requests.post(
        stack["functions"]["on_run_event"] + "/" + stack["topics"]["run_events"], json=body, timeout=30
    )
    assert r.status_code == 200


def test_reconcile_all_command_starts_the_reconcile_job(fleet: Fleet, stack: dict[str, Any]) -> None:
    fleet.create("e2e-job")
    fleet.wait_outcome("e2e-job", "registered")
    fleet.publish(
        "commands", {"command": "reconcile", "service": "all", "mode": "plan", "request_id": "r-42"}
    )
    line = wait_for(
        lambda: next(
            (
                json.loads(x)
                for x in read_log(stack, "on_command").splitlines()
                if '"request_id": "r-42"' in x and "started job" in x
            ),
            None,
        ),
        what="on_command starting the job",
    )
    assert line["job"] == stack["jobs"]["reconcile"]
    execution = line["execution"]
    assert execution.startswith(stack["jobs"]["reconcile"] + "/executions/")

    # the Cloud Run stand-in ran the job as a process; its execution reports the exit code
    def finished() -> dict[str, Any] | None:
        e = requests.get(f"{stack['cloudrun']}/v2/{execution}", timeout=10).json()
        return e if e.get("completionTime") else None

    done = wait_for(finished, timeout=60, what="the reconcile job to finish")
    # exit 0 when every service converged, 1 when any is in conflict or error (earlier tests leave some)
    assert done["succeededCount"] + done["failedCount"] == 1
    logs = Path(stack["state_dir"], "logs")
    summary = wait_for(
        lambda: next(
            (
                json.loads(x)
                for f in logs.glob(f"{execution.rsplit('/', 1)[-1]}-*.log")
                for x in f.read_text().splitlines()
                if "reconcile finished" in x
            ),
            None,
        ),
        what="the job's summary line",
    )
    assert summary["mode"] == "plan" and summary["counts"].get("unchanged", 0) >= 1
    assert (done["failedCount"] == 1) == bool(summary["failed"])


def test_a_public_sub_path_of_another_services_path_needs_that_services_permission(fleet: Fleet) -> None:
    fleet.create("e2e-shop", annotations={"gatehouse.dev/base-path": "/v1/e2e-shop"})
    fleet.wait_outcome("e2e-shop", "registered")
    public = {"apigee-expose": "true", "apigee-profile": "public"}
    fleet.create(
        "e2e-shop-admin", labels=public, annotations={"gatehouse.dev/base-path": "/v1/e2e-shop/admin"}
    )
    outcome = fleet.wait_outcome("e2e-shop-admin", "conflict")
    assert fleet.proxy("e2e-shop") in outcome["reason"] and fleet.key("e2e-shop") in outcome["reason"]
    assert fleet.api_proxy("e2e-shop-admin") is None  # nothing imported, nothing deployed

    # the owner of /v1/e2e-shop allows /admin (not part of its bundle: its proxy stays unchanged);
    # the next event of the sub-path service registers it
    before = _now()
    fleet.update(
        "e2e-shop",
        annotations={"gatehouse.dev/base-path": "/v1/e2e-shop", "gatehouse.dev/allow-subpaths": "/admin"},
    )
    fleet.wait_outcome("e2e-shop", "unchanged", after=before)
    fleet.update("e2e-shop-admin", labels={**public, "team": "shop"})
    fleet.wait_outcome("e2e-shop-admin", "registered", after=before)
    assert fleet.deployments("e2e-shop-admin") == {"test": 1}
