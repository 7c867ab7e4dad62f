"""Pure planning of API products: what to write to ``organizations.apiproducts`` so that one
service's proxy is part of the product it asks for.

Apigee products use the operation model here: ``operationGroup.operationConfigs[]``, each naming a
proxy (``apiSource``) and one resource/method pair (the API allows no more per config), with the
quota on the config. The legacy ``proxies``/``apiResources`` lists are never written.

Ownership, as for proxies: a product gatehouse creates carries the ``gatehouse-owner`` attribute.
A product without it is never changed (one with the name gatehouse would use is a conflict). In a
shared product a service changes only the configs whose ``apiSource`` is its own proxy; configs a
person added (or that other services own) stay as they are, and so do fields and attributes
gatehouse does not manage (``update`` replaces the whole product, so they are sent back as read).

Products have no upsert and no etag: callers hold a lease on the product name between the read
and the write (see ``gatehouse.registration.service``).

Pure module: standard library only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gatehouse.config import Policy
from gatehouse.exposure import ProxySpec
from gatehouse.profiles import Profile

OWNER_ATTRIBUTE = "gatehouse-owner"
ACCESS_ATTRIBUTE = "access"
OURS = (OWNER_ATTRIBUTE, ACCESS_ATTRIBUTE)  # the product attributes gatehouse writes
MAX_ATTRIBUTES = 18  # Apigee's limit per product
APPROVALS = ("auto", "manual")
ACCESS_LEVELS = ("public", "private", "internal")
DEFAULT_APPROVAL = "manual"
DEFAULT_ACCESS = "internal"
WHOLE_BASE_PATH = "/**"
# fields Apigee fills in and refuses or ignores in a request body
RESPONSE_ONLY = ("createdAt", "lastModifiedAt")
# fields gatehouse sets; everything else in a product is sent back as read
MANAGED = (
    "name",
    "displayName",
    "description",
    "approvalType",
    "environments",
    "attributes",
    "operationGroup",
    "scopes",
)

Operations = Sequence[tuple[str, Sequence[str]]]


@dataclass(frozen=True)
class Quota:
    limit: int
    interval: int
    time_unit: str

    def to_json(self) -> dict[str, str]:
        return {"limit": str(self.limit), "interval": str(self.interval), "timeUnit": self.time_unit}


@dataclass(frozen=True)
class OperationConfig:
    """One ``operationConfigs[]`` entry: a proxy, one resource and its methods (empty: all)."""

    api_source: str
    resource: str
    methods: tuple[str, ...] = ()
    quota: Quota | None = None
    raw: Mapping[str, Any] | None = field(default=None, compare=False)  # as read (others' configs)

    def to_json(self) -> dict[str, Any]:
        if self.raw is not None:
            return dict(self.raw)
        operation: dict[str, Any] = {"resource": self.resource}
        if self.methods:
            operation["methods"] = list(self.methods)
        out: dict[str, Any] = {"apiSource": self.api_source, "operations": [operation]}
        if self.quota is not None:
            out["quota"] = self.quota.to_json()
        return out

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> OperationConfig:
        operations = doc.get("operations") or []
        first = operations[0] if operations and isinstance(operations[0], Mapping) else {}
        quota = doc.get("quota") if isinstance(doc.get("quota"), Mapping) else None
        parsed_quota = None
        if quota:
            try:
                parsed_quota = Quota(
                    int(str(quota.get("limit"))),
                    int(str(quota.get("interval") or 1)),
                    str(quota.get("timeUnit") or "hour"),
                )
            except ValueError:
                parsed_quota = None
        return cls(
            api_source=str(doc.get("apiSource") or ""),
            resource=str(first.get("resource") or ""),
            methods=tuple(sorted(str(m).upper() for m in first.get("methods") or [])),
            quota=parsed_quota,
            raw=dict(doc),
        )

    def comparable(self) -> tuple[Any, ...]:
        """What tells two of our configs apart (methods in any order, raw ignored)."""
        return (self.api_source, self.resource, tuple(sorted(self.methods)), self.quota)


@dataclass(frozen=True)
class Product:
    """An API product as Apigee has it: the fields gatehouse manages plus the whole document."""

    name: str
    display_name: str = ""
    description: str = ""
    approval_type: str = ""
    environments: tuple[str, ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()
    configs: tuple[OperationConfig, ...] = ()
    scopes: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def owner(self) -> str | None:
        return dict(self.attributes).get(OWNER_ATTRIBUTE)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Product:
        group = doc.get("operationGroup") if isinstance(doc.get("operationGroup"), Mapping) else {}
        attributes = tuple(
            (str(a.get("name", "")), str(a.get("value", "")))
            for a in doc.get("attributes") or []
            if isinstance(a, Mapping)
        )
        return cls(
            name=str(doc.get("name") or ""),
            display_name=str(doc.get("displayName") or ""),
            description=str(doc.get("description") or ""),
            approval_type=str(doc.get("approvalType") or ""),
            environments=tuple(str(e) for e in doc.get("environments") or []),
            attributes=attributes,
            configs=tuple(
                OperationConfig.from_json(c)
                for c in (group or {}).get("operationConfigs") or []
                if isinstance(c, Mapping)
            ),
            scopes=tuple(str(s) for s in doc.get("scopes") or []),
            raw=dict(doc),
        )

    def to_json(self) -> dict[str, Any]:
        """The request body of a create or update: what was read, with our fields set."""
        out = {k: v for k, v in self.raw.items() if k not in RESPONSE_ONLY and k not in MANAGED}
        out["name"] = self.name
        out["displayName"] = self.display_name
        if self.description:
            out["description"] = self.description
        out["approvalType"] = self.approval_type
        if self.environments:
            out["environments"] = list(self.environments)
        out["attributes"] = [{"name": k, "value": v} for k, v in self.attributes]
        group = dict(self.raw.get("operationGroup") or {})
        group["operationConfigs"] = [c.to_json() for c in self.configs]
        group.setdefault("operationConfigType", "proxy")
        out["operationGroup"] = group
        if self.scopes:
            out["scopes"] = list(self.scopes)
        return out


@dataclass(frozen=True)
class Declared:
    """A product field as a service asks for it: ``explicit`` when an annotation set it (it then
    wins in a shared product), else the default (used only where the service owns the product
    alone)."""

    value: str
    explicit: bool = False


@dataclass(frozen=True)
class DesiredProduct:
    """One service's part of a product: its configs and the product fields it declares."""

    name: str
    proxy: str
    display_name: Declared
    description: Declared
    approval: Declared
    access: Declared
    environments: tuple[str, ...]
    configs: tuple[OperationConfig, ...]
    scopes: tuple[str, ...] = ()
    # the OpenAPI spec the configs and scopes come from (its identity label; "": no spec)
    source: str = ""

    @property
    def content_hash(self) -> str:
        """Stable digest of everything this service asks of its product: when a proxy label holds
        it, the product is known to be current without reading it. With a spec, the digest takes
        the spec's identity in place of the operations and scopes derived from it, so that a spec
        known only by its identity (not read again) gives the same digest."""
        if self.source:
            quotas = sorted({json.dumps(c.quota.to_json() if c.quota else None) for c in self.configs})
            derived: dict[str, Any] = {"source": self.source, "quotas": quotas}
        else:
            derived = {"configs": [c.to_json() for c in self.configs], "scopes": list(self.scopes)}
        doc = {
            "name": self.name,
            "proxy": self.proxy,
            "fields": [
                (d.value, d.explicit)
                for d in (self.display_name, self.description, self.approval, self.access)
            ],
            "environments": list(self.environments),
            **derived,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def desired_product(
    name: str,
    proxy: str,
    *,
    title: str | None,
    description: str | None,
    approval: str | None,
    access: str | None,
    environments: Sequence[str],
    operations: Operations | None = None,
    quota: Quota | None = None,
    scopes: Sequence[str] = (),
    default_title: str = "",
    source: str = "",
) -> DesiredProduct:
    """``operations``: (resource pattern, HTTP methods; empty = all) pairs, e.g. from the
    service's OpenAPI spec; None or empty: one operation covering the whole base path."""
    pairs = list(operations or [(WHOLE_BASE_PATH, ())])
    configs = tuple(
        OperationConfig(proxy, resource, tuple(sorted({m.upper() for m in methods})), quota)
        for resource, methods in sorted(pairs, key=lambda p: (p[0], sorted(p[1])))
    )
    return DesiredProduct(
        name=name,
        proxy=proxy,
        display_name=Declared(title, True) if title is not None else Declared(default_title or name),
        description=Declared(description, True) if description is not None else Declared(""),
        approval=Declared(approval, True) if approval is not None else Declared(DEFAULT_APPROVAL),
        access=Declared(access, True) if access is not None else Declared(DEFAULT_ACCESS),
        environments=tuple(sorted(set(environments))),
        configs=configs,
        scopes=tuple(sorted(set(scopes))),
        source=source,
    )


# Apigee product quotas count in minutes, hours, days or months; a profile's week is seven days
_PRODUCT_TIME_UNITS = {"minute": ("minute", 1), "hour": ("hour", 1), "day": ("day", 1), "week": ("day", 7)}


def product_quota(spec: ProxySpec, profile: Profile) -> Quota | None:
    """The quota on the service's operation configs: the annotation's, else the profile's."""
    limits = spec.quota if spec.quota is not None else profile.quota
    if limits is None:
        return None
    unit, factor = _PRODUCT_TIME_UNITS.get(limits.time_unit, (limits.time_unit, 1))
    return Quota(limits.allow, limits.interval * factor, unit)


def for_service(
    spec: ProxySpec,
    profile: Profile,
    *,
    operations: Operations | None = None,
    scopes: Sequence[str] = (),
    source: str = "",
) -> DesiredProduct | None:
    """A service's part of its API product (None: the profile authenticates no caller).
    ``source``: the identity of the spec ``operations`` and ``scopes`` come from, if any."""
    if spec.product is None:
        return None
    return desired_product(
        spec.product.name,
        spec.proxy_name,
        title=spec.product.title,
        description=spec.product.description,
        approval=spec.product.approval,
        access=spec.product.access,
        environments=spec.environments,
        operations=operations,
        quota=product_quota(spec, profile),
        scopes=scopes,
        default_title=spec.service,
        source=source,
    )


# -- plans ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductPlan:
    """What to do to one product: ``create``/``update`` carry the whole new product."""

    name: str
    result: str  # create | update | delete | unchanged | conflict | skip | error
    reason: str
    product: Product | None = None

    @property
    def writes(self) -> bool:
        return self.result in ("create", "update", "delete")

    def describe(self) -> str:
        if self.result == "create":
            return f"create API product {self.name}"
        if self.result == "update":
            return f"update API product {self.name}"
        if self.result == "delete":
            return f"delete API product {self.name} (owned, no operation configs left)"
        return f"API product {self.name}: {self.reason}"


def _unowned(name: str, current: Product, owner_id: str) -> ProductPlan:
    owner = current.owner
    by = f"owned by '{owner}'" if owner else "not created by gatehouse"
    return ProductPlan(
        name,
        "conflict",
        f"API product {name} already exists and is {by}; gatehouse will not change it "
        "(rename or delete that product, or name another one with gatehouse.dev/product)",
    )


def _attributes(
    current: Sequence[tuple[str, str]], owner_id: str, access: str
) -> tuple[tuple[str, str], ...]:
    """Ours set, everyone else's kept in their order."""
    kept = [(k, v) for k, v in current if k not in OURS]
    return ((OWNER_ATTRIBUTE, owner_id), (ACCESS_ATTRIBUTE, access), *kept)


def plan_product(
    desired: DesiredProduct, current: Product | None, *, owner_id: str, policy: Policy
) -> ProductPlan:
    """Make ``desired.proxy``'s configs in product ``desired.name`` what the service asks for."""
    name = desired.name
    if current is None:
        product = Product(
            name=name,
            display_name=desired.display_name.value,
            description=desired.description.value,
            approval_type=desired.approval.value,
            environments=desired.environments,
            attributes=_attributes((), owner_id, desired.access.value),
            configs=desired.configs,
            scopes=desired.scopes,
        )
        return ProductPlan(name, "create", f"new API product {name} for proxy {desired.proxy}", product)
    if current.owner != owner_id:
        return _unowned(name, current, owner_id)

    mine = [c for c in current.configs if c.api_source == desired.proxy]
    others = [c for c in current.configs if c.api_source != desired.proxy]
    if policy is Policy.CREATE_ONLY and mine:
        return ProductPlan(name, "unchanged", "policy create-only leaves existing operation configs alone")
    shared = bool(others)

    def pick(declared: Declared, now: str) -> str:
        # a default never overrides what a shared product already says
        return declared.value if declared.explicit or not shared or not now else now

    access_now = dict(current.attributes).get(ACCESS_ATTRIBUTE, "")
    new = replace(
        current,
        display_name=pick(desired.display_name, current.display_name),
        # no description by default: one written by a person stays, shared or not
        description=desired.description.value if desired.description.explicit else current.description,
        approval_type=pick(desired.approval, current.approval_type),
        environments=(
            tuple(sorted({*current.environments, *desired.environments})) if shared else desired.environments
        ),
        attributes=_attributes(current.attributes, owner_id, pick(desired.access, access_now)),
        # ours first in a stable order; the rest exactly as they were
        configs=tuple(others) + desired.configs,
        scopes=tuple(sorted({*current.scopes, *desired.scopes})) if shared else desired.scopes,
    )
    if len(new.attributes) > MAX_ATTRIBUTES:
        return ProductPlan(
            name,
            "error",
            f"API product {name} would hold {len(new.attributes)} attributes (gatehouse sets "
            f"{len(OURS)}: {', '.join(OURS)}); Apigee allows {MAX_ATTRIBUTES}. Nothing was changed; "
            "remove some of the product's other attributes",
        )
    if _same(new, current):
        return ProductPlan(name, "unchanged", f"API product {name} already holds proxy {desired.proxy}")
    what = "joins" if not mine else "updates its operation configs in"
    return ProductPlan(name, "update", f"proxy {desired.proxy} {what} API product {name}", new)


def plan_leave(
    name: str, proxy: str, current: Product | None, *, owner_id: str, delete_empty: bool = True
) -> ProductPlan:
    """Take ``proxy``'s configs out of product ``name`` (undeploy, or a move to another product);
    delete the product when it is ours and nothing is left in it."""
    if current is None:
        return ProductPlan(name, "unchanged", f"no API product {name}")
    mine = [c for c in current.configs if c.api_source == proxy]
    if not mine:
        return ProductPlan(name, "unchanged", f"API product {name} holds no config of proxy {proxy}")
    if current.owner != owner_id:
        return ProductPlan(
            name, "skip", f"API product {name} is not owned by this installation; its configs are left alone"
        )
    rest = tuple(c for c in current.configs if c.api_source != proxy)
    if not rest and delete_empty:
        return ProductPlan(name, "delete", f"proxy {proxy} was the last one in API product {name}")
    return ProductPlan(
        name, "update", f"proxy {proxy} leaves API product {name}", replace(current, configs=rest)
    )


def _same(a: Product, b: Product) -> bool:
    """Equal after normalizing what Apigee may reorder or spell differently."""

    def norm(p: Product) -> tuple[Any, ...]:
        return (
            p.display_name,
            p.description,
            p.approval_type,
            tuple(sorted(p.environments)),
            tuple(sorted(p.attributes)),
            tuple(sorted((c.comparable() for c in p.configs), key=repr)),
            tuple(sorted(p.scopes)),
        )

    return norm(a) == norm(b)
