"""Registration with OpenAPI specs over in-memory fakes: what is read when, what it costs, and how
a bad spec fails (the stack-backed flows are in test_registration_specs_e2e.py)."""

from __future__ import annotations

import io
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from gatehouse import exposure
from gatehouse.errors import PermanentError
from gatehouse.ports import ObjectVersion
from gatehouse.profiles import load_profiles, parse_profiles
from gatehouse.registration.openapi import SpecError
from gatehouse.registration.plan import SPEC_LABEL, SPEC_SOURCE_LABEL
from gatehouse.registration.service import Registrar
from tests.registration_fakes import FakeApigee, FakeCloudRun, FakeCoordinator, v2_service
from tests.test_registration_service import PROJECT, REGION, ref, settings

FIXTURES = Path(__file__).parent / "fixtures" / "openapi"
ORDERS = (FIXTURES / "orders-3.0.yaml").read_bytes()
LEDGER = (FIXTURES / "ledger-3.1.json").read_bytes()
MEMBER = "serviceAccount:proxy@p.iam.gserviceaccount.com"


class FakeSpecs:
    """Services answer their spec only to a caller holding run.invoker (read from the Cloud Run
    fake), as Cloud Run does; objects have generations."""

    def __init__(self, cloudrun: FakeCloudRun) -> None:
        self.cloudrun = cloudrun
        self.served: dict[str, bytes] = {}  # service URL + path -> body
        self.objects: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.calls: Counter[str] = Counter()

    def service_spec(self, service_url: str, path: str, *, limit: int) -> bytes:
        self.calls["id_token"] += 1
        self.calls["service_spec"] += 1
        name = service_url.removeprefix("https://").split("-abc123")[0]
        key = f"projects/{PROJECT}/locations/{REGION}/services/{name}"
        if MEMBER not in self.cloudrun.invokers.get(key, set()):
            raise PermanentError(f"{service_url}{path}: 403", status=403)
        if service_url + path not in self.served:
            raise SpecError(f"{service_url}{path} answered 404")
        return self.served[service_url + path]

    def object_version(self, bucket: str, name: str) -> ObjectVersion:
        self.calls["object_version"] += 1
        if (bucket, name) not in self.objects:
            raise SpecError(f"gs://{bucket}/{name} does not exist")
        generation, data = self.objects[(bucket, name)]
        return ObjectVersion(generation, len(data))

    def object_bytes(self, bucket: str, name: str, generation: str, *, limit: int) -> bytes:
        self.calls["object_bytes"] += 1
        found, data = self.objects[(bucket, name)]
        assert found == generation
        return data


def make(
    services: dict[str, dict[str, Any]], profiles: Any = None
) -> tuple[Registrar, FakeApigee, FakeCloudRun, FakeSpecs]:
    apigee, cloudrun, coord = FakeApigee(), FakeCloudRun(services), FakeCoordinator()
    specs = FakeSpecs(cloudrun)
    registrar = Registrar(
        settings(), apigee, cloudrun, coord, profiles or load_profiles(), sleep=lambda s: None, specs=specs
    )
    return registrar, apigee, cloudrun, specs


