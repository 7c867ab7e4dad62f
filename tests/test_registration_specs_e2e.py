"""OpenAPI specs end to end on the local stack: services created through the official Cloud Run
client, events through the Pub/Sub emulator to on_run_event, specs read from the Cloud Storage
emulator and from the services themselves (the Cloud Run stand-in answers their run.app traffic,
to an ID token minted as the proxy service account by the IAM stand-in). Checked through the
stand-ins' REST APIs, the bundle downloaded with format=bundle included."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests

from gatehouse.local.samples import serve_spec, upload_spec
from tests.test_registration_e2e import Fleet

pytestmark = pytest.mark.stack

FIXTURES = Path(__file__).parent / "fixtures" / "openapi"
ORDERS = (FIXTURES / "orders-3.0.yaml").read_bytes()
LEDGER = (FIXTURES / "ledger-3.1.json").read_bytes()


@pytest.fixture(scope="module")
def fleet(stack: dict[str, Any]) -> Fleet:
    return Fleet(stack)


def bundle_files(fleet: Fleet, name: str, revision: int) -> dict[str, bytes]:
    r = requests.get(
        f"{fleet.apigee}/apis/{fleet.proxy(name)}/revisions/{revision}",
        params={"format": "bundle"},
        timeout=10,
    )
    r.raise_for_status()
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        return {n: archive.read(n) for n in archive.namelist()}


def iam_calls(fleet: Fleet) -> int:
    stats = requests.get(f"{fleet.state['iam']}/_standin/stats", timeout=10).json()
    return int(stats["methods"].get("iamcredentials.projects.serviceAccounts.generateIdToken", 0))


def test_a_gs_spec_travels_in_the_bundle(fleet: Fleet) -> None:
    uri = upload_spec(fleet.state, "e2e-specs", "ledger/openapi.json", LEDGER)
    fleet.create("e2e-ledger", annotations={"gatehouse.dev/openapi": uri})
    outcome = fleet.wait_outcome("e2e-ledger", "registered", "error")
    assert outcome["result"] == "registered", outcome["reason"]
    assert bundle_files(fleet, "e2e-ledger", 1)["apiproxy/resources/oas/openapi.json"] == LEDGER
    labels = fleet.api_proxy("e2e-ledger")["labels"]  # type: ignore[index]
    assert labels["gatehouse-spec"].startswith("json-") and labels["gatehouse-spec-source"].startswith("g")


def test_a_service_path_spec_is_read_as_the_proxy_identity(fleet: Fleet) -> None:
    serve_spec(fleet.state, "e2e-orders-spec", "/openapi.yaml", ORDERS.decode())
    fleet.create("e2e-orders-spec", annotations={"gatehouse.dev/openapi": "/openapi.yaml"})
    outcome = fleet.wait_outcome("e2e-orders-spec", "registered", "error")
    assert outcome["result"] == "registered", outcome["reason"]
    assert bundle_files(fleet, "e2e-orders-spec", 1)["apiproxy/resources/oas/openapi.yaml"] == ORDERS
    assert f"serviceAccount:{fleet.state['proxy_service_account']}" in fleet.invokers("e2e-orders-spec")
    revision = fleet.client.get_service(name=fleet.key("e2e-orders-spec")).latest_ready_revision
    labels = fleet.api_proxy("e2e-orders-spec")["labels"]  # type: ignore[index]
    assert labels["gatehouse-spec-source"] == revision.rsplit("/", 1)[-1]

    # a change that keeps the ready revision: no spec read, no new proxy revision
    before_calls = iam_calls(fleet)
    before = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    fleet.update(
        "e2e-orders-spec",
        labels={"apigee-expose": "true", "team": "orders"},
        annotations={"gatehouse.dev/openapi": "/openapi.yaml"},
    )
    assert fleet.wait_outcome("e2e-orders-spec", "unchanged", after=before)["result"] == "unchanged"
    assert iam_calls(fleet) == before_calls
    assert fleet.api_proxy("e2e-orders-spec")["revision"] == ["1"]  # type: ignore[index]


def test_an_invalid_spec_fails_cleanly(fleet: Fleet) -> None:
    serve_spec(fleet.state, "e2e-bad-spec", "/openapi.json", '{"openapi": "3.0.3", "paths": {}}')
    fleet.create("e2e-bad-spec", annotations={"gatehouse.dev/openapi": "/openapi.json"})
    outcome = fleet.wait_outcome("e2e-bad-spec", "error")
    assert (
        "annotation gatehouse.dev/openapi" in outcome["reason"] and "invalid OpenAPI 3.0" in outcome["reason"]
    )
    assert fleet.api_proxy("e2e-bad-spec") is None


def test_a_missing_gs_spec_fails_cleanly(fleet: Fleet) -> None:
    fleet.create("e2e-no-spec", annotations={"gatehouse.dev/openapi": "gs://e2e-specs/missing.yaml"})
    outcome = fleet.wait_outcome("e2e-no-spec", "error")
    assert "gatehouse.dev/openapi" in outcome["reason"] and "does not exist" in outcome["reason"]
    assert fleet.api_proxy("e2e-no-spec") is None
