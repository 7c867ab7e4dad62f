"""API products: the pure planner with plain values, then the registrar over in-memory fakes
(the same flows run against the Apigee stand-in in test_products_e2e.py)."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest

from gatehouse import exposure
from gatehouse.config import Policy
from gatehouse.registration.plan import PRODUCT_HASH_LABEL, PRODUCT_LABEL
from gatehouse.registration.products import (
    MAX_ATTRIBUTES,
    OWNER_ATTRIBUTE,
    OperationConfig,
    Product,
    Quota,
    desired_product,
    plan_leave,
    plan_product,
)
from tests.registration_fakes import FakeApigee
from tests.test_registration_service import PROJECT, REGION, make, ref, svc

OWNER = "test-owner"


def want(proxy: str = "ledger-1", name: str = "payments", **kw: Any) -> Any:
    args: dict[str, Any] = {
        "title": None,
        "description": None,
        "approval": None,
        "access": None,
        "environments": ("test",),
    }
    return desired_product(name, proxy, **{**args, **kw})


def owned(*configs: OperationConfig, attributes: tuple[tuple[str, str], ...] = (), **kw: Any) -> Product:
    doc = Product(
        name="payments",
        display_name="Payments",
        approval_type="manual",
        environments=("test",),
        attributes=((OWNER_ATTRIBUTE, OWNER), ("access", "internal"), *attributes),
        configs=configs,
        **kw,
    )
    return Product.from_json(doc.to_json())  # as read back from Apigee


# -- pure planning ----------------------------------------------------------------------------------


def test_a_new_product_holds_one_config_for_the_whole_base_path_with_our_attributes() -> None:
    p = plan_product(want(quota=Quota(100, 1, "hour")), None, owner_id=OWNER, policy=Policy.UPSERT_ONLY)
    assert p.result == "create" and p.product is not None
    body = p.product.to_json()
    assert body["operationGroup"]["operationConfigs"] == [
        {
            "apiSource": "ledger-1",
            "operations": [{"resource": "/**"}],
            "quota": {"limit": "100", "interval": "1", "timeUnit": "hour"},
        }
    ]
    assert body["approvalType"] == "manual" and body["environments"] == ["test"]
    assert {"name": OWNER_ATTRIBUTE, "value": OWNER} in body["attributes"]
    assert {"name": "access", "value": "internal"} in body["attributes"]
    assert "proxies" not in body and "apiResources" not in body


def test_spec_operations_become_one_config_each() -> None:
    d = want(operations=[("/accounts/*", ["get", "PUT"]), ("/accounts", ["POST"])])
    p = plan_product(d, None, owner_id=OWNER, policy=Policy.UPSERT_ONLY)
    assert p.product is not None
    configs = p.product.to_json()["operationGroup"]["operationConfigs"]
    assert [c["operations"] for c in configs] == [
        [{"resource": "/accounts", "methods": ["POST"]}],
        [{"resource": "/accounts/*", "methods": ["GET", "PUT"]}],
    ]


def test_joining_a_shared_product_keeps_other_configs_and_their_fields() -> None:
    theirs = OperationConfig("refunds-2", "/**")
    human = OperationConfig("handmade-proxy", "/admin", ("GET",))
    current = owned(theirs, human, description="money", attributes=(("team", "pay"),))
    p = plan_product(want(environments=("prod",)), current, owner_id=OWNER, policy=Policy.UPSERT_ONLY)
    assert p.result == "update" and p.product is not None
    sources = [c.api_source for c in p.product.configs]
    assert sources == ["refunds-2", "handmade-proxy", "ledger-1"]
    # a shared product: defaults never override what it already says; environments are joined
    assert p.product.description == "money" and p.product.display_name == "Payments"
    assert p.product.environments == ("prod", "test")
    assert ("team", "pay") in p.product.attributes


def test_an_explicit_annotation_wins_in_a_shared_product() -> None:
    current = owned(OperationConfig("refunds-2", "/**"))
    p = plan_product(want(approval="auto", title="Pay"), current, owner_id=OWNER, policy=Policy.UPSERT_ONLY)
    assert p.product is not None and p.product.approval_type == "auto" and p.product.display_name == "Pay"


def test_a_handmade_product_with_our_name_is_a_conflict() -> None:
    handmade = Product.from_json({"name": "payments", "attributes": [{"name": "team", "value": "x"}]})
    p = plan_product(want(), handmade, owner_id=OWNER, policy=Policy.UPSERT_ONLY)
    assert p.result == "conflict" and "not created by gatehouse" in p.reason and not p.writes
    other = Product.from_json({"name": "payments", "attributes": [{"name": OWNER_ATTRIBUTE, "value": "b"}]})
    assert plan_product(want(), other, owner_id=OWNER, policy=Policy.UPSERT_ONLY).result == "conflict"


def test_unchanged_product_is_no_write_even_when_apigee_reorders() -> None:
    d = want(operations=[("/b", ["POST", "GET"]), ("/a", [])])
    first = plan_product(d, None, owner_id=OWNER, policy=Policy.UPSERT_ONLY)
    assert first.product is not None
    doc = first.product.to_json()
    doc["attributes"].reverse()
    doc["operationGroup"]["operationConfigs"].reverse()
    doc["operationGroup"]["operationConfigs"][0]["operations"][0]["methods"].reverse()
    doc["createdAt"] = "1"
    again = plan_product(d, Product.from_json(doc), owner_id=OWNER, policy=Policy.UPSERT_ONLY)
    assert again.result == "unchanged" and not again.writes


def test_the_attribute_limit_counts_ours() -> None:
    theirs = tuple((f"a{i}", "x") for i in range(MAX_ATTRIBUTES - 2))
    assert plan_product(want(), owned(attributes=theirs), owner_id=OWNER, policy=Policy.UPSERT_ONLY).writes
    one_more = (*theirs, ("extra", "y"))
    p = plan_product(want(), owned(attributes=one_more), owner_id=OWNER, policy=Policy.UPSERT_ONLY)
    assert p.result == "error" and "19 attributes" in p.reason and not p.writes


def test_leaving_removes_only_our_configs_and_deletes_an_empty_owned_product() -> None:
    shared = owned(OperationConfig("ledger-1", "/**"), OperationConfig("refunds-2", "/**"))
    p = plan_leave("payments", "ledger-1", shared, owner_id=OWNER)
    assert p.result == "update" and p.product is not None
    assert [c.api_source for c in p.product.configs] == ["refunds-2"]
    alone = owned(OperationConfig("ledger-1", "/**"))
    assert plan_leave("payments", "ledger-1", alone, owner_id=OWNER).result == "delete"
    handmade = Product.from_json(
        {"name": "payments", "operationGroup": {"operationConfigs": [{"apiSource": "ledger-1"}]}}
    )
    assert plan_leave("payments", "ledger-1", handmade, owner_id=OWNER).result == "skip"
    assert plan_leave("payments", "ledger-1", None, owner_id=OWNER).result == "unchanged"


def test_create_only_leaves_an_existing_config_alone() -> None:
    current = owned(OperationConfig("ledger-1", "/old"))
    assert plan_product(want(), current, owner_id=OWNER, policy=Policy.CREATE_ONLY).result == "unchanged"


# -- exposure ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (exposure.PRODUCT, "Payments"),
        (exposure.PRODUCT, "-x"),
        (exposure.APPROVAL, "sometimes"),
        (exposure.ACCESS, "secret"),
        (exposure.PRODUCT_TITLE, "<script>"),
        (exposure.DESCRIPTION, "x" * 1001),
        (exposure.PRODUCT_TITLE, "   "),
    ],
)
def test_bad_product_annotations_fail_the_service_and_change_nothing(key: str, value: str) -> None:
    registrar, apigee, _, _ = make(svc("ledger", annotations={key: value}))
    report = registrar.reconcile_service(ref("ledger"))
    assert report.outcome.result == "error" and key in report.outcome.reason
    assert apigee.writes == 0 and not apigee.products


def test_public_profile_gets_no_product_and_refuses_product_annotations() -> None:
    labels = {"apigee-expose": "true", "apigee-profile": "public"}
    registrar, apigee, _, _ = make(svc("open", labels=labels))
    assert registrar.reconcile_service(ref("open")).outcome.result == "registered"
    assert apigee.products == {}
    registrar, apigee, _, _ = make(svc("open", labels=labels, annotations={exposure.PRODUCT: "p"}))
    assert registrar.reconcile_service(ref("open")).outcome.result == "error"


# -- the registrar ------------------------------------------------------------------------------------


def _proxy(name: str) -> str:
    return exposure.proxy_name(PROJECT, REGION, name)


def test_a_new_service_gets_its_own_product_and_an_unchanged_one_costs_no_product_read() -> None:
    registrar, apigee, cloudrun, _ = make(svc("orders"))
    report = registrar.reconcile_service(ref("orders"))
    name = _proxy("orders")
    assert report.outcome.result == "registered" and report.outcome.product == name
    product = apigee.products[name]
    assert [c["apiSource"] for c in product["operationGroup"]["operationConfigs"]] == [name]
    assert apigee.proxies[name].labels[PRODUCT_LABEL] == name
    assert apigee.calls["get_product"] == 1 and apigee.calls["create_product"] == 1
    apigee.calls.clear()
    cloudrun.calls.clear()
    again = registrar.reconcile_service(ref("orders"))
    assert again.outcome.result == "unchanged"
    assert apigee.calls["get_product"] == 0 and apigee.writes == 0
    assert sum(apigee.calls.values()) + sum(cloudrun.calls.values()) <= 3


def test_two_services_share_a_product_and_a_product_change_writes_only_the_product() -> None:
    shared = {exposure.PRODUCT: "payments"}
    services = {**svc("ledger", annotations=shared), **svc("refunds", annotations=shared)}
    registrar, apigee, cloudrun, _ = make(services)
    registrar.reconcile_service(ref("ledger"))
    registrar.reconcile_service(ref("refunds"))
    configs = apigee.products["payments"]["operationGroup"]["operationConfigs"]
    assert sorted(c["apiSource"] for c in configs) == sorted([_proxy("ledger"), _proxy("refunds")])
    revisions = dict(apigee.deployed)
    # a new title: the product and the proxy's product labels change, no new revision
    cloudrun.services.update(svc("ledger", annotations={**shared, exposure.PRODUCT_TITLE: "Payments"}))
    apigee.calls.clear()
    report = registrar.reconcile_service(ref("ledger"))
    assert report.outcome.result == "registered", report.outcome.reason
    assert apigee.products["payments"]["displayName"] == "Payments"
    assert apigee.calls["import"] == 0 and apigee.calls["update_product"] == 1
    assert apigee.deployed == revisions
    assert apigee.proxies[_proxy("ledger")].labels[PRODUCT_HASH_LABEL]


def test_a_handmade_product_is_a_conflict_and_nothing_is_deployed() -> None:
    registrar, apigee, _, _ = make(svc("ledger", annotations={exposure.PRODUCT: "payments"}))
    apigee.products["payments"] = {"name": "payments", "displayName": "by hand"}
    report = registrar.reconcile_service(ref("ledger"))
    assert report.outcome.result == "conflict" and "payments" in report.outcome.reason
    assert apigee.products["payments"] == {"name": "payments", "displayName": "by hand"}
    assert apigee.deployed == {} and apigee.writes == 0


def test_moving_to_another_product_leaves_the_old_one_and_undeploy_under_sync_deletes_it() -> None:
    registrar, apigee, cloudrun, _ = make(svc("ledger"), policy=Policy.SYNC)
    registrar.reconcile_service(ref("ledger"))
    own = _proxy("ledger")
    assert own in apigee.products
    cloudrun.services.update(svc("ledger", annotations={exposure.PRODUCT: "payments"}))
    assert registrar.reconcile_service(ref("ledger")).outcome.result == "registered"
    assert own not in apigee.products and "payments" in apigee.products
    cloudrun.services.clear()
    report = registrar.reconcile_service(ref("ledger"))
    assert report.outcome.result == "unregistered", report.outcome.reason
    assert apigee.products == {} and PRODUCT_LABEL not in apigee.proxies[own].labels


def test_undeploy_keeps_the_product_when_the_policy_is_not_sync() -> None:
    registrar, apigee, cloudrun, _ = make(svc("ledger"))
    registrar.reconcile_service(ref("ledger"))
    cloudrun.services.clear()
    registrar.reconcile_service(ref("ledger"))
    assert _proxy("ledger") in apigee.products


def test_concurrent_joins_lose_no_config() -> None:
    names = [f"svc{i}" for i in range(8)]
    services: dict[str, Any] = {}
    for n in names:
        services.update(svc(n, annotations={exposure.PRODUCT: "shared"}))
    registrar, apigee, _, _ = make(services)
    real_get = FakeApigee.get_product
    barrier = threading.Barrier(8, timeout=5)

    def slow_get(self: FakeApigee, name: str) -> Any:
        found = real_get(self, name)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=0.2)  # every reader at once, if the lease let them in together
        return found

    apigee.get_product = slow_get.__get__(apigee)  # type: ignore[method-assign]
    threads = [threading.Thread(target=registrar.reconcile_service, args=(ref(n),)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    configs = apigee.products["shared"]["operationGroup"]["operationConfigs"]
    assert sorted(c["apiSource"] for c in configs) == sorted(_proxy(n) for n in names)


def test_switching_to_the_public_profile_leaves_the_product() -> None:
    registrar, apigee, cloudrun, _ = make(svc("ledger"))
    registrar.reconcile_service(ref("ledger"))
    own = _proxy("ledger")
    assert own in apigee.products
    cloudrun.services.update(svc("ledger", labels={"apigee-expose": "true", "apigee-profile": "public"}))
    report = registrar.reconcile_service(ref("ledger"))
    assert report.outcome.result == "registered" and report.outcome.product is None
    assert own not in apigee.products and PRODUCT_LABEL not in apigee.proxies[own].labels


def test_a_plan_reads_the_product_and_changes_nothing() -> None:
    registrar, apigee, _, _ = make(svc("ledger", annotations={exposure.PRODUCT: "payments"}))
    report = registrar.reconcile_service(ref("ledger"), apply=False)
    assert [p.describe() for p in report.products] == ["create API product payments"]
    assert apigee.writes == 0 and apigee.products == {}


def test_the_sweep_puts_right_a_product_changed_by_hand_with_one_listing() -> None:
    shared = {exposure.PRODUCT: "payments"}
    registrar, apigee, _, _ = make(
        {**svc("ledger", annotations=shared), **svc("refunds", annotations=shared)}
    )
    assert {r.outcome.result for r in registrar.sweep(apply=True).reports} == {"registered"}
    # a person removes ledger's config from the shared product
    doc = apigee.products["payments"]
    doc["operationGroup"]["operationConfigs"] = [
        c for c in doc["operationGroup"]["operationConfigs"] if c["apiSource"] != _proxy("ledger")
    ]
    apigee.calls.clear()
    planned = {r.ref.service: r for r in registrar.sweep(apply=False).reports}
    assert planned["ledger"].outcome.result == "update" and apigee.writes == 0
    assert apigee.calls["list_products"] == 1 and apigee.calls["get_product"] == 0
    applied = {r.ref.service: r.outcome.result for r in registrar.sweep(apply=True).reports}
    assert applied == {"ledger": "registered", "refunds": "unchanged"}, applied
    assert sorted(
        c["apiSource"] for c in apigee.products["payments"]["operationGroup"]["operationConfigs"]
    ) == (sorted([_proxy("ledger"), _proxy("refunds")]))
    apigee.calls.clear()
    again = registrar.sweep(apply=True)
    assert {r.outcome.result for r in again.reports} == {"unchanged"} and apigee.writes == 0


def test_the_sweep_recreates_a_deleted_product() -> None:
    registrar, apigee, _, _ = make(svc("orders"))
    registrar.sweep(apply=True)
    apigee.products.clear()
    report = registrar.sweep(apply=True)
    assert [r.outcome.result for r in report.reports] == ["registered"]
    assert list(apigee.products) == [_proxy("orders")]
