"""Invoker drift: the proxy service account's roles/run.invoker binding removed by hand is found
and granted again by the nightly sweep (fakes; the adapter's one read is tested against the Cloud
Run stand-in in test_cloudrun_invoker.py). Events keep their 3 reads."""

from __future__ import annotations

from typing import Any

from gatehouse.config import Settings
from gatehouse.errors import TransientError
from gatehouse.profiles import load_profiles
from gatehouse.registration.plan import ServiceRef
from gatehouse.registration.service import Registrar
from tests.registration_fakes import FakeApigee, FakeCloudRun, FakeCoordinator, v2_service

PROJECT, REGION = "shop-prod", "europe-west1"
MEMBER = "serviceAccount:proxy@p.iam.gserviceaccount.com"
SERVICES = 20


def key(name: str) -> str:
    return f"projects/{PROJECT}/locations/{REGION}/services/{name}"


def registered(n: int = SERVICES, **kw: Any) -> tuple[Registrar, FakeApigee, FakeCloudRun, FakeCoordinator]:
    """``n`` opted-in services, all registered by one sweep; the fakes' counters cleared."""
    docs = [v2_service(PROJECT, REGION, f"svc-{i:03d}") for i in range(n)]
    apigee, cloudrun, coord = FakeApigee(), FakeCloudRun({d["name"]: d for d in docs}), FakeCoordinator()
    settings = Settings(
        owner_id="test-owner",
        apigee_org="org",
        proxy_service_account="proxy@p.iam.gserviceaccount.com",
        apigee_environments=["test"],
        projects=[PROJECT],
        regions=[REGION],
        **kw,
    )
    registrar = Registrar(settings, apigee, cloudrun, coord, load_profiles(), sleep=lambda s: None)
    assert {r.outcome.result for r in registrar.sweep(apply=True).reports} == {"registered"}
    assert all(cloudrun.invokers[key(f"svc-{i:03d}")] == {MEMBER} for i in range(n))
    apigee.calls.clear()
    cloudrun.calls.clear()
    return registrar, apigee, cloudrun, coord


def test_the_nightly_sweep_restores_a_binding_removed_by_hand() -> None:
    registrar, apigee, cloudrun, coord = registered()
    cloudrun.invokers[key("svc-007")].discard(MEMBER)  # someone edits the policy in the console
    # an event for it stays at 3 reads and does not look at the policy: the sweep's job
    event = registrar.reconcile_service(ServiceRef(PROJECT, REGION, "svc-007"))
    assert event.outcome.result == "unchanged"
    assert sum(apigee.calls.values()) + sum(cloudrun.calls.values()) == 3
    assert cloudrun.calls["has_invoker"] == 0
    apigee.calls.clear()
    cloudrun.calls.clear()

    report = registrar.sweep(apply=True)

    assert cloudrun.invokers[key("svc-007")] == {MEMBER}
    restored = [r for r in report.reports if r.ref.service == "svc-007"]
    assert len(restored) == 1 and len(report.reports) == SERVICES
    assert restored[0].outcome.result == "registered" and "run.invoker" in restored[0].outcome.reason
    assert restored[0].plan is not None and restored[0].plan.describe() == [
        "grant roles/run.invoker on the service to the proxy service account"
    ]
    assert coord.recorded[key("svc-007")].result == "registered"
    assert {r.outcome.result for r in report.reports if r.ref.service != "svc-007"} == {"unchanged"}
    assert apigee.writes == 0, "nothing in Apigee changes"
    assert cloudrun.calls["has_invoker"] == SERVICES and cloudrun.calls["add_invoker"] == 1
    assert not report.failed


def test_the_check_costs_one_read_per_registered_service() -> None:
    registrar, apigee, cloudrun, _ = registered()
    registrar.sweep(apply=True)
    with_check = sum(apigee.calls.values()) + sum(cloudrun.calls.values())
    reads = cloudrun.calls["has_invoker"]
    apigee.calls.clear()
    cloudrun.calls.clear()
    registrar.sweep(apply=True, check_invokers=False)
    without = sum(apigee.calls.values()) + sum(cloudrun.calls.values())
    assert reads == SERVICES and with_check - without == SERVICES
    assert cloudrun.calls["add_invoker"] == 0


def test_a_plan_sweep_stays_cheap_unless_asked_and_then_shows_the_grant() -> None:
    registrar, _, cloudrun, _ = registered()
    cloudrun.invokers[key("svc-003")].clear()
    plain = registrar.sweep(apply=False)
    assert cloudrun.calls["has_invoker"] == 0
    assert {r.outcome.result for r in plain.reports} == {"unchanged"}

    checked = registrar.sweep(apply=False, check_invokers=True)
    drifted = [r for r in checked.reports if r.outcome.result != "unchanged"]
    assert [r.ref.service for r in drifted] == ["svc-003"]
    assert drifted[0].plan is not None and drifted[0].plan.writes
    assert cloudrun.calls["add_invoker"] == 0 and cloudrun.invokers[key("svc-003")] == set()


def test_an_unreadable_policy_fails_that_service_only() -> None:
    registrar, _, cloudrun, _ = registered(3)
    real = cloudrun.has_invoker

    def flaky(project: str, region: str, name: str, member: str) -> bool:
        if name == "svc-001":
            raise TransientError("getIamPolicy: 503")
        return real(project, region, name, member)

    cloudrun.has_invoker = flaky  # type: ignore[method-assign]
    report = registrar.sweep(apply=True)
    assert [r.ref.service for r in report.failed] == ["svc-001"]
    assert "run.invoker policy" in report.failed[0].outcome.reason
