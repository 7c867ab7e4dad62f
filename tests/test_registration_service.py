"""The registration use case over in-memory fakes of its ports (pure unit tests; the same flows
run end to end through the emulators and stand-ins in test_registration_e2e.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from gatehouse import exposure
from gatehouse.config import Policy, Settings
from gatehouse.errors import TransientError
from gatehouse.profiles import load_profiles
from gatehouse.registration.plan import FAILED_LABEL, OWNER_LABEL, REVISION_LABEL, ServiceRef
from gatehouse.registration.service import Registrar
from tests.registration_fakes import FakeApigee, FakeCloudRun, FakeCoordinator, v2_service

PROJECT, REGION = "shop-prod", "europe-west1"


def settings(**kw: Any) -> Settings:
    base = {
        "owner_id": "test-owner",
        "apigee_org": "org",
        "proxy_service_account": "proxy@p.iam.gserviceaccount.com",
        "apigee_environments": ["test"],
        "projects": [PROJECT],
        "regions": [REGION],
        "keep_revisions": 2,
    }
    return Settings(**{**base, **kw})


def make(
    services: dict[str, dict[str, Any]] | None = None, **kw: Any
) -> tuple[Registrar, FakeApigee, FakeCloudRun, FakeCoordinator]:
    apigee, cloudrun, coord = FakeApigee(), FakeCloudRun(services), FakeCoordinator()
    registrar = Registrar(settings(**kw), apigee, cloudrun, coord, load_profiles(), sleep=lambda s: None)
    return registrar, apigee, cloudrun, coord


def svc(name: str, **kw: Any) -> dict[str, dict[str, Any]]:
    doc = v2_service(PROJECT, REGION, name, **kw)
    return {doc["name"]: doc}


def ref(name: str) -> ServiceRef:
    return ServiceRef(PROJECT, REGION, name)


def test_new_service_is_registered_with_few_calls() -> None:
    registrar, apigee, cloudrun, coord = make(svc("orders"))
    report = registrar.reconcile_service(ref("orders"))
    assert report.outcome.result == "registered" and report.outcome.revision == 1
    name = exposure.proxy_name(PROJECT, REGION, "orders")
    assert apigee.deployed == {("test", name): 1}
    assert apigee.proxies[name].labels[OWNER_LABEL] == "test-owner"
    assert cloudrun.invokers[f"projects/{PROJECT}/locations/{REGION}/services/orders"] == {
        "serviceAccount:proxy@p.iam.gserviceaccount.com"
    }
    assert sum(apigee.calls.values()) + sum(cloudrun.calls.values()) <= 10
    assert coord.recorded[ref("orders").key].result == "registered"


def test_unchanged_service_costs_three_reads_and_no_write() -> None:
    registrar, apigee, cloudrun, _ = make(svc("orders"))
    registrar.reconcile_service(ref("orders"))
    apigee.calls.clear()
    cloudrun.calls.clear()
    report = registrar.reconcile_service(ref("orders"))
    assert report.outcome.result == "unchanged"
    assert apigee.writes == 0 and cloudrun.calls["add_invoker"] == 0
    assert sum(apigee.calls.values()) + sum(cloudrun.calls.values()) <= 3


def test_a_change_that_does_not_touch_the_proxy_writes_nothing() -> None:
    registrar, apigee, cloudrun, _ = make(svc("orders"))
    registrar.reconcile_service(ref("orders"))
    cloudrun.services.update(svc("orders", generation=7, labels={"apigee-expose": "true", "team": "shop"}))
    apigee.calls.clear()
    assert registrar.reconcile_service(ref("orders")).outcome.result == "unchanged"
    assert apigee.writes == 0


def test_a_content_change_deploys_a_new_revision_and_prunes_old_ones() -> None:
    registrar, apigee, cloudrun, _ = make(svc("orders"))
    name = exposure.proxy_name(PROJECT, REGION, "orders")
    for rate in ("10ps", "20ps", "30ps", "40ps"):
        cloudrun.services.update(svc("orders", annotations={"gatehouse.dev/rate-limit": rate}))
        assert registrar.reconcile_service(ref("orders")).outcome.result == "registered"
    assert apigee.deployed[("test", name)] == 4
    assert sorted(apigee.proxies[name].revisions) == [3, 4]  # keep_revisions=2


def test_base_path_conflict_fails_the_service_and_deploys_nothing() -> None:
    services = {**svc("orders"), **svc("orders-v2", annotations={"gatehouse.dev/base-path": "/orders"})}
    registrar, apigee, _, coord = make(services)
    registrar.reconcile_service(ref("orders"))
    report = registrar.reconcile_service(ref("orders-v2"))
    assert report.outcome.result == "conflict"
    assert exposure.proxy_name(PROJECT, REGION, "orders") in report.outcome.reason
    assert "/orders" in report.outcome.reason
    assert not any(p == exposure.proxy_name(PROJECT, REGION, "orders-v2") for _, p in apigee.deployed)
    assert coord.recorded[ref("orders-v2").key].result == "conflict"


def test_a_failed_deployment_is_rolled_back_and_not_retried_blindly() -> None:
    registrar, apigee, cloudrun, _ = make(svc("orders"))
    name = exposure.proxy_name(PROJECT, REGION, "orders")
    registrar.reconcile_service(ref("orders"))
    cloudrun.services.update(svc("orders", annotations={"gatehouse.dev/rate-limit": "99ps"}))
    apigee.fail_deploy.add((name, 2))
    report = registrar.reconcile_service(ref("orders"))
    assert report.outcome.result == "error"
    assert "restored revision 1" in report.outcome.reason and "target unreachable" in report.outcome.reason
    assert apigee.deployed[("test", name)] == 1
    assert apigee.proxies[name].labels[FAILED_LABEL] == "2"
    apigee.calls.clear()
    again = registrar.reconcile_service(ref("orders"))
    assert again.outcome.result == "skip" and apigee.writes == 0


def test_a_failed_first_deployment_is_undeployed() -> None:
    registrar, apigee, _, _ = make(svc("orders"))
    apigee.fail_deploy.add((exposure.proxy_name(PROJECT, REGION, "orders"), 1))
    report = registrar.reconcile_service(ref("orders"))
    assert report.outcome.result == "error" and "undeployed it" in report.outcome.reason
    assert apigee.deployed == {}


def test_a_handmade_proxy_with_our_name_is_left_alone() -> None:
    registrar, apigee, _, _ = make(svc("orders"))
    name = exposure.proxy_name(PROJECT, REGION, "orders")
    apigee.add_handmade(name, "/orders")
    apigee.calls.clear()
    report = registrar.reconcile_service(ref("orders"))
    assert report.outcome.result == "conflict" and "not created by gatehouse" in report.outcome.reason
    assert apigee.writes == 0 and apigee.proxies[name].labels == {}


def test_invalid_annotation_is_an_error_outcome_and_changes_nothing() -> None:
    registrar, apigee, _, _ = make(svc("orders", annotations={"gatehouse.dev/base-path": "/a/../b"}))
    report = registrar.reconcile_service(ref("orders"))
    assert report.outcome.result == "error" and "gatehouse.dev/base-path" in report.outcome.reason
    assert apigee.writes == 0


def test_plan_mode_writes_nothing_and_records_nothing() -> None:
    registrar, apigee, cloudrun, coord = make(svc("orders"))
    report = registrar.reconcile_service(ref("orders"), apply=False)
    assert report.outcome.result == "create" and report.plan and len(report.plan.describe()) >= 4
    assert apigee.writes == 0 and cloudrun.calls["add_invoker"] == 0 and coord.recorded == {}


def test_deleting_a_service_undeploys_under_sync_only() -> None:
    registrar, apigee, cloudrun, _ = make(svc("orders"), policy=Policy.SYNC)
    registrar.reconcile_service(ref("orders"))
    cloudrun.services.clear()
    assert registrar.reconcile_service(ref("orders")).outcome.result == "unregistered"
    assert apigee.deployed == {}
    kept, apigee2, cloudrun2, _ = make(svc("orders"))
    kept.reconcile_service(ref("orders"))
    cloudrun2.services.clear()
    assert kept.reconcile_service(ref("orders")).outcome.result == "skip"
    assert len(apigee2.deployed) == 1


def test_concurrent_events_for_one_service_converge_on_one_revision() -> None:
    registrar, apigee, _, _ = make(svc("orders"))
    barrier = threading.Barrier(8)
    results: list[str] = []

    def handle() -> None:
        barrier.wait()
        results.append(registrar.reconcile_service(ref("orders")).outcome.result)

    threads = [threading.Thread(target=handle) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert apigee.calls["import"] == 1
    assert sorted(set(results)) <= ["registered", "unchanged"] and results.count("registered") == 1


def test_sweep_plans_creates_updates_and_orphans_from_bulk_listings() -> None:
    services = {**svc("a"), **svc("b"), **svc("c", labels={"team": "x"})}
    registrar, apigee, cloudrun, coord = make(services, policy=Policy.SYNC)
    registrar.reconcile_service(ref("b"))
    cloudrun.services.update(svc("gone"))
    registrar.reconcile_service(ref("gone"))
    del cloudrun.services[ref("gone").key]
    apigee.calls.clear()
    cloudrun.calls.clear()
    plan = registrar.sweep(apply=False)
    results = {r.ref.service: r.outcome.result for r in plan.reports}
    assert results == {"a": "create", "b": "unchanged", "c": "unchanged", "gone": "unregister"}
    assert apigee.writes == 0
    # one listing each, never one call per service
    assert apigee.calls["list_proxies"] == 1 and apigee.calls["list_org_deployments"] == 1
    assert apigee.calls["get_proxy"] == 0 and cloudrun.calls["get_service"] == 0
    applied = registrar.sweep(apply=True)
    assert {r.ref.service: r.outcome.result for r in applied.reports}["gone"] == "unregistered"
    assert coord.recorded[ref("a").key].result == "registered"


@pytest.mark.parametrize("method", ["import", "deploy", "status"])
def test_a_transient_failure_surfaces_as_transient(method: str) -> None:
    from gatehouse.errors import TransientError

    registrar, apigee, _, _ = make(svc("orders"))
    apigee.transient_once.add(method)
    with pytest.raises(TransientError):
        registrar.reconcile_service(ref("orders"))
    # redelivery converges
    assert registrar.reconcile_service(ref("orders")).outcome.result in ("registered", "unchanged")
    name = exposure.proxy_name(PROJECT, REGION, "orders")
    assert apigee.proxies[name].labels[REVISION_LABEL] in {str(r) for r in apigee.proxies[name].revisions}


def test_a_lost_import_answer_is_found_by_its_content_hash_not_imported_again() -> None:
    registrar, apigee, _, _ = make(svc("orders"))
    apigee.lost_once.add("import")
    report = registrar.reconcile_service(ref("orders"))
    assert report.outcome.result == "registered" and report.outcome.revision == 1
    name = exposure.proxy_name(PROJECT, REGION, "orders")
    assert apigee.calls["import"] == 1 and sorted(apigee.proxies[name].revisions) == [1]
    assert apigee.deployed == {("test", name): 1}


def test_an_outage_while_labelling_imports_once_and_ends_registered() -> None:
    registrar, apigee, _, _ = make(svc("orders"))
    name = exposure.proxy_name(PROJECT, REGION, "orders")
    for _ in range(3):
        apigee.transient_once.add("labels")
        with pytest.raises(TransientError):
            registrar.reconcile_service(ref("orders"))
    assert registrar.reconcile_service(ref("orders")).outcome.result == "registered"
    assert apigee.calls["import"] == 1 and sorted(apigee.proxies[name].revisions) == [1]
    assert apigee.proxies[name].labels[OWNER_LABEL] == "test-owner"
    assert apigee.deployed == {("test", name): 1}


# -- sub-path takeover ------------------------------------------------------------------------------


def fleet(inner_path: str = "/v1/orders/admin", **outer_annotations: str) -> dict[str, dict[str, Any]]:
    """'orders-api' serves /v1/orders with API keys; 'orders-admin' is public at ``inner_path``."""
    outer = svc("orders-api", annotations={"gatehouse.dev/base-path": "/v1/orders", **outer_annotations})
    inner = svc(
        "orders-admin",
        labels={"apigee-expose": "true", "apigee-profile": "public"},
        annotations={"gatehouse.dev/base-path": inner_path},
    )
    return {**outer, **inner}


def test_a_public_service_under_an_apikey_services_path_is_a_conflict_and_changes_nothing() -> None:
    registrar, apigee, cloudrun, coord = make(fleet())
    assert registrar.reconcile_service(ref("orders-api")).outcome.result == "registered"
    apigee.calls.clear()
    cloudrun.calls.clear()
    report = registrar.reconcile_service(ref("orders-admin"))
    assert report.outcome.result == "conflict"
    assert exposure.proxy_name(PROJECT, REGION, "orders-api") in report.outcome.reason
    assert ref("orders-api").key in report.outcome.reason
    assert apigee.writes == 0 and cloudrun.calls["add_invoker"] == 0
    assert exposure.proxy_name(PROJECT, REGION, "orders-admin") not in apigee.proxies
    assert coord.recorded[ref("orders-admin").key].result == "conflict"
    # the outer service's contract claims its path whether or not its proxy is deployed yet
    fresh, fresh_apigee, _, _ = make(fleet())
    assert fresh.reconcile_service(ref("orders-admin")).outcome.result == "conflict"
    assert fresh_apigee.writes == 0


@pytest.mark.parametrize(
    ("inner_path", "outer_annotations"),
    [
        ("/v1/orders/admin", {"gatehouse.dev/allow-subpaths": "/admin,/internal"}),
        ("/v1/orders/admin", {"gatehouse.dev/allow-subpaths": "*"}),
        ("/v1/orders-x", {}),
    ],
)
def test_an_allowed_or_merely_similar_path_is_registered_with_one_more_listing(
    inner_path: str, outer_annotations: dict[str, str]
) -> None:
    registrar, apigee, cloudrun, _ = make(fleet(inner_path, **outer_annotations))
    assert registrar.reconcile_service(ref("orders-api")).outcome.result == "registered"
    apigee.calls.clear()
    cloudrun.calls.clear()
    assert registrar.reconcile_service(ref("orders-admin")).outcome.result == "registered"
    assert cloudrun.calls["list_services"] == 1  # one listing of the configured project x region
    assert sum(apigee.calls.values()) + sum(cloudrun.calls.values()) <= 10
    # unchanged afterwards: still three reads, no listing
    apigee.calls.clear()
    cloudrun.calls.clear()
    assert registrar.reconcile_service(ref("orders-admin")).outcome.result == "unchanged"
    assert sum(apigee.calls.values()) + sum(cloudrun.calls.values()) <= 3


def test_the_sweep_reports_a_nested_path_from_its_own_listings() -> None:
    registrar, apigee, cloudrun, _ = make(fleet())
    apigee.calls.clear()
    cloudrun.calls.clear()
    report = registrar.sweep(apply=True)
    results = {r.ref.service: r.outcome.result for r in report.reports}
    assert results == {"orders-api": "registered", "orders-admin": "conflict"}
    assert cloudrun.calls["list_services"] == 1 and cloudrun.calls["get_service"] == 0
    assert not any(p == exposure.proxy_name(PROJECT, REGION, "orders-admin") for _, p in apigee.deployed)


def test_a_single_segment_base_path_is_nested_under_nothing_and_lists_nothing() -> None:
    registrar, _, cloudrun, _ = make(svc("orders"))  # default base path /orders
    assert registrar.reconcile_service(ref("orders")).outcome.result == "registered"
    assert cloudrun.calls["list_services"] == 0
