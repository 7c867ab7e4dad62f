"""The stand-ins serve only what Google's discovery documents define, with only the fields the
documents' schemas define."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from gatehouse.local.standins import apigee, cloudrun
from gatehouse.local.standins.discovery import Discovery, DiscoveryError
from gatehouse.local.standins.server import Handle, StandIn, handles

STANDINS: list[type[StandIn]] = [apigee.Apigee, cloudrun.CloudRun]

APIGEE_METHODS = {
    "apigee.organizations.get",
    "apigee.organizations.environments.get",
    "apigee.organizations.apis.create",
    "apigee.organizations.apis.get",
    "apigee.organizations.apis.list",
    "apigee.organizations.apis.patch",
    "apigee.organizations.apis.delete",
    "apigee.organizations.apis.revisions.get",
    "apigee.organizations.apis.revisions.delete",
    "apigee.organizations.apis.deployments.list",
    "apigee.organizations.apis.revisions.deployments.list",
    "apigee.organizations.deployments.list",
    "apigee.organizations.environments.deployments.list",
    "apigee.organizations.environments.apis.deployments.list",
    "apigee.organizations.environments.apis.revisions.deploy",
    "apigee.organizations.environments.apis.revisions.getDeployments",
    "apigee.organizations.environments.apis.revisions.undeploy",
    "apigee.organizations.environments.apis.revisions.deployments.generateDeployChangeReport",
    "apigee.organizations.environments.stats.get",
    "apigee.organizations.apiproducts.create",
    "apigee.organizations.apiproducts.get",
    "apigee.organizations.apiproducts.list",
    "apigee.organizations.apiproducts.update",
    "apigee.organizations.apiproducts.delete",
    "apigee.organizations.apiproducts.attributes",
    "apigee.organizations.apiproducts.attributes.list",
    "apigee.organizations.apiproducts.attributes.get",
    "apigee.organizations.apiproducts.attributes.updateApiProductAttribute",
    "apigee.organizations.apiproducts.attributes.delete",
}
CLOUDRUN_METHODS = {
    "run.projects.locations.services.create",
    "run.projects.locations.services.get",
    "run.projects.locations.services.list",
    "run.projects.locations.services.patch",
    "run.projects.locations.services.delete",
    "run.projects.locations.services.getIamPolicy",
    "run.projects.locations.services.setIamPolicy",
    "run.projects.locations.services.testIamPermissions",
    "run.projects.locations.operations.get",
    "run.projects.locations.operations.list",
    "run.projects.locations.operations.wait",
    "run.projects.locations.operations.delete",
    "run.projects.locations.jobs.run",
    "run.projects.locations.jobs.executions.get",
    "run.projects.locations.jobs.create",
    "run.projects.locations.jobs.get",
    "run.projects.locations.jobs.list",
    "run.projects.locations.jobs.patch",
}


def _routes(cls: type[StandIn]) -> dict[str, str]:
    """method id -> verb, from the class's handler marks."""
    marks = (getattr(getattr(cls, attr), "_standin_route", None) for attr in dir(cls))
    return {mark[1]: mark[0] for mark in marks if mark}


def test_http_body_methods_declare_their_json_schema() -> None:
    standin = apigee.Apigee()
    method = standin.api.method("apigee.organizations.apis.revisions.get")
    assert method.response == "GoogleApiHttpBody"  # JSON or the zip, per ?format=
    assert standin.response_schema(method) == "GoogleCloudApigeeV1ApiProxyRevision"


# -- the registration table ------------------------------------------------------------------------


@pytest.mark.parametrize("cls", STANDINS, ids=lambda c: c.NAME)
def test_every_handler_is_a_discovery_method_with_its_verb(cls: type[StandIn]) -> None:
    standin = cls()
    api = Discovery(cls.API)
    marked = _routes(cls)
    assert set(standin.handlers) == set(marked)  # nothing registered besides the marked handlers
    for method_id, verb in marked.items():
        assert method_id in api.methods, method_id
        assert api.methods[method_id].http_method == verb, method_id
    # everything else a stand-in serves is a test hook under /_standin/
    assert all(path.startswith("/_standin/") for _, path in standin.extra_routes)