def service(
    name: str, openapi: str, generation: int = 1, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    doc = v2_service(
        PROJECT,
        REGION,
        name,
        annotations={"gatehouse.dev/openapi": openapi},
        generation=generation,
        labels=labels,
    )
    return {doc["name"]: doc}


def url(name: str) -> str:
    return f"https://{name}-abc123-ew.a.run.app"


def imported_files(apigee: FakeApigee, name: str) -> dict[str, bytes]:
    proxy = apigee.proxies[exposure.proxy_name(PROJECT, REGION, name)]
    with zipfile.ZipFile(io.BytesIO(proxy.revisions[max(proxy.revisions)])) as archive:
        return {n: archive.read(n) for n in archive.namelist()}


def calls(*counters: Counter[str]) -> int:
    return sum(sum(c.values()) for c in counters)


def test_a_new_service_with_a_service_path_spec_gets_the_spec_in_its_bundle() -> None:
    registrar, apigee, cloudrun, specs = make(service("orders", "/openapi.yaml"))
    specs.served[url("orders") + "/openapi.yaml"] = ORDERS
    report = registrar.reconcile_service(ref("orders"))
    assert report.outcome.result == "registered", report.outcome.reason
    assert imported_files(apigee, "orders")["apiproxy/resources/oas/openapi.yaml"] == ORDERS
    labels = apigee.proxies[exposure.proxy_name(PROJECT, REGION, "orders")].labels
    assert labels[SPEC_SOURCE_LABEL] == "orders-00001-abc"
    assert labels[SPEC_LABEL].startswith("yaml-")
    # the proxy service account got run.invoker before the read (a new service's spec needs it)
    assert MEMBER in cloudrun.invokers[ref("orders").key]


def test_an_unchanged_event_does_not_read_the_spec_again() -> None:
    registrar, apigee, cloudrun, specs = make(service("orders", "/openapi.yaml"))
    specs.served[url("orders") + "/openapi.yaml"] = ORDERS
    registrar.reconcile_service(ref("orders"))
    for counter in (apigee.calls, cloudrun.calls, specs.calls):
        counter.clear()
    report = registrar.reconcile_service(ref("orders"))
    assert report.outcome.result == "unchanged"
    assert specs.calls == Counter()
    assert apigee.writes == 0 and calls(apigee.calls, cloudrun.calls) == 3


def test_a_new_revision_with_the_same_spec_reads_it_but_writes_nothing() -> None:
    registrar, apigee, cloudrun, specs = make(service("orders", "/openapi.yaml"))
    specs.served[url("orders") + "/openapi.yaml"] = ORDERS
    registrar.reconcile_service(ref("orders"))
    cloudrun.services.update(service("orders", "/openapi.yaml", generation=2))
    apigee.calls.clear()
    specs.calls.clear()
    report = registrar.reconcile_service(ref("orders"))
    assert report.outcome.result == "unchanged"
    assert specs.calls["service_spec"] == 1 and apigee.writes == 0


def test_a_changed_spec_on_a_new_revision_is_a_new_proxy_revision() -> None:
    registrar, apigee, cloudrun, specs = make(service("orders", "/openapi.yaml"))
    specs.served[url("orders") + "/openapi.yaml"] = ORDERS
    registrar.reconcile_service(ref("orders"))
    changed = ORDERS.replace(b'version: "1.4"', b'version: "1.5"')
    specs.served[url("orders") + "/openapi.yaml"] = changed
    cloudrun.services.update(service("orders", "/openapi.yaml", generation=2))
    report = registrar.reconcile_service(ref("orders"))
    assert report.outcome.result == "registered" and report.outcome.revision == 2
    assert imported_files(apigee, "orders")["apiproxy/resources/oas/openapi.yaml"] == changed
    labels = apigee.proxies[exposure.proxy_name(PROJECT, REGION, "orders")].labels
    assert labels[SPEC_SOURCE_LABEL] == "orders-00002-abc"


def test_a_gs_spec_costs_one_metadata_read_when_unchanged() -> None:
    registrar, apigee, cloudrun, specs = make(service("ledger", "gs://specs-bucket/ledger/openapi.json"))
    specs.objects[("specs-bucket", "ledger/openapi.json")] = ("17", LEDGER)
    assert registrar.reconcile_service(ref("ledger")).outcome.result == "registered"
    assert imported_files(apigee, "ledger")["apiproxy/resources/oas/openapi.json"] == LEDGER
    specs.calls.clear()
    apigee.calls.clear()
    cloudrun.calls.clear()
    assert registrar.reconcile_service(ref("ledger")).outcome.result == "unchanged"
    assert specs.calls == Counter({"object_version": 1})
    assert apigee.writes == 0
    # a new generation is read, and a new spec makes a new revision
    specs.objects[("specs-bucket", "ledger/openapi.json")] = ("18", LEDGER.replace(b'"2"', b'"3"'))
    report = registrar.reconcile_service(ref("ledger"))
    assert report.outcome.result == "registered" and report.outcome.revision == 2
    assert apigee.proxies[exposure.proxy_name(PROJECT, REGION, "ledger")].labels[SPEC_SOURCE_LABEL] == "g18"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"openapi: 3.0.3\ninfo: {}\n", "invalid OpenAPI 3.0"),
        (b"a: &x 1\nb: *x\n", "anchors and aliases"),
        (None, "404"),
    ],
)
def test_an_invalid_spec_fails_the_service_and_changes_nothing(body: bytes | None, problem: str) -> None:
    registrar, apigee, cloudrun, specs = make(service("orders", "/openapi.yaml"))
    specs.served[url("orders") + "/openapi.yaml"] = ORDERS
    registrar.reconcile_service(ref("orders"))
    before = {n: (dict(p.labels), dict(p.revisions)) for n, p in apigee.proxies.items()}
    deployed = dict(apigee.deployed)
    if body is None:
        del specs.served[url("orders") + "/openapi.yaml"]
    else:
        specs.served[url("orders") + "/openapi.yaml"] = body
    cloudrun.services.update(service("orders", "/openapi.yaml", generation=2))
    apigee.calls.clear()
    report = registrar.reconcile_service(ref("orders"))
    assert report.outcome.result == "error"
    assert "annotation gatehouse.dev/openapi" in report.outcome.reason and problem in report.outcome.reason
    assert apigee.writes == 0
    assert {n: (dict(p.labels), dict(p.revisions)) for n, p in apigee.proxies.items()} == before
    assert apigee.deployed == deployed


