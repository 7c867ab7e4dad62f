"""The few calls each use case needs from the outside world, as ``typing.Protocol``s.

Adapters in ``gatehouse.adapters`` implement them against Google's APIs (and, on one machine, against
the emulators and stand-ins through the same code path); unit tests use in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ProxyInfo:
    """An Apigee API proxy as gatehouse sees it."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    revisions: tuple[int, ...] = ()

    @property
    def latest_revision(self) -> int | None:
        return max(self.revisions) if self.revisions else None


@dataclass(frozen=True)
class Deployment:
    """One revision of one proxy deployed in one environment."""

    environment: str
    proxy: str
    revision: int


@dataclass(frozen=True)
class RouteConflict:
    """Another deployment that claims a base path the proxy wants."""

    other_proxy: str
    base_path: str
    environment: str
    description: str = ""


@dataclass(frozen=True)
class ChangeReport:
    """What ``generateDeployChangeReport`` says a deployment would do."""

    conflicts: tuple[RouteConflict, ...] = ()
    validation_errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeploymentStatus:
    """``getDeployments``: the runtime's view of one deployment."""

    state: str  # READY | PROGRESSING | ERROR | RUNTIME_STATE_UNSPECIFIED | NOT_DEPLOYED
    errors: tuple[str, ...] = ()
    conflicts: tuple[RouteConflict, ...] = ()


class ApigeeApi(Protocol):
    """Apigee management API v1, the calls registration makes."""

    def get_proxy(self, name: str) -> ProxyInfo | None: ...
    def list_proxies(self) -> list[ProxyInfo]: ...
    def import_bundle(self, name: str, zip_bytes: bytes) -> int: ...
    def set_labels(self, name: str, labels: Mapping[str, str]) -> None: ...
    def list_proxy_deployments(self, name: str) -> list[Deployment]: ...
    def list_org_deployments(self) -> list[Deployment]: ...
    def change_report(self, environment: str, name: str, revision: int) -> ChangeReport: ...
    def deploy(self, environment: str, name: str, revision: int, *, service_account: str) -> None: ...
    def deployment_status(self, environment: str, name: str, revision: int) -> DeploymentStatus: ...
    def undeploy(self, environment: str, name: str, revision: int) -> None: ...
    def delete_revision(self, name: str, revision: int) -> None: ...
    def revision_description(self, name: str, revision: int) -> str: ...
    # API products, as the v1 JSON (``GoogleCloudApigeeV1ApiProduct``); get: None when absent
    def get_product(self, name: str) -> dict[str, Any] | None: ...
    def create_product(self, body: Mapping[str, Any]) -> dict[str, Any]: ...
    def update_product(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]: ...
    def delete_product(self, name: str) -> None: ...
    def list_products(self) -> list[dict[str, Any]]: ...  # every product, expanded


class CloudRunApi(Protocol):
    """Cloud Run Admin API v2: services (as v2 REST JSON dicts) and their IAM policies."""

    def get_service(self, project: str, region: str, name: str) -> dict[str, Any] | None: ...
    def list_services(self, project: str, region: str) -> Iterator[list[dict[str, Any]]]: ...
    def add_invoker(self, project: str, region: str, name: str, member: str) -> bool: ...
    def remove_invoker(self, project: str, region: str, name: str, member: str) -> bool: ...
    def has_invoker(self, project: str, region: str, name: str, member: str) -> bool: ...


@dataclass(frozen=True)
class ObjectVersion:
    """A Cloud Storage object's current generation and size (one metadata read)."""

    generation: str
    size: int


class SpecSource(Protocol):
    """Where services' OpenAPI specs are read. Both reads stop at ``limit`` bytes: a larger spec
    raises ``gatehouse.registration.openapi.SpecError``, as does one that is missing (404), a
    redirect or another answer a retry would not change. 401/403 from the service raise
    ``PermanentError`` with that status (the proxy service account may not hold run.invoker yet);
    throttling, 5xx and network failures raise ``TransientError``."""

    def service_spec(self, service_url: str, path: str, *, limit: int) -> bytes: ...
    def object_version(self, bucket: str, name: str) -> ObjectVersion: ...
    def object_bytes(self, bucket: str, name: str, generation: str, *, limit: int) -> bytes: ...


@dataclass(frozen=True)
class Outcome:
    """The last result of registering one service, as ``gatehouse status`` shows it."""

    key: str  # projects/P/locations/R/services/S
    result: str  # registered | unchanged | unregistered | skipped | conflict | error | pending | out-of-scope
    reason: str = ""
    proxy: str | None = None
    revision: int | None = None
    at: str = ""  # RFC 3339, UTC
    correlation_id: str | None = None
    product: str | None = None  # the API product the proxy is in


class Lease(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def holder(self) -> str: ...


class Coordinator(Protocol):
    """Cross-instance mutual exclusion per proxy and a record of outcomes per service."""

    def acquire(self, key: str, holder: str, ttl_seconds: float) -> Lease | None: ...
    def release(self, lease: Lease) -> None: ...
    def record(self, outcome: Outcome) -> None: ...
    def record_many(self, outcomes: list[Outcome]) -> None: ...
    def outcomes(self, key_prefix: str = "") -> list[Outcome]: ...


class JobLauncher(Protocol):
    """Starts a Cloud Run job execution for fleet-wide work."""

    def run_job(self, job: str, env: dict[str, str]) -> str: ...