def test_implemented_method_sets() -> None:
    assert set(_routes(apigee.Apigee)) == APIGEE_METHODS
    assert set(_routes(cloudrun.CloudRun)) == CLOUDRUN_METHODS


def test_registration_rejects_methods_outside_the_document() -> None:
    class Invented(apigee.Apigee):
        @handles("GET", "apigee.organizations.environments.list")  # not in apigee.v1
        def list_envs(self, call: object) -> dict[str, Any]:
            return {}

    class WrongVerb(apigee.Apigee):
        @handles("POST", "apigee.organizations.apis.get")
        def get_by_post(self, call: object) -> dict[str, Any]:
            return {}

    with pytest.raises(DiscoveryError, match=r"environments\.list"):
        Invented()
    with pytest.raises(ValueError, match="is GET"):
        WrongVerb()
    with pytest.raises(DiscoveryError):
        Discovery("nonexistent.v9")


# -- routing --------------------------------------------------------------------------------------


def test_matching_reserved_expansion_and_custom_verbs() -> None:
    api, run = Discovery("apigee.v1"), Discovery("run.v2")
    method, params = api.match("GET", "/v1/organizations/o/apis/orders") or (None, {})
    assert method and method.id == "apigee.organizations.apis.get"
    assert params == {"name": "organizations/o/apis/orders"}
    assert method.route == "/v1/organizations/{organizationsId}/apis/{apisId}"
    report = api.match(
        "POST", "/v1/organizations/o/environments/e/apis/a/revisions/3/deployments:generateDeployChangeReport"
    )
    assert report and report[0].id.endswith("revisions.deployments.generateDeployChangeReport")
    assert report[1] == {"name": "organizations/o/environments/e/apis/a/revisions/3"}
    stats = api.match("GET", "/v1/organizations/o/environments/e/stats/apiproxy,request_verb")
    assert stats and stats[1]["name"].endswith("/stats/apiproxy,request_verb")
    iam = run.match("POST", "/v2/projects/p/locations/r/services/s:setIamPolicy")
    assert iam and iam[0].id == "run.projects.locations.services.setIamPolicy"
    assert iam[1] == {"resource": "projects/p/locations/r/services/s"}
    get = run.match("GET", "/v2/projects/p/locations/r/services/s:getIamPolicy")
    assert get and get[0].id.endswith("getIamPolicy")  # the custom verb beats the plain get
    assert api.match("GET", "/v1/organizations/o/environments") is None
    assert api.match("PUT", "/v1/organizations/o/apis/orders") is None


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Handle]]:
    # a job the stand-in runs as `python -m this`: a module that exits 0 at once
    handles_ = {
        "apigee": apigee.start(deploy_delay_ms=100),
        "cloudrun": cloudrun.start(jobs={"noop": "this"}),
    }
    yield handles_
    for handle in handles_.values():
        handle.stop()


@pytest.mark.parametrize(
    ("server", "verb", "path", "why"),
    [
        ("apigee", "GET", "/v1/organizations/local-org/environments", "no such route"),
        ("apigee", "PUT", "/v1/organizations/local-org/apis/orders", "no such route"),
        ("apigee", "GET", "/v1/organizations/local-org/apis/orders/keyvaluemaps/kvm", "not implemented"),
        ("apigee", "GET", "/v2/organizations/local-org", "no such route"),
        ("apigee", "GET", "/", "no such route"),
        ("cloudrun", "GET", "/v2/projects/p/locations/r/jobs/j/executions", "not implemented"),
        ("cloudrun", "GET", "/v1/projects/p/locations/r/services", "no such route"),
        ("cloudrun", "POST", "/v2/projects/p/locations/r/services/s:run", "no such route"),
        ("cloudrun", "GET", "/_standin/nope", "no such stand-in route"),
    ],
)
def test_routes_outside_the_document_are_404(
    servers: dict[str, Handle], server: str, verb: str, path: str, why: str
) -> None:
    response = requests.request(verb, servers[server].url + path, timeout=10)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == 404 and error["status"] == "NOT_FOUND" and why in error["message"]


