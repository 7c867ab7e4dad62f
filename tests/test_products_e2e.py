"""API products end to end on the local stack: services change through the official Cloud Run
client, events go through the Pub/Sub emulator to on_run_event (two worker processes, Firestore
leases), and every assertion reads the Apigee stand-in's apiproducts over its REST API."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests

from gatehouse import exposure
from gatehouse.registration.products import OWNER_ATTRIBUTE
from tests.conftest import wait_for
from tests.test_registration_e2e import Fleet, _now

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def fleet(stack: dict[str, Any]) -> Fleet:
    return Fleet(stack)


def product(fleet: Fleet, name: str) -> dict[str, Any] | None:
    r = requests.get(f"{fleet.apigee}/apiproducts/{name}", timeout=10)
    return r.json() if r.status_code == 200 else None


def sources(doc: dict[str, Any] | None) -> list[str]:
    configs = ((doc or {}).get("operationGroup") or {}).get("operationConfigs") or []
    return sorted(c["apiSource"] for c in configs)


def attributes(doc: dict[str, Any] | None) -> dict[str, str]:
    return {a["name"]: a["value"] for a in (doc or {}).get("attributes") or []}


def test_a_shared_product_an_own_product_and_a_handmade_one(fleet: Fleet) -> None:
    handmade = {
        "name": "handmade-e2e",
        "displayName": "made by a person",
        "approvalType": "auto",
        "operationGroup": {"operationConfigs": [{"apiSource": "someone-elses-proxy"}]},
    }
    assert requests.post(f"{fleet.apigee}/apiproducts", json=handmade, timeout=10).status_code == 200
    before = product(fleet, "handmade-e2e")
    start = _now()
    shared = {exposure.PRODUCT: "payments-e2e", exposure.APPROVAL: "auto", exposure.ACCESS: "private"}
    fleet.create("ledger-e2e", annotations={**shared, exposure.PRODUCT_TITLE: "Payments"})
    fleet.create("refunds-e2e", annotations={exposure.PRODUCT: "payments-e2e"})
    fleet.create("search-e2e")
    fleet.create("thief-e2e", annotations={exposure.PRODUCT: "handmade-e2e"})
    for name in ("ledger-e2e", "refunds-e2e", "search-e2e"):
        fleet.wait_outcome(name, "registered", after=start, timeout=60)
    stolen = fleet.wait_outcome("thief-e2e", "conflict", after=start, timeout=60)
    assert "handmade-e2e" in stolen["reason"]

    payments = product(fleet, "payments-e2e")
    assert sources(payments) == sorted([fleet.proxy("ledger-e2e"), fleet.proxy("refunds-e2e")])
    assert payments is not None and payments["approvalType"] == "auto"
    assert payments["displayName"] == "Payments" and payments["environments"]
    assert attributes(payments)["access"] == "private"
    assert attributes(payments)[OWNER_ATTRIBUTE]
    for config in payments["operationGroup"]["operationConfigs"]:
        assert config["operations"] == [{"resource": "/**"}]
        assert set(config["quota"]) == {"limit", "interval", "timeUnit"}
    assert "proxies" not in payments and "apiResources" not in payments

    own = product(fleet, fleet.proxy("search-e2e"))
    assert sources(own) == [fleet.proxy("search-e2e")]
    assert own is not None and own["approvalType"] == "manual"
    assert attributes(own)["access"] == "internal"

    # the hand-made product is exactly as it was, and the thief's proxy was never deployed
    assert product(fleet, "handmade-e2e") == before
    assert fleet.deployments("thief-e2e") == {}

    # the stack runs policy sync: deleting a service takes its config out, the last one the product
    start = _now()
    fleet.delete("ledger-e2e")
    fleet.wait_outcome("ledger-e2e", "unregistered", after=start, timeout=60)
    assert sources(product(fleet, "payments-e2e")) == [fleet.proxy("refunds-e2e")]
    start = _now()
    fleet.delete("refunds-e2e")
    fleet.wait_outcome("refunds-e2e", "unregistered", after=start, timeout=60)
    assert product(fleet, "payments-e2e") is None
    assert product(fleet, "handmade-e2e") == before


def test_eight_services_joining_one_product_at_once_give_eight_configs(fleet: Fleet) -> None:
    names = [f"crowd{i}-e2e" for i in range(8)]
    start = _now()
    threads = [
        threading.Thread(
            target=fleet.create, args=(n,), kwargs={"annotations": {exposure.PRODUCT: "crowd-e2e"}}
        )
        for n in names
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in names:
        fleet.wait_outcome(name, "registered", after=start, timeout=120)
    found = wait_for(
        lambda: (doc := product(fleet, "crowd-e2e")) and len(sources(doc)) == 8 and doc,
        timeout=10,
        what="8 configs in crowd-e2e",
    )
    assert sources(found) == sorted(fleet.proxy(n) for n in names)
