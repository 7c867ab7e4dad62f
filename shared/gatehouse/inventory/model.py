"""Pure: join what was read about the fleet (a :class:`Snapshot`) into one :class:`Inventory`.

Nothing here calls anything. Every value of the model may come from someone who can deploy a
service (labels, annotations, error messages, ticket titles): renderers escape, the model keeps
values as they are, except that free text is bounded so that one 10 kB annotation cannot bloat a
page that lists a thousand services.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gatehouse import bundle as bundles
from gatehouse import exposure
from gatehouse.errors import GatehouseError
from gatehouse.ports import Deployment, Outcome, ProxyInfo
from gatehouse.profiles import ProfileSet
from gatehouse.registration.plan import (
    HASH_LABEL,
    HASH_LABEL_LENGTH,
    OWNER_LABEL,
    PRODUCT_LABEL,
    PROJECT_LABEL,
    REGION_LABEL,
    REVISION_LABEL,
    SERVICE_LABEL,
)
from gatehouse.rotation.ports import KeyInfo, SecretInfo, VersionInfo, VersionState
from gatehouse.rotation.settings import RotationSettings
from gatehouse.rotation.state import read_state
from gatehouse.rotation.target import Kind, is_target, parse_target

MAX_TEXT = 300  # characters of any free text kept per value (reasons, titles, annotations)
BAD_RESULTS = frozenset({"error", "conflict"})
TICKET_TITLE = re.compile(r"^\[gatehouse\] ([A-Za-z0-9_-]{1,255}) \(([a-z][a-z0-9-]{0,31})\) is slow")
# a minute row of a ticket body (gatehouse.tickets.render): | minute | window | requests | total | ...
_MINUTE_ROW = re.compile(
    r"^\| (\d{4}-\d\d-\d\d \d\d:\d\d) UTC \| (baseline|incident) \| [^|]* \| ([\d,]+ ms|n/a) \| "
    r"([\d,]+ ms|n/a) \|",
    re.M,
)
MAX_POINTS = 120


def clip(value: object, limit: int = MAX_TEXT) -> str:
    """``value`` as text of at most ``limit`` characters (an ellipsis says that some was cut)."""
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- what was read --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TicketInfo:
    """A tracker ticket gatehouse opened (``body`` may be empty when the tracker list omits it)."""

    id: str
    title: str
    state: str
    url: str
    labels: tuple[str, ...] = ()
    body: str = ""


@dataclass
class Snapshot:
    """Everything one inventory run read, in bulk. ``states`` holds the runtime state of a
    deployment (``(environment, proxy, revision)``) when it was read; ``invokers`` whether the proxy
    service account holds roles/run.invoker on a service (None: not read)."""

    read_at: datetime
    services: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    proxies: list[ProxyInfo] = field(default_factory=list)
    deployments: list[Deployment] = field(default_factory=list)
    states: dict[tuple[str, str, int], str] = field(default_factory=dict)
    invokers: dict[str, bool | None] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    secrets: list[SecretInfo] = field(default_factory=list)
    versions: dict[str, list[VersionInfo]] = field(default_factory=dict)
    keys: dict[str, list[KeyInfo]] = field(default_factory=dict)
    tickets: list[TicketInfo] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """The installation the inventory describes."""

    organization: str
    owner_id: str
    proxy_service_account: str
    profiles: ProfileSet
    default_environments: tuple[str, ...] = ("test",)
    project_numbers: Mapping[str, str] = field(default_factory=dict)
    rotation: RotationSettings = field(default_factory=RotationSettings)


# -- the model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvDeployment:
    environment: str
    revision: int
    state: str  # READY | PROGRESSING | ERROR (read) or "deployed" (listed, state not read)


@dataclass(frozen=True)
class ProxyView:
    name: str
    owned: bool
    owner: str
    labelled_revision: int | None
    deployments: tuple[EnvDeployment, ...]
    hash_current: bool | None  # None: no wanted bundle to compare with


@dataclass(frozen=True)
class OutcomeView:
    result: str
    reason: str
    at: str
    correlation_id: str


@dataclass(frozen=True)
class TicketView:
    id: str
    title: str
    url: str
    state: str
    proxy: str
    environment: str
    latency_ms: tuple[float | None, ...] = ()  # total (or target) latency per minute, oldest first
    incident_from: int = 0  # index of the first incident minute in latency_ms


@dataclass(frozen=True)
class ServiceView:
    key: str
    project: str
    region: str
    name: str
    url: str
    service_account: str
    opted_in: bool
    exposure: str  # why it is not exposed, or the contract error
    profile: str
    auth: str
    base_path: str
    environments: tuple[str, ...]
    proxy: ProxyView | None
    invoker: bool | None
    # the API product its proxy is in (the label gatehouse wrote on its own proxy), else the one it asks for
    product: str | None
    outcome: OutcomeView | None
    targets: tuple[str, ...]  # rotation targets it reads or whose key belongs to its account
    tickets: tuple[TicketView, ...]
    problems: tuple[str, ...]
    history: str  # the command that shows what gatehouse did to it


@dataclass(frozen=True)
class Conflict:
    proxy: str
    owner: str
    service: str
    reason: str


@dataclass(frozen=True)
class Orphan:
    proxy: str
    service: str
    environments: tuple[str, ...]


@dataclass(frozen=True)
class Drift:
    proxy: str
    service: str
    detail: str


@dataclass(frozen=True)
class KeyAge:
    id: str
    age_days: float
    disabled: bool
    expires: str


@dataclass(frozen=True)
class Consumer:
    name: str  # projects/P/locations/R/services/S
    via: str  # env | volume
    detail: str
    version: str


@dataclass(frozen=True)
class TargetView:
    secret: str
    kind: str
    service_account: str
    period_days: float
    current_version: int | None
    current_age_days: float | None
    next_due: str
    overdue: bool
    keys: tuple[KeyAge, ...]
    consumers: tuple[Consumer, ...]
    problem: str


@dataclass(frozen=True)
class Account:
    email: str
    roles: tuple[str, ...]
    routes: tuple[str, ...]  # "environment base-path -> service"
    may_invoke: tuple[str, ...]
    keys: tuple[str, ...]
    secrets: tuple[str, ...]


@dataclass(frozen=True)
class Inventory:
    generated_at: str
    organization: str
    services: tuple[ServiceView, ...]
    conflicts: tuple[Conflict, ...]
    orphans: tuple[Orphan, ...]
    drift: tuple[Drift, ...]
    targets: tuple[TargetView, ...]
    accounts: tuple[Account, ...]
    tickets: tuple[TicketView, ...]
    incomplete: tuple[str, ...]  # reads that failed: the sections they feed may miss rows
    calls: Mapping[str, int]

    @property
    def problem_count(self) -> int:
        return sum(1 for s in self.services if s.problems)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["summary"] = {
            "services": len(self.services),
            "opted_in": sum(1 for s in self.services if s.opted_in),
            "with_problems": self.problem_count,
            "conflicts": len(self.conflicts),
            "orphans": len(self.orphans),
            "drift": len(self.drift),
            "targets": len(self.targets),
            "overdue_targets": sum(1 for t in self.targets if t.overdue),
            "open_tickets": sum(1 for t in self.tickets if t.state == "open"),
            "accounts": len(self.accounts),
        }
        return out


# -- building -------------------------------------------------------------------------------------


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def _days(delta: timedelta) -> float:
    return round(delta.total_seconds() / 86400, 1)


def service_key(project: str, region: str, name: str) -> str:
    return f"projects/{project}/locations/{region}/services/{name}"


def _canon_secret(reference: str, own_project: str, numbers: Mapping[str, str]) -> str | None:
    """``S`` or ``projects/P/secrets/S`` -> ``projects/<number>/secrets/S`` (as Secret Manager names
    it when the number is known), so a template's reference and a secret's name compare equal."""
    parts = reference.strip().split("/")
    if len(parts) == 1 and parts[0]:
        project, secret = own_project, parts[0]
    elif len(parts) >= 4 and parts[0] == "projects" and parts[2] == "secrets" and parts[3]:
        project, secret = parts[1], parts[3]
    else:
        return None
    return f"projects/{numbers.get(project, project)}/secrets/{secret}"


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def secret_references(
    key: str, doc: Mapping[str, Any], numbers: Mapping[str, str]
) -> list[tuple[str, Consumer]]:
    """``(canonical secret name, consumer)`` for every secret a v2 service template reads: env vars
    (``valueSource.secretKeyRef``) and mounted secret volumes (``items``, or the whole secret)."""
    project = key.split("/")[1]
    template = _map(doc.get("template"))
    volumes = {
        str(v.get("name")): _map(v.get("secret"))
        for v in _list(template.get("volumes"))
        if isinstance(v, Mapping) and _map(v.get("secret")).get("secret")
    }
    found: list[tuple[str, Consumer]] = []
    for container in _list(template.get("containers")):
        if not isinstance(container, Mapping):
            continue
        for env in _list(container.get("env")):
            ref = _map(_map(_map(env).get("valueSource")).get("secretKeyRef"))
            secret = _canon_secret(str(ref.get("secret", "")), project, numbers) if ref else None
            if secret:
                consumer = Consumer(
                    key, "env", clip(_map(env).get("name"), 120), str(ref.get("version") or "latest")
                )
                found.append((secret, consumer))
        for mount in _list(container.get("volumeMounts")):
            volume = volumes.get(str(_map(mount).get("name")))
            secret = _canon_secret(str(volume.get("secret", "")), project, numbers) if volume else None
            if not secret or volume is None:
                continue
            base = str(_map(mount).get("mountPath", "")).rstrip("/")
            items = [
                (str(_map(i).get("path", "")), str(_map(i).get("version") or "latest"))
                for i in _list(volume.get("items"))
            ] or [(secret.rsplit("/", 1)[-1], "latest")]
            for path, version in items:
                found.append((secret, Consumer(key, "volume", clip(f"{base}/{path}", 160), version)))
    return found


def latency_series(body: str) -> tuple[tuple[float | None, ...], int]:
    """The per-minute latency a ticket body carries (its minute table) and where the incident
    starts; ``((), 0)`` when the body holds no evidence."""
    values: list[float | None] = []
    incident_from = -1
    for match in _MINUTE_ROW.finditer(body):
        window, total, target = match.group(2), match.group(3), match.group(4)
        chosen = total if total != "n/a" else target
        if window == "incident" and incident_from < 0:
            incident_from = len(values)
        values.append(None if chosen == "n/a" else float(chosen.removesuffix(" ms").replace(",", "")))
        if len(values) >= MAX_POINTS:
            break
    if not any(v is not None for v in values):
        return (), 0
    return tuple(values), max(incident_from, 0)


def _ticket_view(ticket: TicketInfo) -> TicketView:
    match = TICKET_TITLE.match(ticket.title)
    series, start = latency_series(ticket.body)
    return TicketView(
        id=clip(ticket.id, 40),
        title=clip(ticket.title),
        url=clip(ticket.url, 500),
        state=ticket.state if ticket.state in ("open", "closed") else "open",
        proxy=match.group(1) if match else "",
        environment=match.group(2) if match else "",
        latency_ms=series,
        incident_from=start,
    )


@dataclass
class _Wanted:
    spec: exposure.ProxySpec | None
    hash_label: str = ""
    reason: str = ""
    auth: str = ""
    valid: bool = True


def _wanted(project: str, region: str, doc: Mapping[str, Any], ctx: Context) -> tuple[_Wanted, Any]:
    """The service's desired proxy (with its bundle hash), or why it has none; and the parsed service."""
    try:
        service = exposure.RunService.from_json(doc, project=project, region=region)
    except GatehouseError as exc:
        return _Wanted(None, reason=clip(f"unreadable service: {exc}"), valid=False), None
    try:
        spec = exposure.desired(service, ctx.profiles, default_environments=ctx.default_environments)
    except GatehouseError as exc:
        return _Wanted(None, reason=clip(f"invalid exposure settings: {exc}"), valid=False), service
    if isinstance(spec, exposure.NotExposed):
        return _Wanted(None, reason=clip(spec.reason)), service
    profile = ctx.profiles.get(spec.profile)
    rendered = bundles.render(spec, profile, owner_id=ctx.owner_id)
    return (
        _Wanted(spec, rendered.content_hash[:HASH_LABEL_LENGTH], auth=str(profile.auth.mode)),
        service,
    )


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _target_view(
    secret: SecretInfo,
    *,
    versions: Sequence[VersionInfo],
    keys: Sequence[KeyInfo] | None,
    consumers: Sequence[Consumer],
    ctx: Context,
    now: datetime,
) -> TargetView:
    problem = ""
    kind, account, period = str(secret.labels.get("gatehouse-rotate", "")), "", ctx.rotation.rotation_period
    try:
        target = parse_target(secret.name, secret.labels, secret.annotations, ctx.rotation)
        kind, account, period = str(target.kind), target.service_account or "", target.rotation_period
        state = read_state(secret.annotations)
    except GatehouseError as exc:
        problem = clip(str(exc))
        state = None
    current = secret.version_aliases.get("current")
    created = next((v.create_time for v in versions if v.number == current), None)
    since = (state.current_since if state else None) or created
    age = _days(now - since) if since else None
    due = since + period if since else None
    overdue = bool(due and due < now)
    if current is None and not problem:
        problem = "no current version yet: the next run creates the first one"
    elif current is not None and not any(
        v.number == current and v.state is VersionState.ENABLED for v in versions
    ):
        problem = problem or f"current version {current} is not enabled"
    key_rows: list[KeyAge] = []
    if kind == Kind.SA_KEY and keys is not None:
        for k in sorted(keys, key=lambda k: k.valid_after):
            key_rows.append(
                KeyAge(
                    clip(k.key_id, 60),
                    _days(now - k.valid_after),
                    k.disabled,
                    _iso(k.valid_before) if k.valid_before else "",
                )
            )
    return TargetView(
        secret=secret.name,
        kind=clip(kind, 40),
        service_account=clip(account, 120),
        period_days=_days(period),
        current_version=current,
        current_age_days=age,
        next_due=_iso(due) if due else "",
        overdue=overdue,
        keys=tuple(key_rows),
        consumers=tuple(consumers),
        problem=problem or ("overdue: past its rotation period" if overdue else ""),
    )


