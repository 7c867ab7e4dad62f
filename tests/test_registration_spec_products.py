"""A service's spec shapes its API product (issue 11): the spec's paths are the product's
operations, its security requirements the scopes on OAuth2 and JWT profiles, and a spec known
from the proxy's labels is read again only when the product must be written."""

from __future__ import annotations

from collections import Counter
from typing import Any

from gatehouse import exposure
from gatehouse.registration.plan import PRODUCT_HASH_LABEL
from tests.registration_fakes import v2_service
from tests.test_registration_service import PROJECT, REGION, ref
from tests.test_registration_specs import ORDERS, make, url

PROXY = exposure.proxy_name(PROJECT, REGION, "orders")
# orders-3.0.yaml: GET/POST /orders, GET/DELETE /orders/{orderId}; oauth scopes on three of them
ORDERS_OPERATIONS = [("/orders", ["GET", "POST"]), ("/orders/*", ["DELETE", "GET"])]


def orders(
    *, profile: str = "apikey", generation: int = 1, extra: dict[str, str] | None = None
) -> dict[str, Any]:
    annotations = {"gatehouse.dev/openapi": "/openapi.yaml", **(extra or {})}
    doc = v2_service(
        PROJECT,
        REGION,
        "orders",
        labels={"apigee-expose": "true", "apigee-profile": profile},
        annotations=annotations,
        generation=generation,
    )
    return {doc["name"]: doc}


def operations(product: dict[str, Any]) -> list[tuple[str, list[str]]]:
    found = []
    for config in product["operationGroup"]["operationConfigs"]:
        assert config["apiSource"] == PROXY
        (operation,) = config["operations"]  # Apigee takes one resource/method pair per config
        found.append((operation["resource"], sorted(operation.get("methods", []))))
    return sorted(found)


def registered(profile: str = "apikey") -> tuple[Any, Any, Any, Any]:
    registrar, apigee, cloudrun, specs = make(orders(profile=profile))
    specs.served[url("orders") + "/openapi.yaml"] = ORDERS
    report = registrar.reconcile_service(ref("orders"))
    assert report.outcome.result == "registered", report.outcome.reason
    return registrar, apigee, cloudrun, specs


def test_the_products_operations_are_the_specs_paths() -> None:
    _, apigee, _, _ = registered()
    product = apigee.products[PROXY]
    assert operations(product) == ORDERS_OPERATIONS
    assert "scopes" not in product or product["scopes"] == []  # an API key profile has no scopes


def test_an_oauth2_profile_takes_its_scopes_from_the_spec() -> None:
    _, apigee, _, _ = registered("oauth2")
    product = apigee.products[PROXY]
    assert sorted(product["scopes"]) == ["orders.read", "orders.write"]
    assert operations(product) == ORDERS_OPERATIONS


def test_an_unchanged_event_reads_neither_spec_nor_product() -> None:
    registrar, apigee, cloudrun, specs = registered()
    for counter in (apigee.calls, cloudrun.calls, specs.calls):
        counter.clear()
    report = registrar.reconcile_service(ref("orders"))
    assert report.outcome.result == "unchanged", report.outcome.reason
    assert specs.calls == Counter() and apigee.calls["get_product"] == 0 and apigee.writes == 0


def test_a_product_change_with_a_known_spec_reads_the_spec_once_and_keeps_its_operations() -> None:
    registrar, apigee, cloudrun, specs = registered()
    hash_before = apigee.proxies[PROXY].labels[PRODUCT_HASH_LABEL]
    # the same ready revision: the labels say the spec is current, but the product must be written
    cloudrun.services.update(orders(extra={"gatehouse.dev/product-title": "Orders API"}))
    specs.calls.clear()
    report = registrar.reconcile_service(ref("orders"))
    assert report.outcome.result == "registered", report.outcome.reason
    product = apigee.products[PROXY]
    assert product["displayName"] == "Orders API"
    # written with the spec's operations, never the whole-base-path stand-in for an unread spec
    assert operations(product) == ORDERS_OPERATIONS
    assert specs.calls["service_spec"] == 1
    assert apigee.proxies[PROXY].labels[PRODUCT_HASH_LABEL] != hash_before


def test_a_spec_with_other_paths_on_a_new_revision_changes_the_products_operations() -> None:
    registrar, apigee, cloudrun, specs = registered()
    changed = ORDERS.replace(b"/orders/{orderId}:", b"/orders/{orderId}/items:")
    specs.served[url("orders") + "/openapi.yaml"] = changed
    cloudrun.services.update(orders(generation=2))
    report = registrar.reconcile_service(ref("orders"))
    assert report.outcome.result == "registered", report.outcome.reason
    assert operations(apigee.products[PROXY]) == [
        ("/orders", ["GET", "POST"]),
        ("/orders/*/items", ["DELETE", "GET"]),
    ]
    # and once more: now unchanged, with no product read
    apigee.calls.clear()
    assert registrar.reconcile_service(ref("orders")).outcome.result == "unchanged"
    assert apigee.calls["get_product"] == 0 and apigee.writes == 0


def test_a_new_service_with_a_spec_reads_its_proxy_once_and_grants_once() -> None:
    """The proxy's lease is held from before the proxy is read, so nothing is read twice: the
    bench's 13 calls (a product and a spec on top of the 9 without) come from here."""
    registrar, apigee, cloudrun, specs = make(orders())
    specs.served[url("orders") + "/openapi.yaml"] = ORDERS
    assert registrar.reconcile_service(ref("orders")).outcome.result == "registered"
    assert apigee.calls["get_proxy"] == 1 and apigee.calls["get_product"] == 1
    assert cloudrun.calls["add_invoker"] == 1 and specs.calls["service_spec"] == 1
    assert registrar.coordinator.held == {}  # the lease taken before the read is released
