"""Registration through the real Apigee adapter against the Apigee stand-in, with the stand-in's
fault injection: lost import answers, an outage while labelling, retried deploys. Cloud Run and the
coordinator are the in-memory fakes; every Apigee call goes over HTTP as in production."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from gatehouse import bundle as bundles
from gatehouse import exposure
from gatehouse.adapters.apigee import ApigeeClient
from gatehouse.config import Settings
from gatehouse.errors import PermanentError, TransientError
from gatehouse.local.standins import apigee as standin
from gatehouse.local.standins.server import Handle
from gatehouse.profiles import load_profiles
from gatehouse.registration.plan import OWNER_LABEL, REVISION_LABEL, ServiceRef
from gatehouse.registration.service import Registrar
from tests.registration_fakes import FakeCloudRun, FakeCoordinator, v2_service

PROJECT, REGION, SERVICE = "shop-prod", "europe-west1", "orders"
OWNER = "test-owner"
SA = "proxy@p.iam.gserviceaccount.com"
REF = ServiceRef(PROJECT, REGION, SERVICE)
PROXY = exposure.proxy_name(PROJECT, REGION, SERVICE)


@pytest.fixture
def stand() -> Iterator[Handle]:
    handle = standin.start(deploy_delay_ms=0, check_fields=True)
    yield handle
    handle.stop()


def client(stand: Handle, *, timeout: float = 5.0) -> ApigeeClient:
    return ApigeeClient(
        "local-org",
        endpoint=stand.url,
        anonymous=True,
        calls_per_minute=60_000,
        retry_attempts=2,
        retry_max_wait=0.05,
        timeout=timeout,
    )


def registrar(stand: Handle, *, timeout: float = 5.0) -> Registrar:
    doc = v2_service(PROJECT, REGION, SERVICE)
    settings = Settings(
        owner_id=OWNER,
        apigee_org="local-org",
        proxy_service_account=SA,
        apigee_environments=["test"],
        projects=[PROJECT],
        regions=[REGION],
        keep_revisions=5,
        deploy_poll_seconds=0.05,
    )
    return Registrar(
        settings,
        client(stand, timeout=timeout),
        FakeCloudRun({doc["name"]: doc}),
        FakeCoordinator(),
        load_profiles(),
        sleep=lambda s: None,
    )


def faults(stand: Handle, **spec: Any) -> None:
    requests.post(f"{stand.url}/_standin/faults", json=spec, timeout=5).raise_for_status()


def clear_faults(stand: Handle) -> None:
    requests.delete(f"{stand.url}/_standin/faults", timeout=5).raise_for_status()


def proxy_doc(stand: Handle) -> dict[str, Any]:
    r = requests.get(f"{stand.url}/v1/organizations/local-org/apis/{PROXY}", timeout=5)
    r.raise_for_status()
    return r.json()  # type: ignore[no-any-return]


def deployments(stand: Handle) -> dict[str, str]:
    r = requests.get(f"{stand.url}/v1/organizations/local-org/apis/{PROXY}/deployments", timeout=5)
    return {d["environment"]: d["revision"] for d in r.json().get("deployments", [])}


def imports(stand: Handle) -> int:
    stats = requests.get(f"{stand.url}/_standin/stats", timeout=5).json()
    return int(stats["methods"].get("apigee.organizations.apis.create", 0))


def rendered(reg: Registrar) -> bytes:
    want = reg.desired(REF, v2_service(PROJECT, REGION, SERVICE))
    assert want.bundle_zip is not None
    return want.bundle_zip


def rewrite_description(zip_bytes: bytes, pattern: bytes, replacement: bytes) -> bytes:
    """The bundle with its base configuration (which holds the description) edited."""
    source = zipfile.ZipFile(io.BytesIO(zip_bytes))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name.count("/") == 1:
                data = re.sub(pattern, replacement, data)
            target.writestr(name, data)
    return out.getvalue()


def without_content_marker(zip_bytes: bytes) -> bytes:
    """The bundle as gatehouse rendered it before bundles carried their content hash."""
    return rewrite_description(zip_bytes, rb"\[gatehouse bundle: [0-9a-f]+\] ", b"")


def import_by_hand(stand: Handle, zip_bytes: bytes) -> None:
    requests.post(
        f"{stand.url}/v1/organizations/local-org/apis",
        params={"name": PROXY, "action": "import"},
        files={"file": ("bundle.zip", zip_bytes, "application/zip")},
        timeout=5,
    ).raise_for_status()


def assert_one_deployed_revision(stand: Handle, revision: str) -> None:
    doc = proxy_doc(stand)
    assert doc["revision"] == [revision]
    assert doc["labels"][OWNER_LABEL] == OWNER and doc["labels"][REVISION_LABEL] == revision
    assert deployments(stand) == {"test": revision}


# -- 1.4: an import whose answer is lost ----------------------------------------------------------


@pytest.mark.parametrize(
    "lost",
    [
        pytest.param({"latency_ms": 1500}, id="timeout"),
        pytest.param({"error_rate": 1.0, "statuses": [503], "times": 1}, id="503"),
        pytest.param({"error_rate": 1.0, "statuses": [500], "times": 1}, id="500"),
    ],
)
def test_an_import_whose_answer_is_lost_after_the_write_makes_exactly_one_revision(
    stand: Handle, lost: dict[str, Any]
) -> None:
    reg = registrar(stand, timeout=0.5)
    faults(stand, routes=["apis.create"], phase="after", **lost)
    report = reg.reconcile_service(REF)
    assert report.outcome.result == "registered", report.outcome.reason
    assert report.outcome.revision == 1
    assert imports(stand) == 1  # never imported again
    clear_faults(stand)
    assert_one_deployed_revision(stand, "1")
    assert reg.reconcile_service(REF).outcome.result == "unchanged"


def test_an_import_that_did_not_land_is_transient_and_the_next_delivery_imports_once(stand: Handle) -> None:
    reg = registrar(stand)
    faults(stand, routes=["apis.create"], error_rate=1.0, statuses=[503], times=1)  # before the write
    with pytest.raises(TransientError, match="did not land"):
        reg.reconcile_service(REF)
    assert reg.reconcile_service(REF).outcome.result == "registered"
    assert imports(stand) == 2
    assert_one_deployed_revision(stand, "1")


def test_the_import_is_a_multipart_file_upload(stand: Handle) -> None:
    revision = client(stand).import_bundle(PROXY, rendered(registrar(stand)))
    assert revision == 1
    refused = requests.post(
        f"{stand.url}/v1/organizations/local-org/apis",
        params={"name": PROXY, "action": "import"},
        data=rendered(registrar(stand)),
        headers={"Content-Type": "application/octet-stream"},
        timeout=5,
    )
    assert refused.status_code == 400
    assert proxy_doc(stand)["revision"] == ["1"]


# -- 2.1: an outage while labelling ---------------------------------------------------------------


def test_an_outage_while_labelling_a_new_service_ends_with_one_deployed_revision(stand: Handle) -> None:
    reg = registrar(stand)
    # apis.patch answers 503 for six calls: each delivery's adapter tries twice
    faults(stand, routes=["apis.patch"], error_rate=1.0, statuses=[503], times=6)
    for _ in range(3):
        with pytest.raises(TransientError):
            reg.reconcile_service(REF)
    assert imports(stand) == 1  # later deliveries found the unlabelled revision of ours
    report = reg.reconcile_service(REF)
    assert report.outcome.result == "registered", report.outcome.reason
    assert report.outcome.revision == 1
    assert_one_deployed_revision(stand, "1")
    # and the nightly reconcile agrees
    swept = reg.sweep(apply=True)
    assert [r.outcome.result for r in swept.reports] == ["unchanged"]
    assert_one_deployed_revision(stand, "1")


@pytest.mark.parametrize("marked", [True, False], ids=["content-marked", "owner-marked-only"])
def test_unlabelled_revisions_of_ours_are_adopted_and_the_extras_pruned(stand: Handle, marked: bool) -> None:
    """What earlier versions left behind: one unlabelled revision per delivery during an outage."""
    reg = registrar(stand)
    zipped = rendered(reg) if marked else without_content_marker(rendered(reg))
    for _ in range(3):
        import_by_hand(stand, zipped)
    planned = reg.reconcile_service(REF, apply=False)
    assert planned.outcome.result == ("create" if marked else "update")  # not "conflict"
    report = reg.reconcile_service(REF)
    assert report.outcome.result == "registered", report.outcome.reason
    # the newest revision holding this content is reused; without a content mark one more is imported
    kept = "3" if marked else "4"
    assert_one_deployed_revision(stand, kept)
    assert imports(stand) == (3 if marked else 4)
    assert [r.outcome.result for r in reg.sweep(apply=True).reports] == ["unchanged"]
    assert_one_deployed_revision(stand, kept)


def test_unlabelled_revisions_are_adopted_only_when_every_one_is_ours(stand: Handle) -> None:
    reg = registrar(stand)
    for _ in range(2):
        import_by_hand(stand, rendered(reg))
    theirs = rewrite_description(
        rendered(reg),
        re.escape(bundles.owner_marker(OWNER).encode()),
        bundles.owner_marker("a-human").encode(),
    )
    import_by_hand(stand, theirs)
    report = reg.reconcile_service(REF)
    assert report.outcome.result == "conflict"
    assert "not created by gatehouse" in report.outcome.reason
    assert proxy_doc(stand)["revision"] == ["1", "2", "3"] and deployments(stand) == {}
    # once the foreign revision is gone, the two of ours are adopted
    requests.delete(
        f"{stand.url}/v1/organizations/local-org/apis/{PROXY}/revisions/3", timeout=5
    ).raise_for_status()
    assert reg.reconcile_service(REF).outcome.result == "registered"
    assert_one_deployed_revision(stand, "2")


# -- 1.5: a deploy retried after its answer was lost ----------------------------------------------


def test_a_retried_deploy_that_had_landed_succeeds_whatever_the_refusal_says(
    stand: Handle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(standin, "ALREADY_DEPLOYED", "{revision}: a deployment of this revision exists")
    apigee = client(stand)
    revision = apigee.import_bundle(PROXY, rendered(registrar(stand)))
    # the first deploy lands but its answer is lost; the adapter's retry is refused (400)
    faults(
        stand,
        routes=["apigee.organizations.environments.apis.revisions.deploy"],
        phase="after",
        error_rate=1.0,
        statuses=[503],
        times=1,
    )
    apigee.deploy("test", PROXY, revision, service_account=SA)
    assert deployments(stand) == {"test": "1"}
    # a refusal for another reason is still an error
    clear_faults(stand)
    second = apigee.import_bundle(PROXY, rendered(registrar(stand)))
    with pytest.raises(PermanentError, match="MISSING_SERVICE_ACCOUNT"):
        apigee.deploy("test", PROXY, second, service_account="")