def test_unknown_query_parameters_are_rejected(servers: dict[str, Handle]) -> None:
    url = servers["apigee"].url + "/v1/organizations/local-org/apis"
    assert requests.get(url, params={"includeRevisions": "true", "prettyPrint": "false"}, timeout=10).ok
    rejected = requests.get(url, params={"includeRevision": "true"}, timeout=10)
    assert (
        rejected.status_code == 400 and "Cannot bind query parameter" in rejected.json()["error"]["message"]
    )


# -- field checking ------------------------------------------------------------------------------


def test_check_fields_and_prune() -> None:
    run = Discovery("run.v2")
    good = {
        "name": "projects/p/locations/r/services/s",
        "generation": "2",
        "labels": {"a": "b"},
        "ingress": "INGRESS_TRAFFIC_ALL",
        "template": {"containers": [{"image": "i", "env": [{"name": "A", "value": "1"}]}]},
    }
    assert run.check_fields("GoogleCloudRunV2Service", good) == []
    bad = {
        **good,
        "generation": 2,
        "ingress": "ALL",
        "status": {},
        "template": {"containers": [{"img": "i"}]},
    }
    assert sorted(run.check_fields("GoogleCloudRunV2Service", bad)) == [
        "generation: expected string (int64), got int",
        "ingress: 'ALL' is not one of the enum values",
        "status: not a field of the schema",
        "template.containers[0].img: not a field of the schema",
    ]
    assert run.prune("GoogleCloudRunV2Service", {**good, "status": {}, "extra": 1}) == good
    operation = {"name": "o", "done": True, "response": {"@type": cloudrun.SERVICE_TYPE, **good, "bogus": 1}}
    assert run.check_fields("GoogleLongrunningOperation", operation) == [
        "response.bogus: not a field of the schema"
    ]
    untyped = {"name": "o", "metadata": {"anything": 1}}
    assert run.check_fields("GoogleLongrunningOperation", untyped) == []
    assert run.strip_read_only("GoogleCloudRunV2Service", {"uid": "u", "labels": {}}) == {"labels": {}}


# -- scripted scenarios: every JSON response uses only schema fields --------------------------------


