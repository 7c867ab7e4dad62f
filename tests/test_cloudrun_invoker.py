"""``CloudRunClient``'s roles/run.invoker edits against the Cloud Run stand-in: conditional bindings
someone else made survive gatehouse's read-modify-write (policy version 3)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from gatehouse.adapters.cloudrun import CloudRunClient
from gatehouse.local.standins import cloudrun
from gatehouse.local.standins.server import Handle

PROJECT, REGION, SERVICE = "app-proj", "europe-west1", "orders"
NAME = f"projects/{PROJECT}/locations/{REGION}/services/{SERVICE}"
PROXY = "serviceAccount:apigee-proxy@app-proj.iam.gserviceaccount.com"
CONDITIONAL = {
    "role": "roles/run.invoker",
    "members": ["user:dana@example.com"],
    "condition": {"title": "until 2030", "expression": "request.time < timestamp('2030-01-01T00:00:00Z')"},
}
OTHER_CONDITIONAL = {
    "role": "roles/run.developer",
    "members": ["group:oncall@example.com"],
    "condition": {"title": "business hours", "expression": "request.time.getHours('Europe/Berlin') < 18"},
}


@pytest.fixture
def stand() -> Iterator[Handle]:
    handle = cloudrun.start(check_fields=True)
    body = {"template": {"containers": [{"image": "europe-docker.pkg.dev/app-proj/apps/orders:1"}]}}
    parent = f"{handle.url}/v2/projects/{PROJECT}/locations/{REGION}/services"
    assert requests.post(parent, params={"serviceId": SERVICE}, json=body, timeout=10).ok
    yield handle
    handle.stop()


def _policy(stand: Handle) -> dict[str, Any]:
    url = f"{stand.url}/v2/{NAME}:getIamPolicy"
    return requests.get(url, params={"options.requestedPolicyVersion": 3}, timeout=10).json()  # type: ignore[no-any-return]


def test_granting_and_revoking_invoker_keeps_conditional_bindings(stand: Handle) -> None:
    url = f"{stand.url}/v2/{NAME}:setIamPolicy"
    policy = {"version": 3, "bindings": [CONDITIONAL, OTHER_CONDITIONAL]}
    assert requests.post(url, json={"policy": policy}, timeout=10).ok
    client = CloudRunClient(endpoint=stand.url, anonymous=True, retry_attempts=1)

    assert client.add_invoker(PROJECT, REGION, SERVICE, PROXY) is True
    granted = _policy(stand)
    assert granted["version"] == 3
    assert CONDITIONAL in granted["bindings"] and OTHER_CONDITIONAL in granted["bindings"]
    assert {"role": "roles/run.invoker", "members": [PROXY]} in granted["bindings"]
    assert client.add_invoker(PROJECT, REGION, SERVICE, PROXY) is False  # already there: no write

    assert client.remove_invoker(PROJECT, REGION, SERVICE, PROXY) is True
    revoked = _policy(stand)
    assert revoked["version"] == 3 and revoked["bindings"] == [CONDITIONAL, OTHER_CONDITIONAL]


def test_a_conditional_grant_of_the_same_member_is_not_the_unconditional_one(stand: Handle) -> None:
    mine_with_condition = {**CONDITIONAL, "members": [PROXY]}
    url = f"{stand.url}/v2/{NAME}:setIamPolicy"
    assert requests.post(
        url, json={"policy": {"version": 3, "bindings": [mine_with_condition]}}, timeout=10
    ).ok
    client = CloudRunClient(endpoint=stand.url, anonymous=True, retry_attempts=1)
    assert client.add_invoker(PROJECT, REGION, SERVICE, PROXY) is True
    bindings = _policy(stand)["bindings"]
    assert mine_with_condition in bindings and {"role": "roles/run.invoker", "members": [PROXY]} in bindings


def test_has_invoker_is_one_read_of_the_unconditional_binding(stand: Handle) -> None:
    client = CloudRunClient(endpoint=stand.url, anonymous=True, retry_attempts=1)
    assert client.has_invoker(PROJECT, REGION, SERVICE, PROXY) is False
    url = f"{stand.url}/v2/{NAME}:setIamPolicy"
    only_conditional = {"version": 3, "bindings": [{**CONDITIONAL, "members": [PROXY]}]}
    assert requests.post(url, json={"policy": only_conditional}, timeout=10).ok
    assert client.has_invoker(PROJECT, REGION, SERVICE, PROXY) is False, "a condition may not hold"
    client.add_invoker(PROJECT, REGION, SERVICE, PROXY)
    requests.post(f"{stand.url}/_standin/stats/reset", timeout=10)
    assert client.has_invoker(PROJECT, REGION, SERVICE, PROXY) is True
    stats = requests.get(f"{stand.url}/_standin/stats", timeout=10).json()
    assert stats["methods"] == {"run.projects.locations.services.getIamPolicy": 1}
