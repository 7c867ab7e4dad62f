"""In-memory fakes of the registration ports, with the real APIs' rules that matter to planning:
deploy is not idempotent, one revision per environment, base paths collide across proxies,
IAM edits are read-modify-write."""

from __future__ import annotations

import copy
import io
import threading
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gatehouse.errors import ConflictError, NotFoundError, PermanentError, TransientError
from gatehouse.ports import ChangeReport, Deployment, DeploymentStatus, Outcome, ProxyInfo, RouteConflict


@dataclass
class FakeProxy:
    labels: dict[str, str] = field(default_factory=dict)
    revisions: dict[int, bytes] = field(default_factory=dict)
    base_path: str = "/"
    descriptions: dict[int, str] = field(default_factory=dict)  # revision -> its description


class FakeApigee:
    def __init__(self) -> None:
        self.proxies: dict[str, FakeProxy] = {}
        self.deployed: dict[tuple[str, str], int] = {}  # (env, proxy) -> revision
        self.calls: Counter[str] = Counter()
        self.fail_deploy: set[tuple[str, int]] = set()  # (proxy, revision) that end in ERROR
        self.transient_once: set[str] = set()  # fail before the call takes effect
        self.lost_once: set[str] = set()  # the call takes effect, then its answer is lost
        self.lock = threading.Lock()
        self.products: dict[str, dict[str, Any]] = {}

    def _call(self, name: str) -> None:
        self.calls[name] += 1
        if name in self.transient_once:
            self.transient_once.discard(name)
            raise TransientError(f"{name}: 503")

    @property
    def writes(self) -> int:
        return sum(
            n
            for k, n in self.calls.items()
            if k
            in (
                "import",
                "labels",
                "deploy",
                "undeploy",
                "delete_revision",
                "create_product",
                "update_product",
                "delete_product",
            )
        )

    def add_handmade(self, name: str, base_path: str = "/", labels: Mapping[str, str] | None = None) -> None:
        self.proxies[name] = FakeProxy(dict(labels or {}), {1: b"zip"}, base_path)

    def get_proxy(self, name: str) -> ProxyInfo | None:
        self._call("get_proxy")
        p = self.proxies.get(name)
        return ProxyInfo(name, dict(p.labels), tuple(sorted(p.revisions))) if p else None

    def list_proxies(self) -> list[ProxyInfo]:
        self._call("list_proxies")
        return [ProxyInfo(n, dict(p.labels), tuple(sorted(p.revisions))) for n, p in self.proxies.items()]

    def import_bundle(self, name: str, zip_bytes: bytes) -> int:
        self._call("import")
        with self.lock:
            p = self.proxies.setdefault(name, FakeProxy())
            rev = max(p.revisions, default=0) + 1
            p.revisions[rev] = zip_bytes
            p.base_path, p.descriptions[rev] = _read_bundle(zip_bytes)
        self._lose("import")
        return rev

    def _lose(self, name: str) -> None:
        if name in self.lost_once:
            self.lost_once.discard(name)
            raise TransientError(f"{name}: timed out after the write")

    def set_labels(self, name: str, labels: Mapping[str, str]) -> None:
        self._call("labels")
        self.proxies[name].labels = dict(labels)

    def list_proxy_deployments(self, name: str) -> list[Deployment]:
        self._call("list_deployments")
        return [Deployment(env, p, rev) for (env, p), rev in sorted(self.deployed.items()) if p == name]

    def list_org_deployments(self) -> list[Deployment]:
        self._call("list_org_deployments")
        return [Deployment(env, p, rev) for (env, p), rev in sorted(self.deployed.items())]

    def change_report(self, environment: str, name: str, revision: int) -> ChangeReport:
        self._call("change_report")
        mine = self.proxies[name].base_path
        conflicts = tuple(
            RouteConflict(other, self.proxies[other].base_path, env)
            for (env, other) in self.deployed
            if env == environment and other != name and self.proxies[other].base_path == mine
        )
        return ChangeReport(conflicts=conflicts)

    def deploy(self, environment: str, name: str, revision: int, *, service_account: str) -> None:
        self._call("deploy")
        if not service_account:
            raise PermanentError("MISSING_SERVICE_ACCOUNT")
        if self.deployed.get((environment, name)) == revision:
            raise PermanentError(f"revision {revision} is already deployed")
        self.deployed[(environment, name)] = revision

    def deployment_status(self, environment: str, name: str, revision: int) -> DeploymentStatus:
        self._call("status")
        if self.deployed.get((environment, name)) != revision:
            return DeploymentStatus("NOT_DEPLOYED")
        if (name, revision) in self.fail_deploy:
            return DeploymentStatus("ERROR", errors=("target unreachable",))
        return DeploymentStatus("READY")

    def undeploy(self, environment: str, name: str, revision: int) -> None:
        self._call("undeploy")
        if self.deployed.get((environment, name)) == revision:
            del self.deployed[(environment, name)]

    def delete_revision(self, name: str, revision: int) -> None:
        self._call("delete_revision")
        if any(p == name and r == revision for (_, p), r in self.deployed.items()):
            raise PermanentError("revision is deployed")
        self.proxies[name].revisions.pop(revision, None)

    def revision_description(self, name: str, revision: int) -> str:
        self._call("get_revision")
        p = self.proxies.get(name)
        if p is None or revision not in p.revisions:
            raise NotFoundError("no such revision")
        return p.descriptions.get(revision, "")

    # -- API products: no upsert, no etag; create refuses an existing name -----------------------

    def get_product(self, name: str) -> dict[str, Any] | None:
        self._call("get_product")
        found = self.products.get(name)
        return copy.deepcopy(found) if found is not None else None

    def create_product(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self._call("create_product")
        with self.lock:
            name = str(body["name"])
            if name in self.products:
                raise ConflictError(f"API product {name} already exists")
            self.products[name] = copy.deepcopy(dict(body))
        return copy.deepcopy(self.products[name])

    def update_product(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._call("update_product")
        with self.lock:
            if name not in self.products:
                raise NotFoundError(f"API product {name} not found")
            self.products[name] = copy.deepcopy(dict(body))
        return copy.deepcopy(self.products[name])

    def list_products(self) -> list[dict[str, Any]]:
        self._call("list_products")
        return [copy.deepcopy(p) for _, p in sorted(self.products.items())]

    def delete_product(self, name: str) -> None:
        self._call("delete_product")
        self.products.pop(name, None)


def _read_bundle(zip_bytes: bytes) -> tuple[str, str]:
    """Base path and description of a real bundle zip."""
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        names = archive.namelist()
        endpoint = ET.fromstring(archive.read("apiproxy/proxies/default.xml"))
        base = next(n for n in names if n.count("/") == 1 and n.endswith(".xml"))
        description = ET.fromstring(archive.read(base)).findtext("Description") or ""
    return endpoint.findtext("HTTPProxyConnection/BasePath") or "/", description


class FakeCloudRun:
    def __init__(self, services: Mapping[str, dict[str, Any]] | None = None) -> None:
        self.services: dict[str, dict[str, Any]] = dict(services or {})
        self.invokers: dict[str, set[str]] = {}
        self.calls: Counter[str] = Counter()

    def get_service(self, project: str, region: str, name: str) -> dict[str, Any] | None:
        self.calls["get_service"] += 1
        return self.services.get(f"projects/{project}/locations/{region}/services/{name}")

    def list_services(self, project: str, region: str) -> Iterator[list[dict[str, Any]]]:
        self.calls["list_services"] += 1
        prefix = f"projects/{project}/locations/{region}/services/"
        yield [s for k, s in sorted(self.services.items()) if k.startswith(prefix)]

    def add_invoker(self, project: str, region: str, name: str, member: str) -> bool:
        self.calls["add_invoker"] += 1
        members = self.invokers.setdefault(f"projects/{project}/locations/{region}/services/{name}", set())
        changed = member not in members
        members.add(member)
        return changed

    def has_invoker(self, project: str, region: str, name: str, member: str) -> bool:
        self.calls["has_invoker"] += 1
        return member in self.invokers.get(f"projects/{project}/locations/{region}/services/{name}", set())

    def remove_invoker(self, project: str, region: str, name: str, member: str) -> bool:
        self.calls["remove_invoker"] += 1
        members = self.invokers.get(f"projects/{project}/locations/{region}/services/{name}", set())
        changed = member in members
        members.discard(member)
        return changed


@dataclass(frozen=True)
class FakeLease:
    key: str
    holder: str


class FakeCoordinator:
    def __init__(self) -> None:
        self.held: dict[str, str] = {}
        self.recorded: dict[str, Outcome] = {}
        self.lock = threading.Lock()

    def acquire(self, key: str, holder: str, ttl_seconds: float) -> FakeLease | None:
        with self.lock:
            if self.held.get(key, holder) != holder:
                return None
            self.held[key] = holder
            return FakeLease(key, holder)

    def release(self, lease: Any) -> None:
        with self.lock:
            if self.held.get(lease.key) == lease.holder:
                del self.held[lease.key]

    def record(self, outcome: Outcome) -> None:
        self.recorded[outcome.key] = outcome

    def record_many(self, outcomes: list[Outcome]) -> None:
        for o in outcomes:
            self.record(o)

    def outcomes(self, key_prefix: str = "") -> list[Outcome]:
        return [o for k, o in sorted(self.recorded.items()) if k.startswith(key_prefix)]


def v2_service(
    project: str,
    region: str,
    name: str,
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    generation: int = 1,
) -> dict[str, Any]:
    """A Cloud Run service as the Admin API v2 returns it."""
    return {
        "name": f"projects/{project}/locations/{region}/services/{name}",
        "uid": f"uid-{name}",
        "generation": str(generation),
        "labels": dict(labels if labels is not None else {"apigee-expose": "true"}),
        "annotations": dict(annotations or {}),
        "uri": f"https://{name}-abc123-ew.a.run.app",
        "urls": [f"https://{name}-123456789.{region}.run.app"],
        "terminalCondition": {"type": "Ready", "state": "CONDITION_SUCCEEDED"},
        "latestReadyRevision": f"projects/{project}/locations/{region}/revisions/{name}-0000{generation}-abc",
        "template": {"serviceAccount": f"{name}@{project}.iam.gserviceaccount.com"},
        "etag": f"etag-{generation}",
    }