class Recorder:
    """Calls a stand-in and checks each JSON response against the schema of the method it hit."""

    def __init__(self, handle: Handle) -> None:
        self.handle = handle
        self.api: Discovery = handle.standin.api
        self.seen: set[str] = set()

    def __call__(self, verb: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = requests.request(verb, self.handle.url + path, timeout=10, **kwargs)
        assert response.status_code == expect, response.text
        method, _ = self.api.match(verb, urlsplit(response.url).path) or (None, None)
        assert method is not None
        self.seen.add(method.id)
        if not response.headers["Content-Type"].startswith("application/json"):
            return response.content
        doc = response.json()
        if response.ok:
            schema = self.handle.standin.response_schema(method)
            assert self.api.check_fields(schema, doc) == [], method.id
        else:
            status = {k: v for k, v in doc["error"].items() if k != "status"}
            assert self.api.check_fields("GoogleRpcStatus", status) == []
        return doc


def _bundle(name: str, base_path: str, description: str = "") -> bytes:
    files = {
        f"apiproxy/{name}.xml": (
            f'<APIProxy name="{name}"><Description>{description}</Description></APIProxy>'
        ),
        "apiproxy/proxies/default.xml": (
            f'<ProxyEndpoint name="default"><HTTPProxyConnection><BasePath>{base_path}</BasePath>'
            '</HTTPProxyConnection><RouteRule name="default"><TargetEndpoint>default</TargetEndpoint>'
            "</RouteRule></ProxyEndpoint>"
        ),
        "apiproxy/targets/default.xml": (
            '<TargetEndpoint name="default"><HTTPTargetConnection><Authentication><GoogleIDToken>'
            "<Audience>https://x-uc.a.run.app</Audience></GoogleIDToken></Authentication>"
            "<URL>https://x-uc.a.run.app</URL></HTTPTargetConnection></TargetEndpoint>"
        ),
        "apiproxy/resources/jsc/util.js": "var x = 1;",
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return buf.getvalue()


def test_apigee_scenario_uses_only_schema_fields(servers: dict[str, Handle]) -> None:
    call = Recorder(servers["apigee"])
    org = "/v1/organizations/local-org"
    env = f"{org}/environments/test"
    sa = {"serviceAccount": "proxy@my-proj.iam.gserviceaccount.com"}
    call("GET", org)
    call("GET", env)
    for name, path, desc in (
        ("orders", "/v1/orders", ""),
        ("orders", "/v1/orders", ""),
        ("shadow", "/v1/orders", ""),
        ("broken", "/v1/broken", apigee.DEPLOY_ERROR_MARKER),
    ):
        call(
            "POST",
            f"{org}/apis",
            params={"name": name, "action": "import"},
            files={"file": ("bundle.zip", _bundle(name, path, desc), "application/zip")},
        )
    call(
        "POST",
        f"{org}/apis",
        400,
        params={"name": "x", "action": "import"},
        files={"file": ("bundle.zip", b"zip?", "application/zip")},
    )
    call("GET", f"{org}/apis/orders")
    call("GET", f"{org}/apis", params={"includeRevisions": "true", "includeMetaData": "true"})
    call(
        "PATCH", f"{org}/apis/orders", params={"updateMask": "labels"}, json={"labels": {"gatehouse": "yes"}}
    )
    call("GET", f"{org}/apis/orders/revisions/1")
    assert call("GET", f"{org}/apis/orders/revisions/1", params={"format": "bundle"}).startswith(b"PK")
    call("POST", f"{env}/apis/orders/revisions/1/deployments", 400)  # MISSING_SERVICE_ACCOUNT
    call("POST", f"{env}/apis/orders/revisions/1/deployments", params=sa)
    call("POST", f"{env}/apis/orders/revisions/1/deployments", 400, params=sa)  # already deployed
    call("POST", f"{env}/apis/orders/revisions/2/deployments", 400, params=sa)  # CONFLICTING_DEPLOYMENT
    call("GET", f"{env}/apis/orders/revisions/1/deployments")  # PROGRESSING
    time.sleep(0.15)
    call("GET", f"{env}/apis/orders/revisions/1/deployments")  # READY
    call("POST", f"{env}/apis/orders/revisions/2/deployments:generateDeployChangeReport")
    call("POST", f"{env}/apis/shadow/revisions/1/deployments:generateDeployChangeReport")
    call("POST", f"{env}/apis/shadow/revisions/1/deployments", params=sa)
    call("POST", f"{env}/apis/broken/revisions/1/deployments", params=sa)
    time.sleep(0.15)
    assert call("GET", f"{env}/apis/shadow/revisions/1/deployments")["routeConflicts"]
    assert call("GET", f"{env}/apis/broken/revisions/1/deployments")["state"] == "ERROR"
    call("GET", f"{org}/deployments")
    call("GET", f"{env}/deployments")
    call("GET", f"{org}/apis/orders/deployments")
    call("GET", f"{org}/apis/orders/revisions/1/deployments")
    call("GET", f"{env}/apis/orders/deployments")
    call("DELETE", f"{org}/apis/orders/revisions/1", 400)
    call("DELETE", f"{env}/apis/orders/revisions/1/deployments")
    call("DELETE", f"{org}/apis/orders/revisions/1")
    requests.post(
        servers["apigee"].url + "/_standin/apigee/stats",
        json=[{"environment": "test", "proxy": "orders", "metrics": {"total_response_time": 12}}],
        timeout=10,
    )
    window = {"timeRange": "01/01/2000 00:00~01/01/2100 00:00"}
    call("GET", f"{env}/stats/apiproxy", params={"select": "avg(total_response_time)", **window})
    call("GET", f"{env}/stats/apiproxy", params={"select": "sum(message_count)", "timeUnit": "day", **window})
    call("GET", f"{env}/stats/", params={"select": "p99(total_response_time)", **window})
    call("DELETE", f"{org}/apis/shadow", 400)
    call("DELETE", f"{env}/apis/shadow/revisions/1/deployments")
    call("DELETE", f"{org}/apis/shadow")
    product = {
        "name": "payments",
        "displayName": "Payments",
        "approvalType": "manual",
        "environments": ["test"],
        "attributes": [{"name": "access", "value": "internal"}],
        "operationGroup": {
            "operationConfigs": [
                {
                    "apiSource": "orders",
                    "operations": [{"resource": "/**", "methods": ["GET"]}],
                    "quota": {"limit": "100", "interval": "1", "timeUnit": "hour"},
                }
            ],
            "operationConfigType": "proxy",
        },
    }
    call("POST", f"{org}/apiproducts", json=product)
    call("POST", f"{org}/apiproducts", 409, json=product)
    call("GET", f"{org}/apiproducts/payments")
    call("GET", f"{org}/apiproducts", params={"expand": "true", "count": "10", "startKey": "a"})
    call("PUT", f"{org}/apiproducts/payments", json={**product, "description": "money"})
    call("GET", f"{org}/apiproducts/payments/attributes")
    call("POST", f"{org}/apiproducts/payments/attributes", json={"attribute": [{"name": "a", "value": "1"}]})
    call("POST", f"{org}/apiproducts/payments/attributes/b", json={"name": "b", "value": "2"})
    call("GET", f"{org}/apiproducts/payments/attributes/b")
    call("DELETE", f"{org}/apiproducts/payments/attributes/b")
    call("DELETE", f"{org}/apiproducts/payments")
    call("GET", f"{org}/apiproducts/payments", 404)
    assert call.seen == APIGEE_METHODS


def test_cloudrun_scenario_uses_only_schema_fields(servers: dict[str, Handle]) -> None:
    call = Recorder(servers["cloudrun"])
    parent = "/v2/projects/my-proj/locations/us-central1"
    name = f"{parent}/services/orders"
    body = {
        "labels": {"team": "a"},
        "template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello"}]},
        "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100, "tag": "live"}],
    }
    created = call("POST", f"{parent}/services", params={"serviceId": "orders"}, json=body)
    assert created["done"] and created["response"]["@type"] == cloudrun.SERVICE_TYPE
    call("POST", f"{parent}/services", 409, params={"serviceId": "orders"}, json=body)
    call("POST", f"{parent}/services", 400, params={"serviceId": "x"}, json={**body, "status": {}})
    service = call("GET", name)
    call("GET", f"{parent}/services", params={"pageSize": "1"})
    call("PATCH", name, json={**service, "labels": {"team": "b"}})
    call("PATCH", name, params={"updateMask": "labels"}, json={"labels": {"team": "c"}})
    call("PATCH", name, 409, json=service)  # stale etag
    policy = call("GET", f"{name}:getIamPolicy")
    binding = {"role": "roles/run.invoker", "members": ["serviceAccount:p@my-proj.iam.gserviceaccount.com"]}
    call("POST", f"{name}:setIamPolicy", json={"policy": {**policy, "bindings": [binding]}})
    call("POST", f"{name}:setIamPolicy", 409, json={"policy": {**policy, "bindings": [binding]}})
    call("POST", f"{name}:testIamPermissions", json={"permissions": ["run.services.get"]})
    deleted = call("DELETE", name)
    call("GET", f"{parent}/services", params={"showDeleted": "true"})
    operation = "/v2/" + deleted["name"]
    call("GET", operation)
    call("GET", f"{parent}/operations")
    call("POST", f"{operation}:wait", json={})
    call("DELETE", operation)
    call("GET", operation, 404)
    job = {"template": {"template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/job"}]}}}
    created_job = call("POST", f"{parent}/jobs", params={"jobId": "noop"}, json=job)
    assert created_job["done"]
    stored = call("GET", f"{parent}/jobs/noop")
    call("GET", f"{parent}/jobs", params={"pageSize": "10"})
    call("PATCH", f"{parent}/jobs/noop", json={**stored, "labels": {"team": "a"}})
    started = call("POST", f"{parent}/jobs/noop:run", json={"overrides": {"taskCount": 1}})
    assert started["metadata"]["@type"] == "type.googleapis.com/google.cloud.run.v2.Execution"
    call("GET", "/v2/" + started["metadata"]["name"])
    call("POST", f"{parent}/jobs/missing:run", 404, json={})
    assert call.seen == CLOUDRUN_METHODS
