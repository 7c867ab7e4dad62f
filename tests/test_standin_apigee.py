"""The Apigee management API stand-in over real HTTP: the semantics production code relies on."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from gatehouse.local import processes
from gatehouse.local.standins import apigee
from gatehouse.local.standins.server import Handle

SA = "gatehouse-proxy@my-proj.iam.gserviceaccount.com"


def as_file(bundle: bytes) -> dict[str, tuple[str, bytes, str]]:
    """The documented upload of apis.create: multipart/form-data, the zip in the form field "file"."""
    return {"file": ("bundle.zip", bundle, "application/zip")}


def make_bundle(
    name: str = "orders",
    base_path: str = "/v1/orders",
    *,
    description: str = "orders proxy",
    auth: bool = True,
    extra: dict[str, str] | None = None,
) -> bytes:
    """A minimal Cloud Run proxy bundle (GoogleIDToken target when ``auth``)."""
    token = (
        "<Authentication><GoogleIDToken><Audience>https://orders-abc-uc.a.run.app</Audience>"
        "</GoogleIDToken></Authentication>"
        if auth
        else ""
    )
    files = {
        f"apiproxy/{name}.xml": (
            f'<APIProxy name="{name}"><Description>{description}</Description></APIProxy>'
        ),
        "apiproxy/proxies/default.xml": (
            '<ProxyEndpoint name="default"><PreFlow name="PreFlow"><Request><Step><Name>VA-Key</Name>'
            '</Step></Request><Response/></PreFlow><Flows/><PostFlow name="PostFlow"/>'
            f"<HTTPProxyConnection><BasePath>{base_path}</BasePath></HTTPProxyConnection>"
            '<RouteRule name="default"><TargetEndpoint>default</TargetEndpoint></RouteRule></ProxyEndpoint>'
        ),
        "apiproxy/policies/VA-Key.xml": (
            '<VerifyAPIKey name="VA-Key"><APIKey ref="request.header.x-api-key"/></VerifyAPIKey>'
        ),
        "apiproxy/targets/default.xml": (
            f'<TargetEndpoint name="default"><HTTPTargetConnection>{token}'
            "<URL>https://orders-abc-uc.a.run.app</URL></HTTPTargetConnection></TargetEndpoint>"
        ),
        **(extra or {}),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return buf.getvalue()


@pytest.fixture
def stand() -> Iterator[Handle]:
    handle = apigee.start(deploy_delay_ms=150, check_fields=True)
    yield handle
    handle.stop()


def org(handle: Handle) -> str:
    return f"{handle.url}/v1/organizations/local-org"


def import_bundle(handle: Handle, name: str = "orders", bundle: bytes | None = None) -> requests.Response:
    return requests.post(
        f"{org(handle)}/apis",
        params={"name": name, "action": "import"},
        files=as_file(bundle if bundle is not None else make_bundle(name)),
        timeout=10,
    )


def deploy(
    handle: Handle, name: str, revision: int | str, env: str = "test", **params: str
) -> requests.Response:
    return requests.post(
        f"{org(handle)}/environments/{env}/apis/{name}/revisions/{revision}/deployments",
        params=params,
        timeout=10,
    )


def status(handle: Handle, name: str, revision: int | str, env: str = "test") -> requests.Response:
    return requests.get(
        f"{org(handle)}/environments/{env}/apis/{name}/revisions/{revision}/deployments", timeout=10
    )


def wait_state(handle: Handle, name: str, revision: int | str, env: str = "test") -> dict:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        doc = status(handle, name, revision, env).json()
        if doc["state"] != "PROGRESSING":
            return doc
        time.sleep(0.05)
    raise AssertionError("deployment stayed PROGRESSING")


def violations(response: requests.Response) -> list[dict]:
    details = response.json()["error"].get("details", [])
    return [v for d in details for v in d.get("violations", [])]


# -- import, revisions, labels -------------------------------------------------------------------


def test_import_creates_revisions_and_lists_them(stand: Handle) -> None:
    first = import_bundle(stand)
    assert first.status_code == 200
    doc = first.json()
    assert doc["name"] == "orders" and doc["revision"] == "1"
    assert doc["basepaths"] == ["/v1/orders"]
    assert doc["policies"] == ["VA-Key"] and doc["proxies"] == ["default"] and doc["targets"] == ["default"]
    assert doc["type"] == "Application" and doc["createdAt"].isdigit()
    # multipart/form-data with the documented field "file" works too
    second = requests.post(
        f"{org(stand)}/apis",
        params={"name": "orders", "action": "import"},
        files={"file": ("orders.zip", make_bundle(), "application/zip")},
        timeout=10,
    )
    assert second.json()["revision"] == "2"
    proxy = requests.get(f"{org(stand)}/apis/orders", timeout=10).json()
    assert proxy["revision"] == ["1", "2"] and proxy["latestRevisionId"] == "2"
    assert proxy["metaData"]["subType"] == "Proxy"
    listing = requests.get(
        f"{org(stand)}/apis", params={"includeRevisions": "true", "includeMetaData": "true"}, timeout=10
    ).json()
    assert [p["name"] for p in listing["proxies"]] == ["orders"]
    assert listing["proxies"][0]["revision"] == ["1", "2"]
    plain = requests.get(f"{org(stand)}/apis", timeout=10).json()
    assert "revision" not in plain["proxies"][0]
    bundle = requests.get(f"{org(stand)}/apis/orders/revisions/2", params={"format": "bundle"}, timeout=10)
    assert bundle.headers["Content-Type"] == "application/octet-stream"
    assert bundle.content == make_bundle()


@pytest.mark.parametrize(
    "upload",
    [
        pytest.param(
            {"data": make_bundle(), "headers": {"Content-Type": "application/octet-stream"}}, id="octet"
        ),
        pytest.param({"data": make_bundle(), "headers": {"Content-Type": "application/zip"}}, id="zip"),
        pytest.param({"data": make_bundle()}, id="no-content-type"),
        pytest.param({"files": {"name": (None, "orders")}}, id="multipart-without-file"),
    ],
)
def test_import_takes_only_a_multipart_file_part(stand: Handle, upload: dict) -> None:
    """apis.create documents multipart/form-data with the zip in the form field "file"."""
    refused = requests.post(
        f"{org(stand)}/apis", params={"name": "orders", "action": "import"}, timeout=10, **upload
    )
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert any(
        v["field"] == "file"
        for d in error.get("details", [])
        if d["@type"] == "type.googleapis.com/google.rpc.BadRequest"
        for v in d["fieldViolations"]
    )
    assert requests.get(f"{org(stand)}/apis/orders", timeout=10).status_code == 404


def test_validate_does_not_import(stand: Handle) -> None:
    response = requests.post(
        f"{org(stand)}/apis",
        params={"name": "orders", "action": "validate"},
        files=as_file(make_bundle()),
        timeout=10,
    )
    assert response.status_code == 200
    assert requests.get(f"{org(stand)}/apis/orders", timeout=10).status_code == 404


@pytest.mark.parametrize(
    ("bundle", "fragment"),
    [
        (b"not a zip", "not a valid zip"),
        (make_bundle(extra={"apiproxy/policies/Broken.xml": "<Quota name='Broken'>"}), "malformed XML"),
        (make_bundle(extra={"other/readme.txt": "x"}), "under apiproxy/"),
        (make_bundle(extra={"apiproxy/second.xml": "<APIProxy name='second'/>"}), "one base configuration"),
    ],
)
def test_invalid_bundles_are_rejected_with_violations(stand: Handle, bundle: bytes, fragment: str) -> None:
    response = import_bundle(stand, bundle=bundle)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["message"] == "bundle contains errors"
    assert error["details"][0]["@type"] == "type.googleapis.com/google.rpc.PreconditionFailure"
    assert any(fragment in v["description"] for v in violations(response))


def test_unknown_policy_reference_is_a_violation(stand: Handle) -> None:
    bundle = make_bundle()
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(bundle)) as src, zipfile.ZipFile(buf, "w") as dst:
        for item in src.infolist():
            if not item.filename.endswith("VA-Key.xml"):
                dst.writestr(item, src.read(item))
    response = import_bundle(stand, bundle=buf.getvalue())
    assert response.status_code == 400
    assert 'unknown policy "VA-Key"' in violations(response)[0]["description"]


def test_bad_names_and_oversized_bundles(stand: Handle) -> None:
    assert import_bundle(stand, name="has space").status_code == 400
    huge = make_bundle(extra={"apiproxy/resources/jsc/big.js": "x" * (15 * 1024 * 1024 + 1)})  # stored
    response = import_bundle(stand, bundle=huge)
    assert response.status_code == 400
    assert "15 MB" in violations(response)[0]["description"]


def test_labels_patch_requires_update_mask(stand: Handle) -> None:
    import_bundle(stand)
    url = f"{org(stand)}/apis/orders"
    assert requests.patch(url, json={"labels": {"a": "b"}}, timeout=10).status_code == 400
    patched = requests.patch(
        url, params={"updateMask": "labels"}, json={"labels": {"gatehouse-managed": "true"}}, timeout=10
    )
    assert patched.status_code == 200
    assert requests.get(url, timeout=10).json()["labels"] == {"gatehouse-managed": "true"}


def test_unknown_org_and_proxy_are_404(stand: Handle) -> None:
    other = requests.get(f"{stand.url}/v1/organizations/nope/apis", timeout=10)
    assert other.status_code == 404 and other.json()["error"]["status"] == "NOT_FOUND"
    assert requests.get(f"{org(stand)}/apis/missing", timeout=10).status_code == 404
    assert requests.get(f"{org(stand)}/environments/dev", timeout=10).status_code == 404
    assert requests.get(org(stand), timeout=10).json()["environments"] == ["prod", "test"]
    assert requests.get(f"{org(stand)}/environments/prod", timeout=10).json()["state"] == "ACTIVE"


# -- deploy semantics ----------------------------------------------------------------------------


def test_deploy_requires_service_account_for_google_token_targets(stand: Handle) -> None:
    import_bundle(stand)
    response = deploy(stand, "orders", 1)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "FAILED_PRECONDITION" and error["message"] == "deployment validations failed"
    assert [v["type"] for v in violations(response)] == ["MISSING_SERVICE_ACCOUNT"]
    assert deploy(stand, "orders", 1, serviceAccount="projects/-/serviceAccounts/x").status_code == 400
    assert deploy(stand, "orders", 1, serviceAccount=SA).status_code == 200
    # a bundle without Authentication needs no service account
    import_bundle(stand, "plain", make_bundle("plain", "/v1/plain", auth=False))
    assert deploy(stand, "plain", 1).status_code == 200


def test_deploy_progresses_to_ready_then_override_and_redeploy_rules(stand: Handle) -> None:
    import_bundle(stand)
    import_bundle(stand)
    created = deploy(stand, "orders", 1, serviceAccount=SA).json()
    assert created["revision"] == "1" and created["serviceAccount"] == f"projects/-/serviceAccounts/{SA}"
    assert "state" not in created  # state is only reported by getDeployments
    assert status(stand, "orders", 1).json()["state"] == "PROGRESSING"
    ready = wait_state(stand, "orders", 1)
    assert ready["state"] == "READY"
    assert ready["instances"][0]["deployedRoutes"][0]["basepath"] == "/v1/orders"

    # the same revision again: not idempotent, override does not help
    again = deploy(stand, "orders", 1, serviceAccount=SA, override="true")
    assert again.status_code == 400
    assert again.json()["error"] == {
        "code": 400,
        "message": "revision organizations/local-org/apis/orders/revisions/1 is already deployed",
        "status": "FAILED_PRECONDITION",
    }
    # another revision without override
    conflict = deploy(stand, "orders", 2, serviceAccount=SA)
    assert conflict.status_code == 400
    (violation,) = violations(conflict)
    assert violation["type"] == "CONFLICTING_DEPLOYMENT"
    assert violation["subject"].endswith("/apis/orders/revisions/1")
    assert "override" in violation["description"]
    # with override it replaces revision 1
    assert deploy(stand, "orders", 2, serviceAccount=SA, override="true").status_code == 200
    listed = requests.get(f"{org(stand)}/apis/orders/deployments", timeout=10).json()["deployments"]
    assert [(d["environment"], d["revision"]) for d in listed] == [("test", "2")]
    assert status(stand, "orders", 1).status_code == 404
    # deployments show up in every list
    assert len(requests.get(f"{org(stand)}/deployments", timeout=10).json()["deployments"]) == 1
    assert (
        len(requests.get(f"{org(stand)}/environments/test/deployments", timeout=10).json()["deployments"])
        == 1
    )
    assert requests.get(f"{org(stand)}/environments/prod/deployments", timeout=10).json() == {}


def test_error_marker_makes_the_deployment_fail(stand: Handle) -> None:
    bundle = make_bundle(description=f"broken on purpose {apigee.DEPLOY_ERROR_MARKER}")
    import_bundle(stand, bundle=bundle)
    assert deploy(stand, "orders", 1, serviceAccount=SA).status_code == 200
    doc = status(stand, "orders", 1).json()
    assert doc["state"] == "ERROR"
    assert doc["errors"] and apigee.DEPLOY_ERROR_MARKER in doc["errors"][0]["message"]


def test_base_path_conflicts_are_reported_not_rejected(stand: Handle) -> None:
    import_bundle(stand, "orders", make_bundle("orders", "/v1/orders"))
    import_bundle(stand, "orders-v2", make_bundle("orders-v2", "/v1/orders/"))
    deploy(stand, "orders", 1, serviceAccount=SA)
    report = requests.post(
        f"{org(stand)}/environments/test/apis/orders-v2/revisions/1/deployments:generateDeployChangeReport",
        timeout=10,
    ).json()
    (conflict,) = report["routingConflicts"]
    assert conflict["conflictingDeployment"] == {
        "apiProxy": "orders",
        "basepath": "/v1/orders",
        "environment": "test",
        "revision": "1",
    }
    assert conflict["environmentGroup"] and conflict["description"]
    assert report["routingChanges"][0]["toDeployment"]["apiProxy"] == "orders-v2"
    assert "validationErrors" not in report

    assert deploy(stand, "orders-v2", 1, serviceAccount=SA).status_code == 200
    doc = wait_state(stand, "orders-v2", 1)
    assert doc["state"] == "READY"  # conflicts do not make the state ERROR
    assert doc["routeConflicts"][0]["conflictingDeployment"]["apiProxy"] == "orders"
    assert doc["instances"][0]["deployedRoutes"] == []  # the path stays with the earlier deployment
    assert "routeConflicts" not in wait_state(stand, "orders", 1)
    # the same base path in another environment (its own environment group) does not conflict
    assert deploy(stand, "orders-v2", 1, env="prod", serviceAccount=SA).status_code == 200
    assert "routeConflicts" not in wait_state(stand, "orders-v2", 1, env="prod")


def test_change_report_validation_errors_without_override(stand: Handle) -> None:
    import_bundle(stand)
    import_bundle(stand)
    deploy(stand, "orders", 1, serviceAccount=SA)
    url = f"{org(stand)}/environments/test/apis/orders/revisions/2/deployments:generateDeployChangeReport"
    plain = requests.post(url, timeout=10).json()
    assert plain["validationErrors"]["violations"][0]["type"] == "CONFLICTING_DEPLOYMENT"
    overridden = requests.post(url, params={"override": "true"}, timeout=10).json()
    assert "validationErrors" not in overridden
    (change,) = overridden["routingChanges"]
    assert change["fromDeployment"]["revision"] == "1" and change["toDeployment"]["revision"] == "2"


def test_undeploy_and_delete_rules(stand: Handle) -> None:
    import_bundle(stand)
    deploy(stand, "orders", 1, serviceAccount=SA)
    blocked = requests.delete(f"{org(stand)}/apis/orders/revisions/1", timeout=10)
    assert blocked.status_code == 400 and blocked.json()["error"]["status"] == "FAILED_PRECONDITION"
    assert requests.delete(f"{org(stand)}/apis/orders", timeout=10).status_code == 400
    undeployed = requests.delete(
        f"{org(stand)}/environments/test/apis/orders/revisions/1/deployments", timeout=10
    )
    assert undeployed.status_code == 200 and undeployed.json() == {}
    again = requests.delete(f"{org(stand)}/environments/test/apis/orders/revisions/1/deployments", timeout=10)
    assert again.status_code == 404
    assert requests.delete(f"{org(stand)}/apis/orders/revisions/1", timeout=10).json()["revision"] == "1"
    assert requests.get(f"{org(stand)}/apis/orders", timeout=10).json()["revision"] == []
    assert requests.delete(f"{org(stand)}/apis/orders", timeout=10).status_code == 200
    assert requests.get(f"{org(stand)}/apis/orders", timeout=10).status_code == 404


# -- analytics -----------------------------------------------------------------------------------


def _ms(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp() * 1000)


def test_stats_seeding_and_query(stand: Handle) -> None:
    samples = [
        {"environment": "prod", "proxy": "orders", "timestamp": _ms("2025-03-01 10:05"), "metrics": m}
        for m in (
            {"total_response_time": 100, "target_response_time": 80},
            {"total_response_time": 300, "target_response_time": 250},
            {"total_response_time": 200, "target_response_time": 150},
        )
    ] + [
        {
            "environment": "prod",
            "proxy": "orders",
            "timestamp": _ms("2025-03-01 11:30"),
            "metrics": {"total_response_time": 1000},
        },
        {
            "environment": "prod",
            "proxy": "users",
            "timestamp": _ms("2025-03-01 10:10"),
            "metrics": {"total_response_time": 50},
        },
        {
            "environment": "test",
            "proxy": "orders",
            "timestamp": _ms("2025-03-01 10:10"),
            "metrics": {"total_response_time": 9},
        },
        {
            "environment": "prod",
            "proxy": "orders",
            "timestamp": _ms("2025-03-02 10:10"),
            "metrics": {"total_response_time": 7},
        },
    ]
    seeded = requests.post(f"{stand.url}/_standin/apigee/stats", json=samples, timeout=10)
    assert seeded.json() == {"added": 7, "total": 7}
    url = f"{org(stand)}/environments/prod/stats/apiproxy"
    params = {
        "select": "sum(message_count),avg(total_response_time),"
        "p95(total_response_time),max(target_response_time)",
        "timeRange": "03/01/2025 00:00~03/01/2025 23:59",
    }
    doc = requests.get(url, params=params, timeout=10).json()
    (env,) = doc["environments"]
    assert env["name"] == "prod"
    by_proxy = {d["name"]: {m["name"]: m["values"] for m in d["metrics"]} for d in env["dimensions"]}
    assert by_proxy["orders"]["sum(message_count)"] == ["4.0"]
    assert by_proxy["orders"]["avg(total_response_time)"] == ["400.0"]
    assert by_proxy["orders"]["p95(total_response_time)"] == ["1000.0"]
    assert by_proxy["orders"]["max(target_response_time)"] == ["250.0"]
    assert by_proxy["users"]["sum(message_count)"] == ["1.0"]
    assert doc["metaData"]["errors"] == []

    hourly = requests.get(url, params={**params, "timeUnit": "hour"}, timeout=10).json()
    orders = next(d for d in hourly["environments"][0]["dimensions"] if d["name"] == "orders")
    avg = next(m for m in orders["metrics"] if m["name"] == "avg(total_response_time)")
    assert avg["values"] == [
        {"timestamp": _ms("2025-03-01 11:00"), "value": "1000.0"},
        {"timestamp": _ms("2025-03-01 10:00"), "value": "200.0"},
    ]
    totals = requests.get(f"{org(stand)}/environments/prod/stats/", params=params, timeout=10).json()
    assert {m["name"]: m["values"] for m in totals["environments"][0]["metrics"]}["sum(message_count)"] == [
        "5.0"
    ]
    assert requests.get(url, params={"select": "sum(message_count)"}, timeout=10).status_code == 400


# -- faults and stats ----------------------------------------------------------------------------


def test_fault_injection_errors_latency_and_route_filter(stand: Handle) -> None:
    faults = f"{stand.url}/_standin/faults"
    requests.post(faults, json={"error_rate": 1.0, "statuses": [503]}, timeout=10)
    failed = requests.get(f"{org(stand)}/apis", timeout=10)
    assert failed.status_code == 503 and failed.json()["error"]["status"] == "UNAVAILABLE"
    assert requests.get(f"{stand.url}/_standin/health", timeout=10).status_code == 200  # never faulted

    requests.post(faults, json={"error_rate": 1.0, "statuses": [429]}, timeout=10)
    limited = requests.get(f"{org(stand)}/apis", timeout=10)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert limited.json()["error"]["status"] == "RESOURCE_EXHAUSTED"

    requests.post(
        faults,
        json={"error_rate": 1.0, "statuses": [503], "routes": ["apigee.organizations.apis.create"]},
        timeout=10,
    )
    assert import_bundle(stand).status_code == 503
    assert requests.get(f"{org(stand)}/apis", timeout=10).status_code == 200
    requests.post(faults, json={"error_rate": 1.0, "statuses": [503], "routes": ["/deployments"]}, timeout=10)
    assert requests.get(f"{org(stand)}/deployments", timeout=10).status_code == 503
    assert requests.get(org(stand), timeout=10).status_code == 200

    requests.post(faults, json={"latency_ms": 300}, timeout=10)
    started = time.monotonic()
    assert requests.get(org(stand), timeout=10).status_code == 200
    assert time.monotonic() - started >= 0.3

    requests.delete(faults, timeout=10)
    started = time.monotonic()
    assert import_bundle(stand).status_code == 200
    assert time.monotonic() - started < 0.3
    assert requests.post(faults, json={"error_rate": 2}, timeout=10).status_code == 400


def test_faults_after_the_call_took_effect_lose_or_delay_its_answer(stand: Handle) -> None:
    faults = f"{stand.url}/_standin/faults"
    lost = {"error_rate": 1.0, "statuses": [503], "times": 1, "routes": ["apis.create"], "phase": "after"}
    assert requests.post(faults, json=lost, timeout=10).json()["phase"] == "after"
    assert import_bundle(stand).status_code == 503
    # the revision was created all the same, and only that one call failed
    assert requests.get(f"{org(stand)}/apis/orders", timeout=10).json()["revision"] == ["1"]
    assert import_bundle(stand).status_code == 200

    requests.post(faults, json={"latency_ms": 600, "routes": ["apis.create"], "phase": "after"}, timeout=10)
    with pytest.raises(requests.Timeout):
        import_bundle_with_timeout(stand, 0.2)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # committed before the answer was delayed
        if requests.get(f"{org(stand)}/apis/orders", timeout=10).json()["revision"] == ["1", "2", "3"]:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the delayed import did not take effect")

    # a refused call stays refused; a bad phase is a bad request
    requests.post(faults, json={"latency_ms": 1, "routes": ["apis.create"], "phase": "after"}, timeout=10)
    assert import_bundle(stand, name="has space").status_code == 400
    assert requests.post(faults, json={"phase": "during"}, timeout=10).status_code == 400


def import_bundle_with_timeout(handle: Handle, timeout: float) -> requests.Response:
    return requests.post(
        f"{org(handle)}/apis",
        params={"name": "orders", "action": "import"},
        files=as_file(make_bundle()),
        timeout=timeout,
    )


def test_seeded_faults_are_reproducible(stand: Handle) -> None:
    def run() -> list[int]:
        requests.post(
            f"{stand.url}/_standin/faults",
            json={"error_rate": 0.5, "statuses": [503, 429], "seed": 7},
            timeout=10,
        )
        return [requests.get(org(stand), timeout=10).status_code for _ in range(20)]

    first = run()
    assert set(first) == {200, 503, 429}
    assert run() == first


def test_call_stats_by_route_template(stand: Handle) -> None:
    import_bundle(stand)
    requests.post(f"{stand.url}/_standin/stats/reset", timeout=10)
    for _ in range(2):
        requests.get(f"{org(stand)}/apis/orders", timeout=10)
    requests.get(f"{org(stand)}/apis/missing", timeout=10)
    requests.get(f"{org(stand)}/apis", timeout=10)
    requests.get(f"{stand.url}/_standin/health", timeout=10)
    stats = requests.get(f"{stand.url}/_standin/stats", timeout=10).json()
    assert stats["calls"] == {
        "GET /v1/organizations/{organizationsId}/apis/{apisId}": 3,
        "GET /v1/organizations/{organizationsId}/apis": 1,
    }
    assert stats["methods"] == {"apigee.organizations.apis.get": 3, "apigee.organizations.apis.list": 1}
    assert stats["total"] == 4


# -- CLI and state file --------------------------------------------------------------------------


def test_cli_serves_and_persists_state(tmp_path: Path) -> None:
    state = tmp_path / "apigee.json"
    argv = [
        "-m",
        "gatehouse.local.standins.apigee",
        "--state-file",
        str(state),
        "--org",
        "acme",
        "--env",
        "dev",
    ]

    def launch() -> processes.Managed:
        port = processes.free_port()
        return processes.start_python(
            "apigee-standin",
            [*argv, "--port", str(port)],
            port=port,
            log_dir=tmp_path,
            ready_path="/_standin/health",
            timeout=30,
        )

    managed = launch()
    try:
        url = f"{managed.url}/v1/organizations/acme"
        assert requests.get(url, timeout=10).json()["environments"] == ["dev"]
        imported = requests.post(
            f"{url}/apis",
            params={"name": "orders", "action": "import"},
            files=as_file(make_bundle()),
            timeout=10,
        )
        assert imported.json()["revision"] == "1"
    finally:
        processes.stop(managed)
    assert state.exists()
    managed = launch()
    try:
        proxy = requests.get(f"{managed.url}/v1/organizations/acme/apis/orders", timeout=10).json()
        assert proxy["revision"] == ["1"]
    finally:
        processes.stop(managed)
    assert not processes.alive(managed.pid)