def build(snapshot: Snapshot, ctx: Context) -> Inventory:
    """The inventory of what ``snapshot`` holds (pure; rendering bundles is the only real work)."""
    now = snapshot.read_at
    proxies = {p.name: p for p in snapshot.proxies}
    deployed: dict[str, list[Deployment]] = {}
    for d in snapshot.deployments:
        deployed.setdefault(d.proxy.rsplit("/", 1)[-1], []).append(d)
    outcomes = {o.key: o for o in snapshot.outcomes}
    tickets = [_ticket_view(t) for t in snapshot.tickets]
    tickets_by_proxy: dict[str, list[TicketView]] = {}
    for t in tickets:
        if t.proxy and t.state == "open":
            tickets_by_proxy.setdefault(t.proxy, []).append(t)

    # secrets each service reads, and rotation targets by canonical name
    reads: dict[str, list[str]] = {}
    consumers: dict[str, list[Consumer]] = {}
    for project, region, doc in snapshot.services:
        key = service_key(project, region, str(doc.get("name", "")).rsplit("/", 1)[-1])
        for secret, consumer in secret_references(key, doc, ctx.project_numbers):
            consumers.setdefault(secret, []).append(consumer)
            reads.setdefault(key, []).append(secret)
    targets: list[TargetView] = []
    for info in sorted(snapshot.secrets, key=lambda s: s.name):
        if not is_target(info.labels):
            continue
        canon = _canon_secret(info.name, "", ctx.project_numbers) or info.name
        view = _target_view(
            info,
            versions=snapshot.versions.get(info.name, []),
            keys=snapshot.keys.get(str(info.annotations.get("gatehouse-service-account", ""))),
            consumers=consumers.get(canon, []),
            ctx=ctx,
            now=now,
        )
        targets.append(view)
    target_names = {(_canon_secret(t.secret, "", ctx.project_numbers) or t.secret): t.secret for t in targets}

    services: list[ServiceView] = []
    conflicts: list[Conflict] = []
    drift: list[Drift] = []
    seen: set[str] = set()
    for project, region, doc in snapshot.services:
        name = str(doc.get("name", "")).rsplit("/", 1)[-1]
        key = service_key(project, region, name)
        seen.add(key)
        want, parsed = _wanted(project, region, doc, ctx)
        spec = want.spec
        proxy_name = spec.proxy_name if spec else exposure.proxy_name(project, region, name)
        proxy = proxies.get(proxy_name)
        problems: list[str] = []
        if not want.valid:
            problems.append(want.reason)
        proxy_view = None
        if proxy is not None:
            owner = str(proxy.labels.get(OWNER_LABEL, ""))
            owned = owner == ctx.owner_id
            labelled = _int(proxy.labels.get(REVISION_LABEL))
            envs = tuple(
                EnvDeployment(
                    d.environment,
                    d.revision,
                    snapshot.states.get((d.environment, proxy_name, d.revision), "deployed"),
                )
                for d in sorted(deployed.get(proxy_name, []), key=lambda d: d.environment)
            )
            current = None
            if spec is not None and owned:
                current = proxy.labels.get(HASH_LABEL) == want.hash_label
            proxy_view = ProxyView(proxy_name, owned, clip(owner, 63), labelled, envs, current)
            if not owned and spec is not None:
                why = f"proxy {proxy_name} exists and is not gatehouse's (owner {owner or 'none'})"
                conflicts.append(Conflict(proxy_name, clip(owner, 63), key, why))
                problems.append(why)
            if owned and spec is not None:
                details = []
                if current is False:
                    details.append("the proxy's content hash differs from the service's wanted bundle")
                for e in envs:
                    if labelled is not None and e.revision != labelled:
                        details.append(f"{e.environment} runs revision {e.revision}, not {labelled}")
                    if e.state == "ERROR":
                        problems.append(f"deployment in {e.environment} is in ERROR")
                missing = sorted(set(spec.environments) - {e.environment for e in envs})
                if missing:
                    details.append("not deployed in " + ", ".join(missing))
                if details:
                    drift.append(Drift(proxy_name, key, "; ".join(details)))
                    problems.append("drift: " + "; ".join(details))
        outcome = outcomes.get(key)
        if outcome is not None and outcome.result in BAD_RESULTS:
            problems.append(f"last outcome {outcome.result}: {clip(outcome.reason)}")
            if outcome.result == "conflict" and not any(c.service == key for c in conflicts):
                conflicts.append(Conflict(proxy_name, "", key, clip(outcome.reason)))
        invoker = snapshot.invokers.get(key)
        if spec is not None and proxy_view is not None and proxy_view.owned and invoker is False:
            problems.append("the proxy service account lost roles/run.invoker on the service")
        own_targets = sorted(
            {target_names[s] for s in reads.get(key, []) if s in target_names}
            | {
                t.secret
                for t in targets
                if parsed is not None and t.service_account and t.service_account == parsed.service_account
            }
        )
        for target in targets:
            if target.secret in own_targets and target.problem:
                problems.append(f"rotation {target.secret.rsplit('/', 1)[-1]}: {target.problem}")
        service_tickets = tuple(tickets_by_proxy.get(proxy_name, ()))
        problems += [f"open ticket #{t.id}: {t.title}" for t in service_tickets]
        services.append(
            ServiceView(
                key=key,
                project=project,
                region=region,
                name=name,
                url=clip(parsed.uri if parsed else doc.get("uri"), 300),
                service_account=clip(parsed.service_account if parsed else "", 120),
                opted_in=spec is not None,
                exposure=want.reason,
                profile=spec.profile if spec else "",
                auth=want.auth,
                base_path=spec.base_path if spec else "",
                environments=tuple(spec.environments) if spec else (),
                proxy=proxy_view,
                invoker=invoker,
                product=_product(proxy, spec, ctx.owner_id),
                outcome=(
                    OutcomeView(
                        outcome.result, clip(outcome.reason), outcome.at, outcome.correlation_id or ""
                    )
                    if outcome
                    else None
                ),
                targets=tuple(own_targets),
                tickets=service_tickets,
                problems=tuple(clip(p) for p in problems),
                history=f"gatehouse history {key}",
            )
        )

    orphans = []
    for proxy in snapshot.proxies:
        labels = proxy.labels
        if labels.get(OWNER_LABEL) != ctx.owner_id:
            continue
        where = [labels.get(PROJECT_LABEL, ""), labels.get(REGION_LABEL, ""), labels.get(SERVICE_LABEL, "")]
        gone = service_key(*where)
        if all(where) and gone not in seen:
            places = tuple(sorted(d.environment for d in deployed.get(proxy.name, [])))
            orphans.append(Orphan(proxy.name, gone, places))

    services.sort(key=lambda s: (not s.problems, s.key))
    return Inventory(
        generated_at=_iso(now),
        organization=ctx.organization,
        services=tuple(services),
        conflicts=tuple(sorted(conflicts, key=lambda c: c.proxy)),
        orphans=tuple(sorted(orphans, key=lambda o: o.proxy)),
        drift=tuple(sorted(drift, key=lambda d: d.proxy)),
        targets=tuple(sorted(targets, key=lambda t: (not (t.problem or t.overdue), t.secret))),
        accounts=_accounts(services, targets, ctx),
        tickets=tuple(sorted(tickets, key=lambda t: (t.state != "open", t.proxy, t.id))),
        incomplete=tuple(clip(e) for e in snapshot.errors),
        calls=dict(sorted(snapshot.calls.items())),
    )


