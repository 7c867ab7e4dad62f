"""The Apigee stand-in's apiproducts routes, through the production adapter where it has a call
and raw HTTP for what the stand-in must refuse (as the real API does)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from gatehouse.adapters.apigee import ApigeeClient
from gatehouse.errors import ConflictError, PermanentError
from gatehouse.local.standins import apigee
from gatehouse.local.standins.server import Handle

ORG = "local-org"


@pytest.fixture
def standin() -> Iterator[Handle]:
    with apigee.start(org=ORG, envs=("test", "prod"), check_fields=True) as handle:
        yield handle


@pytest.fixture
def client(standin: Handle) -> ApigeeClient:
    return ApigeeClient(ORG, endpoint=standin.url, anonymous=True, retry_attempts=1)


def body(name: str = "payments", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "displayName": name.title(),
        "approvalType": "manual",
        "environments": ["test"],
        "attributes": [{"name": "gatehouse-owner", "value": "me"}],
        "operationGroup": {
            "operationConfigs": [{"apiSource": "ledger", "operations": [{"resource": "/**"}]}],
            "operationConfigType": "proxy",
        },
        **extra,
    }


def test_create_get_update_delete_round_trip(client: ApigeeClient) -> None:
    created = client.create_product(body())
    assert created["name"] == "payments" and created["createdAt"]
    with pytest.raises(ConflictError):  # no upsert: an existing name is refused
        client.create_product(body())
    client.update_product("payments", {**body(), "description": "money"})
    got = client.get_product("payments")
    assert got is not None and got["description"] == "money" and got["createdAt"] == created["createdAt"]
    client.delete_product("payments")
    assert client.get_product("payments") is None
    client.delete_product("payments")  # already gone: the goal is reached


def test_list_pages_with_start_key_and_count(client: ApigeeClient, standin: Handle) -> None:
    names = [f"p{i:02d}" for i in range(7)]
    for name in names:
        client.create_product(body(name))
    assert [p["name"] for p in client.list_products(page_size=3)] == names
    url = f"{standin.url}/v1/organizations/{ORG}/apiproducts"
    page = requests.get(url, params={"count": "2", "startKey": "p03"}, timeout=10).json()
    assert page == {"apiProduct": [{"name": "p03"}, {"name": "p04"}]}  # startKey is inclusive
    expanded = requests.get(url, params={"count": "1", "expand": "true"}, timeout=10).json()
    assert expanded["apiProduct"][0]["operationGroup"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"approvalType": "sometimes"}, "approvalType"),
        ({"attributes": [{"name": f"a{i}", "value": "x"} for i in range(19)]}, "attributes"),
        ({"environments": ["nowhere"]}, "environments"),
        (
            {
                "operationGroup": {
                    "operationConfigs": [
                        {"apiSource": "x", "operations": [{"resource": "/a"}, {"resource": "/b"}]}
                    ]
                }
            },
            "operations",
        ),
        ({"operationGroup": {"operationConfigs": [{"operations": [{"resource": "/a"}]}]}}, "apiSource"),
        (
            {
                "operationGroup": {
                    "operationConfigs": [
                        {"apiSource": "x", "quota": {"limit": "1", "interval": "1", "timeUnit": "week"}}
                    ]
                }
            },
            "quota",
        ),
        ({"name": "bad/name"}, "name"),
        ({"inventedField": 1}, "inventedField"),
    ],
)
def test_bad_bodies_are_refused_and_create_nothing(
    standin: Handle, client: ApigeeClient, change: dict[str, Any], field: str
) -> None:
    url = f"{standin.url}/v1/organizations/{ORG}/apiproducts"
    answer = requests.post(url, json={**body(), **change}, timeout=10)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    # the refusal names the field in a google.rpc.BadRequest detail, not only in its wording
    fields = [v["field"] for d in error["details"] for v in d.get("fieldViolations", [])]
    assert any(field in f for f in fields), error
    assert client.list_products() == []


def test_a_non_json_body_is_refused(standin: Handle) -> None:
    url = f"{standin.url}/v1/organizations/{ORG}/apiproducts"
    answer = requests.post(url, data="name=payments", timeout=10)
    assert answer.status_code == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert requests.get(url, timeout=10).json() == {}


def test_update_and_attributes_of_a_missing_product_are_404(client: ApigeeClient, standin: Handle) -> None:
    with pytest.raises(PermanentError) as missing:
        client.update_product("ghost", body("ghost"))
    assert missing.value.status == 404
    attrs = requests.get(f"{standin.url}/v1/organizations/{ORG}/apiproducts/ghost/attributes", timeout=10)
    assert attrs.status_code == 404


def test_the_name_cannot_change_on_update(client: ApigeeClient) -> None:
    client.create_product(body())
    with pytest.raises(PermanentError) as refused:
        client.update_product("payments", body("other"))
    assert refused.value.status == 400
