"""Apigee management API v1 over google-auth's AuthorizedSession.

No client library uploads a proxy bundle (the discovery entry for ``apis.create`` has no media
upload), so this adapter speaks REST directly: the zip goes up as ``multipart/form-data`` in the
form field ``file``, as the discovery document describes (and apigeecli does). Every call is rate
limited (Apigee allows 6,000 management calls a minute per organization, shared by every instance)
and retried on transient errors only; an import, which creates a revision each time it lands, only
on 429 (the caller looks for the revision after a lost answer; see the registration executor).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import requests
from google.auth.credentials import Credentials

from gatehouse.adapters.http import GoogleRest, RateLimiter, json_or_empty
from gatehouse.errors import NotFoundError, PermanentError
from gatehouse.ports import ChangeReport, Deployment, DeploymentStatus, ProxyInfo, RouteConflict


def _revision(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _proxy(doc: Mapping[str, Any]) -> ProxyInfo:
    revisions = tuple(sorted(r for r in (_revision(v) for v in doc.get("revision") or []) if r is not None))
    labels = doc.get("labels") or {}
    return ProxyInfo(name=str(doc.get("name", "")), labels=dict(labels), revisions=revisions)


def _deployment(doc: Mapping[str, Any]) -> Deployment | None:
    revision = _revision(doc.get("revision"))
    if revision is None:
        return None
    return Deployment(
        environment=str(doc.get("environment", "")), proxy=str(doc.get("apiProxy", "")), revision=revision
    )


def _conflicts(items: object, own_proxy: str) -> tuple[RouteConflict, ...]:
    found = []
    for item in items if isinstance(items, list) else []:
        other = item.get("conflictingDeployment") or {} if isinstance(item, dict) else {}
        proxy = str(other.get("apiProxy", ""))
        if proxy and proxy.rsplit("/", 1)[-1] == own_proxy:
            continue  # another revision of the same proxy: replaced by override, not a conflict
        found.append(
            RouteConflict(
                other_proxy=proxy.rsplit("/", 1)[-1] or "unknown",
                base_path=str(other.get("basepath", "")),
                environment=str(other.get("environment", "")),
                description=str(item.get("description", "")),
            )
        )
    return tuple(found)


class ApigeeClient:
    """The ``gatehouse.ports.ApigeeApi`` of one organization."""

    def __init__(
        self,
        org: str,
        *,
        endpoint: str = "https://apigee.googleapis.com",
        credentials: Credentials | None = None,
        anonymous: bool = False,
        calls_per_minute: int = 1200,
        retry_attempts: int = 5,
        retry_max_wait: float = 20.0,
        timeout: float = 30.0,
    ) -> None:
        if not org:
            raise PermanentError("no Apigee organization configured (GATEHOUSE_APIGEE_ORG)")
        self.org = org
        self.http = GoogleRest(
            f"{endpoint.rstrip('/')}/v1/organizations/{quote(org, safe='')}",
            credentials=credentials,
            anonymous=anonymous,
            limiter=RateLimiter(calls_per_minute),
            retry_attempts=retry_attempts,
            retry_max_wait=retry_max_wait,
            timeout=timeout,
        )

    # -- plumbing -----------------------------------------------------------------------------

    @property
    def limiter(self) -> RateLimiter | None:
        """The management-API budget of this process (analytics keeps a separate one)."""
        return self.http.limiter

    def _request(self, method: str, path: str, what: str, **kwargs: Any) -> requests.Response:
        return self.http.response(method, path, what, **kwargs)

    @staticmethod
    def _seg(value: str | int) -> str:
        return quote(str(value), safe="")

    # -- proxies ------------------------------------------------------------------------------

    def get_proxy(self, name: str) -> ProxyInfo | None:
        try:
            doc = json_or_empty(self._request("GET", f"/apis/{self._seg(name)}", f"get proxy {name}"))
        except NotFoundError:
            return None
        return _proxy(doc)

    def list_proxies(self) -> list[ProxyInfo]:
        doc = json_or_empty(
            self._request(
                "GET", "/apis", "list proxies", params={"includeRevisions": "true", "includeMetaData": "true"}
            )
        )
        return [_proxy(p) for p in doc.get("proxies") or [] if isinstance(p, dict)]

    def import_bundle(self, name: str, zip_bytes: bytes) -> int:
        """Import ``zip_bytes`` as a new revision of ``name``. Not retried after a 5xx or a timeout:
        the revision may exist (each landed import makes one), so that surfaces as TransientError."""
        response = self._request(
            "POST",
            "/apis",
            f"import bundle {name}",
            idempotent=False,
            params={"name": name, "action": "import"},
            files={"file": (f"{name}.zip", zip_bytes, "application/zip")},
        )
        revision = _revision(json_or_empty(response).get("revision"))
        if revision is None:
            raise PermanentError(f"import of {name} returned no revision")
        return revision

    def set_labels(self, name: str, labels: Mapping[str, str]) -> None:
        self._request(
            "PATCH",
            f"/apis/{self._seg(name)}",
            f"label proxy {name}",
            params={"updateMask": "labels"},
            json={"labels": dict(labels)},
        )

    def delete_revision(self, name: str, revision: int) -> None:
        with contextlib.suppress(NotFoundError):  # already gone: the goal is reached
            self._request(
                "DELETE",
                f"/apis/{self._seg(name)}/revisions/{revision}",
                f"delete revision {name} r{revision}",
            )

    def revision_description(self, name: str, revision: int) -> str:
        doc = json_or_empty(
            self._request(
                "GET", f"/apis/{self._seg(name)}/revisions/{revision}", f"get revision {name} r{revision}"
            )
        )
        return str(doc.get("description") or "")

    # -- API products -----------------------------------------------------------------------------

    def get_product(self, name: str) -> dict[str, Any] | None:
        try:
            doc = json_or_empty(
                self._request("GET", f"/apiproducts/{self._seg(name)}", f"get API product {name}")
            )
        except NotFoundError:
            return None
        return dict(doc)

    def create_product(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Not retried after a 5xx or a timeout: a landed create answers 409 to its retry, which
        would read as someone else's product (the caller plans again from a fresh read instead)."""
        name = str(body.get("name", ""))
        response = self._request(
            "POST", "/apiproducts", f"create API product {name}", idempotent=False, json=dict(body)
        )
        return dict(json_or_empty(response))

    def update_product(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        # PUT replaces the whole product: idempotent, so retried like a read
        response = self._request(
            "PUT", f"/apiproducts/{self._seg(name)}", f"update API product {name}", json=dict(body)
        )
        return dict(json_or_empty(response))

    def delete_product(self, name: str) -> None:
        with contextlib.suppress(NotFoundError):  # already gone: the goal is reached
            self._request("DELETE", f"/apiproducts/{self._seg(name)}", f"delete API product {name}")

    def list_products(self, *, page_size: int = 1000) -> list[dict[str, Any]]:
        """Every API product, expanded, page by page (``startKey`` names the first product of a
        page, inclusive, so each later page repeats the last name of the previous one)."""
        found: list[dict[str, Any]] = []
        start = ""
        while True:
            params = {"expand": "true", "count": str(page_size)}
            if start:
                params["startKey"] = start
            doc = json_or_empty(self._request("GET", "/apiproducts", "list API products", params=params))
            page = [p for p in doc.get("apiProduct") or [] if isinstance(p, dict)]
            fresh = [p for p in page if not (start and p.get("name") == start)]
            found += fresh
            if len(page) < page_size or not fresh:
                return found
            start = str(page[-1].get("name", ""))

    # -- deployments --------------------------------------------------------------------------

    def list_proxy_deployments(self, name: str) -> list[Deployment]:
        try:
            doc = json_or_empty(
                self._request("GET", f"/apis/{self._seg(name)}/deployments", f"list deployments of {name}")
            )
        except NotFoundError:
            return []
        return [d for d in (_deployment(x) for x in doc.get("deployments") or []) if d]

    def list_org_deployments(self) -> list[Deployment]:
        doc = json_or_empty(self._request("GET", "/deployments", "list organization deployments"))
        return [d for d in (_deployment(x) for x in doc.get("deployments") or []) if d]

    def _revision_path(self, environment: str, name: str, revision: int) -> str:
        return (
            f"/environments/{self._seg(environment)}/apis/{self._seg(name)}/revisions/{revision}/deployments"
        )

    def change_report(self, environment: str, name: str, revision: int) -> ChangeReport:
        doc = json_or_empty(
            self._request(
                "POST",
                self._revision_path(environment, name, revision) + ":generateDeployChangeReport",
                f"deploy change report {name} r{revision} in {environment}",
                params={"override": "true"},
            )
        )
        violations = (doc.get("validationErrors") or {}).get("violations") or []
        return ChangeReport(
            conflicts=_conflicts(doc.get("routingConflicts"), name),
            validation_errors=tuple(str(v.get("description", v)) for v in violations if isinstance(v, dict)),
        )

    def deploy(self, environment: str, name: str, revision: int, *, service_account: str) -> None:
        params = {"override": "true", "sequencedRollout": "true"}
        if service_account:
            params["serviceAccount"] = service_account
        try:
            self._request(
                "POST",
                self._revision_path(environment, name, revision),
                f"deploy {name} r{revision} to {environment}",
                params=params,
            )
        except PermanentError as exc:
            # Deploy is not idempotent: a retried call whose first attempt landed is refused (400
            # FAILED_PRECONDITION). Whatever the refusal says, the deployments tell whether the
            # revision is deployed here, which is the state we wanted.
            if exc.status in (400, 409, 412) and self._is_deployed(environment, name, revision):
                return
            raise

    def _is_deployed(self, environment: str, name: str, revision: int) -> bool:
        return any(
            d.environment == environment and d.revision == revision for d in self.list_proxy_deployments(name)
        )

    def deployment_status(self, environment: str, name: str, revision: int) -> DeploymentStatus:
        try:
            doc = json_or_empty(
                self._request(
                    "GET",
                    self._revision_path(environment, name, revision),
                    f"deployment status {name} r{revision} in {environment}",
                )
            )
        except NotFoundError:
            return DeploymentStatus(state="NOT_DEPLOYED")
        errors = tuple(str(e.get("message", e)) for e in doc.get("errors") or [] if isinstance(e, dict))
        conflicts = _conflicts(doc.get("routeConflicts"), name)
        return DeploymentStatus(
            state=str(doc.get("state") or "RUNTIME_STATE_UNSPECIFIED"), errors=errors, conflicts=conflicts
        )

    def undeploy(self, environment: str, name: str, revision: int) -> None:
        with contextlib.suppress(NotFoundError):  # not deployed: the goal is reached
            self._request(
                "DELETE",
                self._revision_path(environment, name, revision),
                f"undeploy {name} r{revision} from {environment}",
            )
