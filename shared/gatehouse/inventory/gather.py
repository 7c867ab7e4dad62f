"""Read the fleet in bulk through the ports, counting every call, into a :class:`Snapshot`.

Listings are one call per page: Cloud Run services per project x region, Apigee proxies (with
their labels and revisions) and the organization's deployments, the outcomes, rotation targets
(Secret Manager's label filter), tickets. Per-resource reads are the ones no listing answers, and
only where they matter, ``workers`` at a time:

- roles/run.invoker: one ``getIamPolicy`` per service whose gatehouse proxy exists (the nightly
  sweep reads the same policies);
- versions of each rotation target, keys of each ``sa-key`` target's account;
- runtime state of each deployment (``getDeployments``; Apigee's lists do not carry it), only with
  ``live_states``: a fleet of N services costs N more Apigee calls, which the client's rate limit
  spreads over the quota.

A read that fails leaves its section incomplete and says so in ``Snapshot.errors``: the inventory
of a fleet with one broken API is still worth showing.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from gatehouse.errors import GatehouseError
from gatehouse.inventory.model import Snapshot, TicketInfo
from gatehouse.ports import ApigeeApi, CloudRunApi, Coordinator
from gatehouse.registration.plan import OWNER_LABEL
from gatehouse.rotation.ports import KeyAdmin, SecretStore
from gatehouse.rotation.target import LIST_FILTER

T = TypeVar("T")
TICKET_LABEL = "gatehouse"


class TicketLister(Protocol):
    def list_tickets(self, label: str) -> Sequence[Any]:
        """Tickets carrying ``label``: objects with ``id, title, state, url, labels`` (``body`` if known)."""
        ...


@dataclass
class InventoryPorts:
    apigee: ApigeeApi
    cloudrun: CloudRunApi
    coordinator: Coordinator
    secrets: SecretStore | None = None
    keys: KeyAdmin | None = None
    tickets: TicketLister | None = None


@dataclass(frozen=True)
class Scope:
    projects: tuple[str, ...]
    regions: tuple[str, ...]
    owner_id: str
    proxy_service_account: str
    project_numbers: dict[str, str]


class _Counter:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.calls[name] += n


def gather(
    ports: InventoryPorts,
    scope: Scope,
    *,
    now: datetime,
    workers: int = 8,
    live_states: bool = False,
    progress: Callable[[str], None] | None = None,
    secret_projects: Sequence[str] | None = None,
) -> Snapshot:
    """Read everything the inventory shows; ``secret_projects`` (default: the scope's projects) are
    where rotation targets are listed."""
    snap = Snapshot(read_at=now)
    count = _Counter()
    say = progress or (lambda _: None)

    def section(what: str, read: Callable[[], T], default: T) -> T:
        try:
            return read()
        except GatehouseError as exc:
            snap.errors.append(f"{what}: {exc}")
            return default

    say("listing Cloud Run services")
    for project in scope.projects:
        for region in scope.regions:

            def pages(project: str = project, region: str = region) -> list[tuple[str, str, dict[str, Any]]]:
                found = []
                for page in ports.cloudrun.list_services(project, region):
                    count("run.services.list")
                    found += [(project, region, doc) for doc in page if isinstance(doc, dict)]
                return found

            snap.services += section(f"Cloud Run services in {project}/{region}", pages, [])

    say("listing Apigee proxies and deployments")

    def proxies() -> list[Any]:
        count("apigee.apis.list")
        return ports.apigee.list_proxies()

    def deployments() -> list[Any]:
        count("apigee.deployments.list")
        return ports.apigee.list_org_deployments()

    snap.proxies = section("Apigee proxies", proxies, [])
    snap.deployments = section("Apigee deployments", deployments, [])

    def outcomes() -> list[Any]:
        count("firestore.outcomes.query")
        return ports.coordinator.outcomes("")

    snap.outcomes = section("last outcomes", outcomes, [])

    owned = {p.name for p in snap.proxies if p.labels.get(OWNER_LABEL) == scope.owner_id}
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        if scope.proxy_service_account:
            say("reading run.invoker bindings")
            from gatehouse.exposure import proxy_name

            member = f"serviceAccount:{scope.proxy_service_account}"
            wanted = [
                (p, r, str(doc.get("name", "")).rsplit("/", 1)[-1])
                for p, r, doc in snap.services
                if proxy_name(p, r, str(doc.get("name", "")).rsplit("/", 1)[-1]) in owned
            ]

            def invoker(item: tuple[str, str, str]) -> bool | None:
                count("run.services.getIamPolicy")
                try:
                    return ports.cloudrun.has_invoker(*item, member)
                except GatehouseError as exc:
                    snap.errors.append(f"run.invoker policy of {item[2]}: {exc}")
                    return None

            for (p, r, s), has in zip(wanted, pool.map(invoker, wanted), strict=True):
                snap.invokers[f"projects/{p}/locations/{r}/services/{s}"] = has

        if live_states:
            say("reading deployment states")
            mine = [d for d in snap.deployments if d.proxy.rsplit("/", 1)[-1] in owned]

            def state(d: Any) -> str | None:
                count("apigee.revisions.getDeployments")
                try:
                    return ports.apigee.deployment_status(
                        d.environment, d.proxy.rsplit("/", 1)[-1], d.revision
                    ).state
                except GatehouseError as exc:
                    snap.errors.append(f"state of {d.proxy} in {d.environment}: {exc}")
                    return None

            for d, found in zip(mine, pool.map(state, mine), strict=True):
                if found:
                    snap.states[(d.environment, d.proxy.rsplit("/", 1)[-1], d.revision)] = found

        if ports.secrets is not None:
            say("listing rotation targets")
            store = ports.secrets
            for project in secret_projects if secret_projects is not None else scope.projects:
                parent = f"projects/{scope.project_numbers.get(project, project)}"

                def targets(parent: str = parent) -> list[Any]:
                    count("secretmanager.secrets.list")
                    return list(store.list_secrets(parent, filter=LIST_FILTER))

                snap.secrets += section(f"rotation targets in {project}", targets, [])

            def versions(name: str) -> list[Any]:
                count("secretmanager.versions.list")
                try:
                    return store.list_secret_versions(name)
                except GatehouseError as exc:
                    snap.errors.append(f"versions of {name}: {exc}")
                    return []

            names = [s.name for s in snap.secrets]
            snap.versions = dict(zip(names, pool.map(versions, names), strict=True))
            if ports.keys is not None:
                key_admin = ports.keys
                accounts = sorted(
                    {
                        str(s.annotations.get("gatehouse-service-account", ""))
                        for s in snap.secrets
                        if s.labels.get("gatehouse-rotate") == "sa-key"
                    }
                    - {""}
                )

                def keys(email: str) -> list[Any] | None:
                    count("iam.keys.list")
                    try:
                        return key_admin.list_service_account_keys(email)
                    except GatehouseError as exc:
                        snap.errors.append(f"keys of {email}: {exc}")
                        return None

                for email, found_keys in zip(accounts, pool.map(keys, accounts), strict=True):
                    if found_keys is not None:
                        snap.keys[email] = found_keys
    finally:
        pool.shutdown(wait=True)

    if ports.tickets is not None:
        say("listing tickets")
        lister = ports.tickets

        def tickets() -> list[TicketInfo]:
            count("tracker.tickets.list")
            return [_ticket(t) for t in lister.list_tickets(TICKET_LABEL)]

        snap.tickets = section("tickets", tickets, [])
    snap.calls = dict(count.calls)
    return snap


def _ticket(t: Any) -> TicketInfo:
    labels: Iterable[Any] = getattr(t, "labels", ()) or ()
    return TicketInfo(
        id=str(getattr(t, "id", "")),
        title=str(getattr(t, "title", "")),
        state=str(getattr(t, "state", "open")),
        url=str(getattr(t, "url", "")),
        labels=tuple(str(label) for label in labels),
        body=str(getattr(t, "body", "") or ""),
    )