def test_a_plan_of_a_new_service_does_not_grant_to_read_the_spec() -> None:
    registrar, apigee, cloudrun, specs = make(service("orders", "/openapi.yaml"))
    specs.served[url("orders") + "/openapi.yaml"] = ORDERS
    report = registrar.reconcile_service(ref("orders"), apply=False)
    assert report.outcome.result == "error" and "when the plan is applied" in report.outcome.reason
    assert cloudrun.invokers == {} and apigee.writes == 0


def test_someone_elses_proxy_is_a_conflict_without_reading_the_spec() -> None:
    registrar, apigee, _, specs = make(service("orders", "/openapi.yaml"))
    apigee.add_handmade(exposure.proxy_name(PROJECT, REGION, "orders"), "/orders")
    report = registrar.reconcile_service(ref("orders"))
    assert report.outcome.result == "conflict"
    assert specs.calls == Counter()


VALIDATING = parse_profiles(
    """
default: strict
profiles:
  strict:
    auth: {mode: apikey}
    validate_requests: true
"""
)


def test_validate_requests_adds_oas_validation_for_a_3_0_spec() -> None:
    registrar, apigee, _, specs = make(service("orders", "/openapi.yaml"), VALIDATING)
    specs.served[url("orders") + "/openapi.yaml"] = ORDERS
    assert registrar.reconcile_service(ref("orders")).outcome.result == "registered"
    policy = imported_files(apigee, "orders")["apiproxy/policies/OAS-ValidateRequest.xml"]
    assert b"<OASResource>oas://openapi.yaml</OASResource>" in policy


def test_validate_requests_with_a_3_1_spec_fails_with_that_reason() -> None:
    registrar, apigee, _, specs = make(service("ledger", "gs://specs-bucket/ledger.json"), VALIDATING)
    specs.objects[("specs-bucket", "ledger.json")] = ("1", LEDGER)
    report = registrar.reconcile_service(ref("ledger"))
    assert report.outcome.result == "error"
    assert "OpenAPI 3.0 only" in report.outcome.reason and "gatehouse.dev/openapi" in report.outcome.reason
    assert apigee.writes == 0


def test_validate_requests_without_a_spec_fails_naming_the_annotation() -> None:
    doc = v2_service(PROJECT, REGION, "orders")
    registrar, _, _, _ = make({doc["name"]: doc}, VALIDATING)
    report = registrar.reconcile_service(ref("orders"))
    assert report.outcome.result == "error" and "gatehouse.dev/openapi" in report.outcome.reason


def test_the_sweep_reads_every_spec_again() -> None:
    registrar, _, _, specs = make(service("orders", "/openapi.yaml"))
    specs.served[url("orders") + "/openapi.yaml"] = ORDERS
    registrar.reconcile_service(ref("orders"))
    specs.calls.clear()
    report = registrar.sweep(apply=True)
    assert [r.outcome.result for r in report.reports] == ["unchanged"]
    assert specs.calls["service_spec"] == 1


def test_concurrent_events_for_a_spec_service_import_once() -> None:
    import threading

    registrar, apigee, _, specs = make(service("orders", "/openapi.yaml"))
    specs.served[url("orders") + "/openapi.yaml"] = ORDERS
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
    assert results.count("registered") == 1 and set(results) <= {"registered", "unchanged"}