def _accounts(
    services: Iterable[ServiceView], targets: Iterable[TargetView], ctx: Context
) -> tuple[Account, ...]:
    """The service-account map: for each identity, what it serves, may invoke, and holds."""
    roles: dict[str, set[str]] = {}
    routes: dict[str, set[str]] = {}
    invoke: dict[str, set[str]] = {}
    keys: dict[str, set[str]] = {}
    secrets: dict[str, set[str]] = {}

    def touch(email: str, role: str) -> None:
        roles.setdefault(email, set()).add(role)

    proxy_sa = ctx.proxy_service_account
    by_secret = {t.secret: t for t in targets}
    for s in services:
        runtime = s.service_account or f"(default compute account of {s.project})"
        touch(runtime, "runtime")
        served = [f"{env} {s.base_path} -> {s.name}" for env in s.environments] if s.opted_in else []
        routes.setdefault(runtime, set()).update(served)
        secrets.setdefault(runtime, set()).update(
            t
            for t in s.targets
            if by_secret.get(t) is not None and any(c.name == s.key for c in by_secret[t].consumers)
        )
        if proxy_sa and s.proxy is not None and s.proxy.owned:
            touch(proxy_sa, "proxy")
            routes.setdefault(proxy_sa, set()).update(served)
            if s.invoker:
                invoke.setdefault(proxy_sa, set()).add(s.key)
    for t in targets:
        if t.service_account:
            touch(t.service_account, "rotated key")
            keys.setdefault(t.service_account, set()).update(
                f"{k.id} ({k.age_days:g} d{', disabled' if k.disabled else ''})" for k in t.keys
            )
            secrets.setdefault(t.service_account, set()).add(t.secret)
    return tuple(
        Account(
            email=email,
            roles=tuple(sorted(roles[email])),
            routes=tuple(sorted(routes.get(email, ()))),
            may_invoke=tuple(sorted(invoke.get(email, ()))),
            keys=tuple(sorted(keys.get(email, ()))),
            secrets=tuple(sorted(secrets.get(email, ()))),
        )
        for email in sorted(roles)
    )


def _product(proxy: ProxyInfo | None, spec: exposure.ProxySpec | None, owner_id: str) -> str | None:
    if proxy is not None and proxy.labels.get(OWNER_LABEL) == owner_id and proxy.labels.get(PRODUCT_LABEL):
        return str(proxy.labels[PRODUCT_LABEL])
    return spec.product.name if spec is not None and spec.product is not None else None
