"""The rotation stand-ins (IAM, Secret Manager, Org Policy, Cloud Run jobs CRUD) serve only what
Google's discovery documents define, and answer only with the fields the schemas define."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from test_standins_discovery import _routes

from gatehouse.local.standins import cloudrun, iam, orgpolicy, secretmanager
from gatehouse.local.standins.cloudrun_jobs_crud import JobsCrudMixin
from gatehouse.local.standins.discovery import Discovery
from gatehouse.local.standins.server import Handle, StandIn, serve

STANDINS: list[type[StandIn]] = [iam.Iam, secretmanager.SecretManager, orgpolicy.OrgPolicy, cloudrun.CloudRun]

IAM_METHODS = {
    "iam.projects.serviceAccounts.create",
    "iam.projects.serviceAccounts.get",
    "iam.projects.serviceAccounts.list",
    "iam.projects.serviceAccounts.keys.create",
    "iam.projects.serviceAccounts.keys.list",
    "iam.projects.serviceAccounts.keys.get",
    "iam.projects.serviceAccounts.keys.disable",
    "iam.projects.serviceAccounts.keys.enable",
    "iam.projects.serviceAccounts.keys.delete",
    "iamcredentials.projects.serviceAccounts.generateIdToken",  # ID tokens for spec reads
}
SECRETMANAGER_METHODS = {
    "secretmanager.projects.secrets.create",
    "secretmanager.projects.secrets.get",
    "secretmanager.projects.secrets.list",
    "secretmanager.projects.secrets.patch",
    "secretmanager.projects.secrets.delete",
    "secretmanager.projects.secrets.addVersion",
    "secretmanager.projects.secrets.versions.get",
    "secretmanager.projects.secrets.versions.list",
    "secretmanager.projects.secrets.versions.access",
    "secretmanager.projects.secrets.versions.enable",
    "secretmanager.projects.secrets.versions.disable",
    "secretmanager.projects.secrets.versions.destroy",
}
ORGPOLICY_METHODS = {"orgpolicy.projects.policies.getEffectivePolicy"}
JOBS_CRUD_METHODS = {
    "run.projects.locations.jobs.create",
    "run.projects.locations.jobs.get",
    "run.projects.locations.jobs.list",
    "run.projects.locations.jobs.patch",
}


@pytest.mark.parametrize("cls", STANDINS, ids=lambda c: c.NAME)
def test_every_handler_is_a_discovery_method_with_its_verb(cls: type[StandIn]) -> None:
    standin = cls()
    methods = {}
    for document in (cls.API, *cls.EXTRA_APIS):  # the IAM stand-in also serves IAM Credentials
        methods.update(Discovery(document).methods)
    marked = _routes(cls)
    assert set(standin.handlers) == set(marked)
    for method_id, verb in marked.items():
        assert method_id in methods, method_id
        assert methods[method_id].http_method == verb, method_id
    assert all(path.startswith("/_standin/") for _, path in standin.extra_routes)


def test_implemented_method_sets() -> None:
    assert set(_routes(iam.Iam)) == IAM_METHODS
    assert set(_routes(secretmanager.SecretManager)) == SECRETMANAGER_METHODS
    assert set(_routes(orgpolicy.OrgPolicy)) == ORGPOLICY_METHODS
    assert set(_routes(JobsCrudMixin)) == JOBS_CRUD_METHODS
    assert set(_routes(cloudrun.CloudRun)) >= JOBS_CRUD_METHODS


# -- scripted scenarios: every JSON response uses only schema fields --------------------------------


class Recorder:
    """Calls a stand-in and checks each JSON response against the schema of the method it hit
    (errors against the document's ``google.rpc.Status``: ``Status`` in iam.v1 and
    secretmanager.v1, ``GoogleRpcStatus`` in run.v2; orgpolicy.v2 defines none)."""

    def __init__(self, handle: Handle) -> None:
        self.handle = handle
        self.api: Discovery = handle.standin.api
        self.seen: set[str] = set()
        self.status_schema = next((s for s in ("GoogleRpcStatus", "Status") if s in self.api.schemas), None)

    def __call__(self, verb: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = requests.request(verb, self.handle.url + path, timeout=10, **kwargs)
        assert response.status_code == expect, response.text
        method, _ = self.handle.standin.match_route(verb, urlsplit(response.url).path) or (None, None)
        assert method is not None
        self.seen.add(method.id)
        doc = response.json()
        if response.ok:
            schema = self.handle.standin.response_schema(method)
            assert self.handle.standin.api_of(method.id).check_fields(schema, doc) == [], method.id
        else:
            error = doc["error"]
            assert isinstance(error["code"], int) and isinstance(error["message"], str)
            if self.status_schema:
                status = {k: v for k, v in error.items() if k != "status"}
                assert self.api.check_fields(self.status_schema, status) == []
        return doc


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Handle]]:
    iam_handle = iam.start(check_fields=True)
    handles_ = {
        "iam": iam_handle,
        "secretmanager": secretmanager.start(check_fields=True, project_numbers={"app-proj": "123456789012"}),
        "orgpolicy": orgpolicy.start(iam=iam_handle.standin, check_fields=True),
        "cloudrun": serve(cloudrun.CloudRun(check_fields=True)),
    }
    yield handles_
    for handle in handles_.values():
        handle.stop()


def test_iam_scenario_uses_only_schema_fields(servers: dict[str, Handle]) -> None:
    call = Recorder(servers["iam"])
    email = "app-one@app-proj.iam.gserviceaccount.com"
    account = f"/v1/projects/app-proj/serviceAccounts/{email}"
    wildcard = f"/v1/projects/-/serviceAccounts/{email}"
    call("POST", "/v1/projects/app-proj/serviceAccounts", json={"accountId": "app-one"})
    call("POST", "/v1/projects/app-proj/serviceAccounts", 409, json={"accountId": "app-one"})
    call("GET", wildcard)
    call("GET", "/v1/projects/app-proj/serviceAccounts", params={"pageSize": "1"})
    names = [call("POST", f"{wildcard}/keys", json={})["name"] for _ in range(10)]
    call("POST", f"{wildcard}/keys", 400, json={})  # Precondition check failed.
    call("GET", f"{wildcard}/keys", params={"keyTypes": "USER_MANAGED"})
    call("GET", f"{account}/keys")
    call("GET", "/v1/" + names[0], params={"publicKeyType": "TYPE_X509_PEM_FILE"})
    call("GET", "/v1/" + names[0], params={"publicKeyType": "TYPE_RAW_PUBLIC_KEY"})
    call("POST", "/v1/" + names[0] + ":disable", json={})
    call("POST", "/v1/" + names[0] + ":enable", json={})
    call("DELETE", "/v1/" + names[0])
    call("DELETE", "/v1/" + names[0], 404)
    call("GET", f"{wildcard}/keys/{'0' * 40}", 403)
    requests.post(
        servers["iam"].url + "/_standin/iam/policy",
        json={"project": "app-proj", "creation_blocked_by": "iam.disableServiceAccountKeyCreation"},
        timeout=10,
    )
    call("POST", f"{wildcard}/keys", 400, json={})  # blocked, with a PreconditionFailure detail
    token = call(
        "POST", f"{wildcard}:generateIdToken", json={"audience": "https://a.run.app", "includeEmail": True}
    )
    assert token["token"].count(".") == 2
    call("POST", f"{account}:generateIdToken", 400, json={"audience": "https://a.run.app"})  # '-' required
    call("POST", f"{wildcard}:generateIdToken", 400, json={})  # audience required
    assert call.seen == IAM_METHODS


def test_secretmanager_scenario_uses_only_schema_fields(servers: dict[str, Handle]) -> None:
    call = Recorder(servers["secretmanager"])
    name = "/v1/projects/app-proj/secrets/token"
    body = {"replication": {"automatic": {}}, "labels": {"gatehouse-rotate": "generated"}}
    created = call("POST", "/v1/projects/app-proj/secrets", params={"secretId": "token"}, json=body)
    call("POST", "/v1/projects/app-proj/secrets", 409, params={"secretId": "token"}, json=body)
    call("GET", name)
    call(
        "GET",
        "/v1/projects/app-proj/secrets",
        params={"filter": "labels.gatehouse-rotate:*", "pageSize": "1"},
    )
    data = base64.b64encode(b"value").decode()
    version = call(
        "POST", f"{name}:addVersion", json={"payload": {"data": data, "dataCrc32c": "1"}}, expect=400
    )
    version = call("POST", f"{name}:addVersion", json={"payload": {"data": data}})
    call(
        "PATCH",
        name,
        params={"updateMask": "versionAliases,annotations"},
        json={"etag": created["etag"], "versionAliases": {"current": "1"}, "annotations": {"a": "b"}},
    )
    call("PATCH", name, 400, params={"updateMask": "annotations"}, json={"etag": created["etag"]})
    call("GET", f"{name}/versions/current")
    call("GET", f"{name}/versions", params={"filter": "state:ENABLED"})
    call("GET", f"{name}/versions/latest:access")
    call("POST", "/v1/" + version["name"] + ":disable", json={"etag": version["etag"]})
    call("GET", f"{name}/versions/1:access", 400)
    call("POST", "/v1/" + version["name"] + ":enable", json={})
    call("POST", "/v1/" + version["name"] + ":destroy", json={})
    call("POST", "/v1/" + version["name"] + ":enable", 400, json={})
    call("DELETE", name, 400, params={"etag": created["etag"]})
    call("DELETE", name)
    call("GET", name, 404)
    assert call.seen == SECRETMANAGER_METHODS


def test_orgpolicy_scenario_uses_only_schema_fields(servers: dict[str, Handle]) -> None:
    call = Recorder(servers["orgpolicy"])
    servers["iam"].standin.set_policy("other-proj", None, 24)  # type: ignore[attr-defined]
    for constraint in (
        "iam.disableServiceAccountKeyCreation",
        "iam.managed.disableServiceAccountKeyCreation",
        "iam.serviceAccountKeyExpiryHours",
    ):
        for project in ("other-proj", "unset-proj"):
            call("GET", f"/v2/projects/{project}/policies/{constraint}:getEffectivePolicy")
    assert call.seen == ORGPOLICY_METHODS


def test_cloudrun_jobs_scenario_uses_only_schema_fields(servers: dict[str, Handle]) -> None:
    call = Recorder(servers["cloudrun"])
    parent = "/v2/projects/app-proj/locations/europe-west1"
    job = {
        "template": {
            "template": {
                "containers": [
                    {
                        "image": "europe-docker.pkg.dev/app-proj/jobs/nightly:1",
                        "volumeMounts": [{"name": "sa", "mountPath": "/secrets"}],
                    }
                ],
                "volumes": [
                    {
                        "name": "sa",
                        "secret": {"secret": "token", "items": [{"path": "key.json", "version": "latest"}]},
                    }
                ],
            }
        }
    }
    created = call("POST", f"{parent}/jobs", params={"jobId": "nightly"}, json=job)
    assert created["done"] and created["response"]["@type"] == "type.googleapis.com/google.cloud.run.v2.Job"
    call("POST", f"{parent}/jobs", 409, params={"jobId": "nightly"}, json=job)
    call("POST", f"{parent}/jobs", 400, params={"jobId": "x"}, json={"template": {}})
    current = call("GET", f"{parent}/jobs/nightly")
    assert current["generation"] == "1"
    call("GET", f"{parent}/jobs", params={"pageSize": "1"})
    updated = call("PATCH", f"{parent}/jobs/nightly", json={**current, "labels": {"team": "a"}})
    assert updated["response"]["generation"] == "2"
    call("PATCH", f"{parent}/jobs/nightly", 409, json=current)  # stale etag
    call("GET", f"{parent}/jobs/missing", 404)
    call("GET", "/v2/projects/app-proj/locations/-/jobs", 400)
    assert call.seen == JOBS_CRUD_METHODS
