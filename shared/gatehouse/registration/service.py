"""Registration use case: read the world, plan, execute under a lease, record the outcome.

``Registrar.reconcile_service`` serves events (one service); ``Registrar.sweep`` serves the
nightly job and ``gatehouse reconcile --all`` (every service of the configured projects and
regions, listed page by page, against one listing of proxies and one of deployments).

Invoker drift: Apigee calls a service as the proxy service account, which needs
``roles/run.invoker`` on it. Plans grant it whenever they deploy, but a binding removed by hand
leaves an ``unchanged`` service unreachable. The sweep (by default when it applies: the nightly
job) reads the IAM policy of every service whose proxy is registered and in place, one
``getIamPolicy`` per service, ``workers`` at a time, and grants the binding again where it is
missing. Events do not pay that read: an unchanged service stays at 3 reads.

OpenAPI specs (``gatehouse.dev/openapi``): the bundle carries the service's spec, and the content
hash covers it through its digest. A proxy labelled ours records the spec's identity
(``SPEC_LABEL``) and what it was read from (``SPEC_SOURCE_LABEL``: the Cloud Run revision that
served it, or ``g<generation>`` of a Cloud Storage object). An event reads a service-path spec
again only when the service's latest ready revision differs from that label, and a ``gs://`` spec
only when one metadata read shows another generation; otherwise the hash is computed from the
label and, should the plan import a bundle after all, the spec is read then. An unchanged event
with a service-path spec therefore stays at 3 reads. The sweep reads every spec.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from gatehouse import bundle as bundles
from gatehouse import exposure
from gatehouse.config import Settings
from gatehouse.errors import (
    ConflictError,
    GatehouseError,
    InputError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from gatehouse.logging import bound, event, get_logger, new_correlation_id
from gatehouse.ports import (
    ApigeeApi,
    CloudRunApi,
    Coordinator,
    Deployment,
    Outcome,
    ProxyInfo,
    SpecSource,
)
from gatehouse.profiles import ProfileSet
from gatehouse.registration import openapi, products
from gatehouse.registration.executor import Executor
from gatehouse.registration.openapi import OpenApiSpec, SpecError, SpecIdentity
from gatehouse.registration.plan import (
    OWNER_LABEL,
    PRODUCT_HASH_LABEL,
    PRODUCT_LABEL,
    PROJECT_LABEL,
    REGION_LABEL,
    REVISION_LABEL,
    SERVICE_LABEL,
    SPEC_LABEL,
    SPEC_SOURCE_LABEL,
    Current,
    Deploy,
    DesiredProxy,
    GrantInvoker,
    ImportBundle,
    LabelProxy,
    PathClaim,
    Plan,
    ServiceRef,
    path_segments,
    plan,
    product_labels,
)
from gatehouse.registration.products import DesiredProduct, ProductPlan

_log = get_logger("registration")
OUT_OF_SCOPE = "out-of-scope"  # the outcome of an event or command outside projects x regions
# descriptions read per proxy labelled ours to find revisions its labels miss (an unlabelled proxy
# is read until a revision is not ours, however many: adopting it needs them all to be ours)
MAX_UNLABELLED_READS = 50


@dataclass(frozen=True)
class Desired:
    """A service's desired proxy (or why it has none) and the rendered bundle."""

    proxy_name: str
    proxy: DesiredProxy | None
    bundle_zip: bytes | None = None  # None with a proxy: rendered from a spec's label, not its bytes
    absent_reason: str = ""
    service_exists: bool = True
    contract: exposure.ProxySpec | None = None
    # the validated spec when it was read (products take operations and scopes from it)
    spec: OpenApiSpec | None = None
    # run.invoker was granted to the proxy service account to read the spec (the plan needs not)
    invoker_granted: bool = False
    product: DesiredProduct | None = None


@dataclass
class Report:
    """One service's plan and, when applied, its outcome."""

    ref: ServiceRef
    plan: Plan | None
    outcome: Outcome
    products: list[ProductPlan] = field(default_factory=list)


@dataclass
class SweepReport:
    reports: list[Report] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> list[Report]:
        return [r for r in self.reports if r.outcome.result in ("error", "conflict")]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Registrar:
    def __init__(
        self,
        settings: Settings,
        apigee: ApigeeApi,
        cloudrun: CloudRunApi,
        coordinator: Coordinator,
        profiles: ProfileSet,
        *,
        sleep: Callable[[float], None] = time.sleep,
        lease_patience: float = 30.0,
        specs: SpecSource | None = None,
        config_for: Callable[[str], tuple[ProfileSet, str]] | None = None,
        before_apply: Callable[[], None] | None = None,
    ) -> None:
        if not settings.proxy_service_account:
            raise InputError(
                "GATEHOUSE_PROXY_SERVICE_ACCOUNT is required: the identity Apigee uses to call services"
            )
        self.settings = settings
        self.apigee = apigee
        self.cloudrun = cloudrun
        self.coordinator = coordinator
        self.profiles = profiles
        self.sleep = sleep
        self.lease_patience = lease_patience
        self.specs = specs
        # proxy name -> (profiles, owner id) it renders with: while a fleet change waits for or
        # runs as a rollout, a proxy the rollout has not reached keeps the running configuration
        self.config_for = config_for
        # called before each Apigee write of a plan (the rollout store records the configuration
        # the fleet runs on the first one: ``gatehouse.rollouts.engine.Resolver.record_running``)
        self.before_apply = before_apply
        self.executor = Executor(
            apigee,
            cloudrun,
            settings.proxy_service_account,
            deploy_timeout=settings.deploy_timeout_seconds,
            poll_interval=settings.deploy_poll_seconds,
            sleep=sleep,
        )

    # -- desired state ------------------------------------------------------------------------

    def desired(
        self,
        ref: ServiceRef,
        service_doc: dict[str, Any] | None,
        *,
        current: Current | None = None,
        grant: bool = False,
    ) -> Desired:
        """The service's desired proxy and bundle; raises InputError for an invalid contract or spec.

        ``current`` (the proxy as read) lets a spec recorded in its labels stand in for reading the
        spec again (see the module docstring); None reads every spec. ``grant`` lets a spec read
        that the service refuses grant the proxy service account run.invoker first (applying)."""
        contract = self._contract(ref, service_doc)
        return self._rendered(ref, contract, current, grant=grant)

    def _contract(
        self, ref: ServiceRef, service_doc: dict[str, Any] | None
    ) -> exposure.ProxySpec | exposure.NotExposed | None:
        if service_doc is None:
            return None
        service = exposure.RunService.from_json(service_doc, project=ref.project, region=ref.region)
        return exposure.desired(
            service, self.profiles, default_environments=self.settings.apigee_environments
        )

    def _rendered(
        self,
        ref: ServiceRef,
        contract: exposure.ProxySpec | exposure.NotExposed | None,
        current: Current | None,
        *,
        grant: bool,
        reread: bool = False,
    ) -> Desired:
        name = exposure.proxy_name(ref.project, ref.region, ref.service)
        if contract is None:
            return Desired(name, None, absent_reason="service deleted", service_exists=False)
        if isinstance(contract, exposure.NotExposed):
            return Desired(name, None, absent_reason=contract.reason)
        spec = contract
        proxy = current.proxy if current is not None else None
        if (
            spec.openapi is not None
            and proxy is not None
            and current is not None
            and proxy.labels.get(OWNER_LABEL) != self.settings.owner_id
            and not current.adoptable
        ):
            # someone else's proxy: the plan is a conflict whatever the content, so nothing is read
            return Desired(
                spec.proxy_name,
                DesiredProxy(spec.proxy_name, tuple(spec.environments), "", spec.base_path, spec.profile),
                contract=spec,
            )
        granted: list[bool] = []
        document, source = (
            self._spec(ref, spec, None if reread else current, grant=grant, granted=granted)
            if spec.openapi
            else (None, None)
        )
        profiles, owner_id = self.profiles, self.settings.owner_id
        if self.config_for is not None:
            profiles, owner_id = self.config_for(spec.proxy_name)
            if spec.profile not in profiles.names:
                profiles = self.profiles  # a profile new in this configuration: nothing to keep
        profile = profiles.get(spec.profile)
        bundle = bundles.render(spec, profile, owner_id=owner_id, openapi=document)
        labels: tuple[tuple[str, str], ...] = ()
        if document is not None:
            identity = document.identity if isinstance(document, OpenApiSpec) else document
            labels = ((SPEC_LABEL, identity.label),) + (((SPEC_SOURCE_LABEL, source),) if source else ())
        product = self._desired_product(spec, profile, document)
        return Desired(
            spec.proxy_name,
            DesiredProxy(
                spec.proxy_name,
                tuple(spec.environments),
                bundle.content_hash,
                spec.base_path,
                spec.profile,
                product_labels(product.name, product.content_hash) if product else {},
                spec_labels=labels,
            ),
            bundle.zip_bytes or None,
            contract=spec,
            spec=document if isinstance(document, OpenApiSpec) else None,
            invoker_granted=bool(granted),
            product=product,
        )

    def _desired_product(
        self, spec: exposure.ProxySpec, profile: Any, document: OpenApiSpec | SpecIdentity | None
    ) -> DesiredProduct | None:
        """The service's part of its API product (none for a profile without caller auth).

        With a spec, its paths are the operations and, for OAuth2 and JWT profiles, its security
        requirements the scopes. The product's hash then stands on the spec's identity, not on the
        operations, so that a spec known from the proxy's labels (not read: ``SpecIdentity``) gives
        the same hash; such a product is never written (``_resolved`` reads the spec first)."""
        if document is None:
            return products.for_service(spec, profile)
        scoped = profile.auth.mode in ("oauth2", "jwt")
        identity = document.identity if isinstance(document, OpenApiSpec) else document
        source = f"{identity.label}{':scoped' if scoped else ''}"
        if not isinstance(document, OpenApiSpec):
            return products.for_service(spec, profile, source=source)
        return products.for_service(
            spec,
            profile,
            operations=openapi.spec_operations(document.doc, base_path=spec.base_path),
            scopes=openapi.spec_scopes(document.doc) if scoped else (),
            source=source,
        )

    # -- OpenAPI specs --------------------------------------------------------------------------

    def _spec(
        self,
        ref: ServiceRef,
        spec: exposure.ProxySpec,
        current: Current | None,
        *,
        grant: bool,
        granted: list[bool],
    ) -> tuple[OpenApiSpec | SpecIdentity, str | None]:
        """The service's spec (read and validated), or only its identity when the proxy's labels
        show it was read from what is there now; and the source marker for SPEC_SOURCE_LABEL."""
        source = spec.openapi
        if source is None or self.specs is None:
            raise SpecError("this installation has no spec reader configured")
        labels = current.proxy.labels if current is not None and current.proxy is not None else {}
        known = (
            SpecIdentity.from_label(labels.get(SPEC_LABEL))
            if labels.get(OWNER_LABEL) == self.settings.owner_id
            else None
        )
        try:
            if source.path is not None:
                marker = spec.ready_revision
                if known is not None and marker is not None and labels.get(SPEC_SOURCE_LABEL) == marker:
                    return known, marker
                # a proxy that does not exist yet: its service account has no run.invoker on the
                # service, so it is granted first (the create plan would grant it anyway)
                new = current is not None and current.proxy is None
                content = self._service_spec(ref, spec, source.path, grant=grant, first=new, granted=granted)
            else:
                bucket, name = source.bucket or "", source.object or ""
                version = self.specs.object_version(bucket, name)
                marker = f"g{version.generation}"
                if known is not None and labels.get(SPEC_SOURCE_LABEL) == marker:
                    return known, marker
                if version.size > openapi.MAX_SPEC_BYTES:
                    raise SpecError(f"{source.uri} is larger than 2 MB ({version.size} bytes)")
                content = self.specs.object_bytes(
                    bucket, name, version.generation, limit=openapi.MAX_SPEC_BYTES
                )
        except (SpecError, TransientError):
            raise
        except PermanentError as exc:
            raise SpecError(f"cannot read the spec at {source.uri}: {exc}") from None
        return openapi.parse_spec(content), marker

    def _service_spec(
        self,
        ref: ServiceRef,
        spec: exposure.ProxySpec,
        path: str,
        *,
        grant: bool,
        first: bool = False,
        granted: list[bool],
    ) -> bytes:
        if self.specs is None:
            raise SpecError("this installation has no spec reader configured")
        shown = f"{spec.target_url}{path}"
        if grant and first:
            self.cloudrun.add_invoker(ref.project, ref.region, ref.service, self._member)
            granted.append(True)
        try:
            return self.specs.service_spec(spec.target_url, path, limit=openapi.MAX_SPEC_BYTES)
        except PermanentError as exc:
            if exc.status not in (401, 403):
                raise
            denied = exc.status
        # the proxy service account is granted run.invoker when the service is first registered;
        # a new service's spec is read before that, so the grant comes first when applying
        if not grant:
            raise SpecError(
                f"{shown} answered {denied} to {self.settings.proxy_service_account}, which is granted "
                "roles/run.invoker on the service when the plan is applied"
            )
        if not granted:
            if not self.cloudrun.add_invoker(ref.project, ref.region, ref.service, self._member):
                raise SpecError(
                    f"{shown} answered {denied} to {self.settings.proxy_service_account} although it holds "
                    "roles/run.invoker on the service"
                )
            granted.append(True)
            event(_log, "invoker granted to read the spec", proxy=spec.proxy_name, member=self._member)
            try:
                return self.specs.service_spec(spec.target_url, path, limit=openapi.MAX_SPEC_BYTES)
            except PermanentError as exc:
                if exc.status not in (401, 403):
                    raise
        raise TransientError(
            f"{shown} still answers {denied} just after granting roles/run.invoker "
            "(IAM changes take a while to reach Cloud Run); will retry"
        )

    def _resolved(
        self, ref: ServiceRef, want: Desired, the_plan: Plan, current: Current, *, grant: bool
    ) -> tuple[Desired, Plan]:
        """A plan that imports needs the bundle's bytes, and one that changes the proxy's product
        labels needs the spec's operations: read the spec a label stood in for, render, and plan
        again (the spec read may differ from what the label recorded). ``grant``: applying, so
        the bytes are needed too; in plan mode only the product needs them."""
        if want.bundle_zip is not None or want.contract is None or want.proxy is None:
            return want, the_plan
        imports = grant and any(isinstance(a, ImportBundle) for a in the_plan.actions)
        relabels = want.product is not None and any(isinstance(a, LabelProxy) for a in the_plan.actions)
        if not imports and not relabels:
            return want, the_plan
        full = self._rendered(ref, want.contract, None, grant=grant)
        return full, self._plan(ref, full, current)

    def _current(self, name: str) -> Current:
        proxy = self.apigee.get_proxy(name)
        if proxy is None:
            return Current(None)
        return self._with_revisions(proxy, tuple(self.apigee.list_proxy_deployments(name)))

    def _with_revisions(self, proxy: ProxyInfo, deployments: tuple[Deployment, ...]) -> Current:
        """The proxy, plus the revisions of ours that no label accounts for (imports whose labelling
        failed or whose answer was lost), read from the markers in their descriptions.

        An unlabelled proxy is adoptable when every revision carries this installation's marker,
        however many there are (reading newest first, the first foreign revision ends the search).
        A proxy labelled ours costs a read only per revision newer than the labelled one (none in
        the steady state); one labelled someone else's costs nothing."""
        owner = proxy.labels.get(OWNER_LABEL)
        if owner and owner != self.settings.owner_id:
            return Current(proxy, deployments)
        try:
            labelled = int(proxy.labels.get(REVISION_LABEL, "")) if owner else None
        except ValueError:
            labelled = None
        unlabelled: dict[int, str] = {}
        all_ours = bool(proxy.revisions)
        for read, revision in enumerate(sorted(proxy.revisions, reverse=True)):
            if owner and (read >= MAX_UNLABELLED_READS or (labelled is not None and revision <= labelled)):
                break
            try:
                markers = bundles.read_markers(self.apigee.revision_description(proxy.name, revision))
            except NotFoundError:
                continue  # deleted since the listing
            if markers.owner == self.settings.owner_id:
                unlabelled[revision] = markers.content_hash or ""  # "": older bundles carry no hash
            elif not owner:
                all_ours = False
                break
        return Current(proxy, deployments, adoptable=not owner and all_ours, unlabelled=unlabelled)

    def _plan(
        self, ref: ServiceRef, want: Desired, current: Current, claims: Sequence[PathClaim] | None = None
    ) -> Plan:
        """Plan; ``claims`` None: list the other services' base paths only if the plan deploys a
        base path that could be nested (one segment cannot: no base path is '/' alone)."""
        the_plan = self._plan_with(ref, want, current, claims or ())
        nestable = want.proxy is not None and len(path_segments(want.proxy.base_path)) > 1
        if claims is None and nestable and any(isinstance(a, Deploy) for a in the_plan.actions):
            the_plan = self._plan_with(ref, want, current, self._listed_claims(ref))
        return the_plan

    def _plan_with(
        self, ref: ServiceRef, want: Desired, current: Current, claims: Sequence[PathClaim]
    ) -> Plan:
        return plan(
            ref,
            want.proxy_name,
            want.proxy,
            current,
            owner_id=self.settings.owner_id,
            policy=self.settings.policy,
            keep_revisions=self.settings.keep_revisions,
            absent_reason=want.absent_reason,
            service_exists=want.service_exists,
            claims=claims,
        )

    # -- base paths other services claim ---------------------------------------------------------

    def _listed_claims(self, ref: ServiceRef) -> list[PathClaim]:
        """Every exposed service's base path, for a plan that is about to deploy: Apigee's
        deployment listings carry no base paths and its change report flags only identical ones,
        so the paths come from the contracts of the services in the configured projects x regions
        (and the event's own), one Cloud Run listing each."""
        scopes = dict.fromkeys(
            [(ref.project, ref.region)]
            + [(p, r) for p in self.settings.projects for r in self.settings.regions]
        )
        docs: dict[ServiceRef, dict[str, Any]] = {}
        for project, region in scopes:
            for page in self.cloudrun.list_services(project, region):
                for doc in page:
                    docs[ServiceRef(project, region, str(doc.get("name", "")).rsplit("/", 1)[-1])] = doc
        return self._claims(docs)

    def _claims(self, services: dict[ServiceRef, dict[str, Any]]) -> list[PathClaim]:
        """The base path each exposed service with a valid contract claims (others claim none)."""
        claims = []
        for ref, doc in services.items():
            try:
                service = exposure.RunService.from_json(doc, project=ref.project, region=ref.region)
                spec = exposure.desired(
                    service, self.profiles, default_environments=self.settings.apigee_environments
                )
            except GatehouseError:
                continue  # invalid or not ready: that service's own outcome says so
            if isinstance(spec, exposure.ProxySpec):
                claims.append(
                    PathClaim(
                        ref.key, spec.proxy_name, spec.base_path, spec.environments, spec.allow_subpaths
                    )
                )
        return claims

    # -- one service ----------------------------------------------------------------------------

    def reconcile_service(
        self, ref: ServiceRef, *, apply: bool = True, correlation_id: str | None = None
    ) -> Report:
        correlation_id = correlation_id or new_correlation_id()
        with bound(correlation_id=correlation_id, service=ref.key):
            foreign = self.settings.out_of_scope(ref.project, ref.region)
            if foreign is not None:
                # acknowledged, never acted on: no API call, no write, not even the status record
                return self._finish(
                    ref,
                    None,
                    OUT_OF_SCOPE,
                    foreign,
                    apply=apply,
                    correlation_id=correlation_id,
                    record=False,
                )
            with ExitStack() as cleanup:
                return self._reconcile_one(ref, apply, correlation_id, cleanup)

    def _reconcile_one(self, ref: ServiceRef, apply: bool, correlation_id: str, cleanup: ExitStack) -> Report:
        """A proxy lease taken here, before the proxy is read, is released by ``cleanup``."""
        held: Registrar._Held | None = None
        try:
            service_doc = self.cloudrun.get_service(ref.project, ref.region, ref.service)
            contract = self._contract(ref, service_doc)
            name = exposure.proxy_name(ref.project, ref.region, ref.service)
            if isinstance(contract, exposure.ProxySpec) and contract.openapi is not None:
                if apply:
                    # a spec read takes a while: holding the lease from before the proxy is read
                    # keeps the plan true until it is written, with one read of the proxy
                    held = self._take_lease(name, correlation_id)
                    cleanup.callback(self.coordinator.release, held.lease)
                # the proxy's labels say whether the spec must be read: read them first
                current = self._current(name)
                want = self._rendered(ref, contract, current, grant=apply)
            else:
                # render first: the proxy is read as late as possible before the lease is taken
                want = self._rendered(ref, contract, None, grant=apply)
                current = self._current(name)
            the_plan = self._plan(ref, want, current)
            want, the_plan = self._resolved(ref, want, the_plan, current, grant=apply)
            if apply and want.invoker_granted:
                the_plan = _without_grant(the_plan)
        except InputError as exc:
            return self._finish(
                ref,
                None,
                "error",
                f"invalid exposure settings: {exc}",
                apply=apply,
                correlation_id=correlation_id,
            )
        if not apply:
            return self._preview(ref, want, current, the_plan, correlation_id)
        if not the_plan.writes:
            return self._finish(
                ref,
                the_plan,
                the_plan.result,
                the_plan.reason,
                apply=apply,
                correlation_id=correlation_id,
                product=want.product.name if want.product else None,
            )
        return self._apply_under_lease(ref, want, the_plan, correlation_id, current=current, held=held)

    def _apply_under_lease(
        self,
        ref: ServiceRef,
        want: Desired,
        first_plan: Plan,
        correlation_id: str,
        claims: Sequence[PathClaim] | None = None,
        *,
        current: Current | None = None,
        force_products: bool = False,
        held: Registrar._Held | None = None,
    ) -> Report:
        """``held``: the proxy's lease, taken by the caller before it read ``current`` (and released
        by it); otherwise the lease is taken and released here."""
        lease = held or self._take_lease(want.proxy_name, correlation_id)
        product = want.product.name if want.product else None
        try:
            the_plan = first_plan
            done: list[ProductPlan] = []
            try:
                # someone may have finished the job while we waited, or while a spec was read
                # between reading the proxy and taking the lease: plan again from fresh state
                spec_import = (
                    want.contract is not None
                    and want.contract.openapi is not None
                    and any(isinstance(a, ImportBundle) for a in first_plan.actions)
                )
                if current is None or (held is None and (lease.waited or spec_import)):
                    granted = want.invoker_granted
                    current = self._current(want.proxy_name)
                    the_plan = self._plan(ref, want, current, claims)
                    want, the_plan = self._resolved(ref, want, the_plan, current, grant=True)
                    if granted or want.invoker_granted:
                        the_plan = _without_grant(the_plan)
                if the_plan.writes or force_products:
                    done = self._apply_products(want, current, the_plan, correlation_id, force=force_products)
                    stop = next((p for p in done if p.result in ("conflict", "error")), None)
                    if stop is not None:
                        report = self._finish(
                            ref,
                            the_plan,
                            stop.result,
                            stop.reason + "; nothing was changed",
                            apply=True,
                            correlation_id=correlation_id,
                            product=product,
                        )
                        report.products = done
                        return report
                if self.before_apply is not None and the_plan.writes:
                    self.before_apply()
                applied = self.executor.apply(the_plan, want.bundle_zip)
            except TransientError:
                raise
            except GatehouseError as exc:
                result = "conflict" if exc.__class__.__name__ == "ConflictError" else "error"
                report = self._finish(
                    ref,
                    the_plan,
                    result,
                    str(exc),
                    apply=True,
                    correlation_id=correlation_id,
                    product=product,
                )
                report.products = done
                return report
            wrote = any(p.writes for p in done)
            report = self._finish(
                ref,
                the_plan,
                "registered" if wrote and applied.result == "unchanged" else applied.result,
                applied.reason + _product_note(done),
                apply=True,
                correlation_id=correlation_id,
                revision=applied.revision,
                product=product,
            )
            report.products = done
            return report
        finally:
            if held is None:
                self.coordinator.release(lease.lease)

    # -- API products -----------------------------------------------------------------------------

    def _product_changes(
        self, want: Desired, current: Current, the_plan: Plan, *, force: bool = False
    ) -> list[tuple[str, str]]:
        """The products to look at, as (name, "join" | "leave"): only when the proxy's product
        labels are about to change, so a service whose labels match costs no product read."""
        proxy = current.proxy
        labels = proxy.labels if proxy is not None else {}
        if the_plan.result in ("conflict", "skip"):
            return []
        wanted = want.proxy.product_labels if want.proxy is not None else {}
        now = {k: labels[k] for k in (PRODUCT_LABEL, PRODUCT_HASH_LABEL) if k in labels}
        relabels = any(isinstance(a, LabelProxy) for a in the_plan.actions)
        if not force and (now == dict(wanted) or not relabels):
            return []
        changes: list[tuple[str, str]] = []
        if want.product is not None:
            changes.append((want.product.name, "join"))
        old = labels.get(PRODUCT_LABEL)
        if old and (want.product is None or old != want.product.name):
            changes.append((old, "leave"))
        return changes

    def _product_plans(self, want: Desired, changes: list[tuple[str, str]]) -> list[ProductPlan]:
        found = []
        for name, kind in changes:
            doc = self.apigee.get_product(name)
            current = products.Product.from_json(doc) if doc is not None else None
            if kind == "join" and want.product is not None:
                found.append(
                    products.plan_product(
                        want.product, current, owner_id=self.settings.owner_id, policy=self.settings.policy
                    )
                )
            else:
                found.append(
                    products.plan_leave(name, want.proxy_name, current, owner_id=self.settings.owner_id)
                )
        return found

    def _apply_products(
        self, want: Desired, current: Current, the_plan: Plan, holder: str, *, force: bool = False
    ) -> list[ProductPlan]:
        """Read, plan and write the products this plan touches, each under its own lease (products
        have no etag: an update replaces the whole product, so two services joining at once must
        not interleave their read and write). Nothing is written if any plan is a conflict."""
        changes = self._product_changes(want, current, the_plan, force=force)
        if not changes:
            return []
        leases = [self._take_lease(f"apiproduct:{name}", holder) for name in sorted({n for n, _ in changes})]
        try:
            planned = self._product_plans(want, changes)
            if any(p.result in ("conflict", "error") for p in planned):
                return planned
            for p in planned:
                self._write_product(p)
            return planned
        finally:
            for held in leases:
                self.coordinator.release(held.lease)

    def _write_product(self, p: ProductPlan) -> None:
        if p.result == "create" and p.product is not None:
            try:
                self.apigee.create_product(p.product.to_json())
            except ConflictError as exc:
                # created meanwhile by someone without our lease (a person), or our own create
                # whose answer was lost: the next attempt reads it and plans again
                raise TransientError(f"API product {p.name} appeared while creating it; will retry") from exc
        elif p.result == "update" and p.product is not None:
            self.apigee.update_product(p.name, p.product.to_json())
        elif p.result == "delete":
            self.apigee.delete_product(p.name)
        else:
            return
        event(
            _log,
            f"API product {p.result}d" if p.result != "delete" else "API product deleted",
            product=p.name,
        )

    def _preview(
        self, ref: ServiceRef, want: Desired, current: Current, the_plan: Plan, correlation_id: str
    ) -> Report:
        """A plan-mode report: the proxy plan plus what would happen to the products (reads only)."""
        planned = self._product_plans(want, self._product_changes(want, current, the_plan))
        stop = next((p for p in planned if p.result in ("conflict", "error")), None)
        result, reason = (stop.result, stop.reason) if stop else (the_plan.result, the_plan.reason)
        report = self._finish(
            ref,
            the_plan,
            result,
            reason + ("" if stop else _product_note(planned)),
            apply=False,
            correlation_id=correlation_id,
            product=want.product.name if want.product else None,
        )
        report.products = planned
        return report

    @dataclass
    class _Held:
        lease: Any
        waited: bool

    def _take_lease(self, key: str, holder: str) -> Registrar._Held:
        deadline = time.monotonic() + self.lease_patience
        waited = False
        while True:
            lease = self.coordinator.acquire(key, holder, self.settings.lease_seconds)
            if lease is not None:
                return Registrar._Held(lease, waited)
            if time.monotonic() >= deadline:
                raise TransientError(f"another instance is registering {key}; will retry")
            waited = True
            self.sleep(0.5)

    def _finish(
        self,
        ref: ServiceRef,
        the_plan: Plan | None,
        result: str,
        reason: str,
        *,
        apply: bool,
        correlation_id: str,
        revision: int | None = None,
        record: bool = True,
        product: str | None = None,
    ) -> Report:
        outcome = Outcome(
            key=ref.key,
            result=result,
            reason=reason,
            proxy=the_plan.proxy if the_plan else None,
            revision=revision,
            at=_now(),
            correlation_id=correlation_id,
            product=product,
        )
        level = 40 if result in ("error", "conflict") else 30 if result == OUT_OF_SCOPE else 20
        event(
            _log,
            f"service {result}",
            level=level,
            result=result,
            reason=reason,
            proxy=outcome.proxy,
            product=product,
            revision=revision,
            mode="apply" if apply else "plan",
            actions=the_plan.describe() if the_plan else [],
        )
        if apply and record:
            self.coordinator.record(outcome)
        return Report(ref, the_plan, outcome)

    # -- the whole fleet --------------------------------------------------------------------------

    def sweep(
        self,
        *,
        apply: bool,
        only: Iterable[ServiceRef] | None = None,
        progress: Callable[[int, int | None], None] | None = None,
        workers: int = 4,
        check_invokers: bool | None = None,
    ) -> SweepReport:
        """Reconcile every service of the configured projects x regions, plus orphaned proxies.

        ``check_invokers`` (default: ``apply``) reads each registered service's IAM policy and
        restores a missing run.invoker binding of the proxy service account (module docstring)."""
        if not self.settings.projects or not self.settings.regions:
            raise InputError("a full reconcile needs GATEHOUSE_PROJECTS and GATEHOUSE_REGIONS")
        correlation_id = new_correlation_id()
        report = SweepReport()
        with bound(correlation_id=correlation_id, component="sweep"):
            services: dict[ServiceRef, dict[str, Any]] = {}
            for project in self.settings.projects:
                for region in self.settings.regions:
                    for page in self.cloudrun.list_services(project, region):
                        for doc in page:
                            ref = ServiceRef(project, region, str(doc.get("name", "")).rsplit("/", 1)[-1])
                            services[ref] = doc
            proxies = {p.name: p for p in self.apigee.list_proxies()}
            deployments: dict[str, list[Deployment]] = {}
            for d in self.apigee.list_org_deployments():
                deployments.setdefault(d.proxy.rsplit("/", 1)[-1], []).append(d)

            claims = self._claims(services)
            swept = {(p, r) for p in self.settings.projects for r in self.settings.regions}
            refs = list(services)
            refs += [self._orphan_ref(p) for p in proxies.values() if self._is_orphan(p, services, swept)]
            if only is not None:
                wanted = set(only)
                refs = [r for r in refs if r in wanted]
            total = len(refs)
            if progress:
                progress(0, total)
            to_apply: list[tuple[ServiceRef, Desired, Plan]] = []
            outcomes: list[Outcome] = []
            in_place: list[int] = []  # indexes of unchanged, registered services: drift candidates
            wants: dict[int, Desired] = {}
            for done, ref in enumerate(refs, 1):
                name = exposure.proxy_name(ref.project, ref.region, ref.service)
                try:
                    contract = self._contract(ref, services.get(ref))
                    proxy = proxies.get(name)
                    listed = tuple(deployments.get(name, []))
                    current = Current(None) if proxy is None else self._with_revisions(proxy, listed)
                    # every spec is read again, whatever the labels say
                    want = self._rendered(ref, contract, current, grant=apply, reread=True)
                except GatehouseError as exc:
                    why = (
                        f"transient, will be retried: {exc}"
                        if isinstance(exc, TransientError)
                        else f"invalid exposure settings: {exc}"
                    )
                    r = self._finish(
                        ref, None, "error", why, apply=apply, correlation_id=correlation_id, record=False
                    )
                    report.reports.append(r)
                    outcomes.append(r.outcome)
                else:
                    the_plan = self._plan(ref, want, current, claims)
                    if apply and the_plan.writes:
                        to_apply.append((ref, want, the_plan))
                    else:
                        planned = (
                            self._product_plans(want, self._product_changes(want, current, the_plan))
                            if the_plan.writes
                            else []
                        )
                        r = Report(
                            ref,
                            the_plan,
                            Outcome(
                                ref.key,
                                the_plan.result,
                                the_plan.reason + _product_note(planned),
                                the_plan.proxy,
                                at=_now(),
                                correlation_id=correlation_id,
                                product=want.product.name if want.product else None,
                            ),
                            planned,
                        )
                        if the_plan.result == "unchanged" and want.proxy is not None:
                            in_place.append(len(report.reports))
                            wants[len(report.reports)] = want
                        report.reports.append(r)
                        outcomes.append(r.outcome)
                if progress:
                    progress(done, total)
            refresh = self._product_drift(report, outcomes, wants, apply=apply) if wants else []
            to_restore: list[Plan] = []
            if in_place and (apply if check_invokers is None else check_invokers):
                to_restore = self._invoker_drift(report, outcomes, in_place, apply=apply, workers=workers)
            if apply and outcomes:
                self.coordinator.record_many(outcomes)
            if to_apply or to_restore or refresh:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    for r in pool.map(lambda item: self._apply_one(*item, claims=claims), to_apply):
                        report.reports.append(r)
                    for r in pool.map(self._restore_invoker, to_restore):
                        report.reports.append(r)
                    fixed = list(
                        pool.map(
                            lambda item: self._apply_one(*item, claims=claims, force_products=True), refresh
                        )
                    )
                if fixed:
                    # the product fix replaces the "unchanged" row of the same service
                    again = {r.ref for r in fixed}
                    report.reports[:] = [
                        r for r in report.reports if r.ref not in again or r.outcome.result != "unchanged"
                    ] + fixed
        return report

    # -- product drift ----------------------------------------------------------------------------

    def _product_drift(
        self, report: SweepReport, outcomes: list[Outcome], wants: dict[int, Desired], *, apply: bool
    ) -> list[tuple[ServiceRef, Desired, Plan]]:
        """Products changed by hand (a config removed, the product deleted, a field edited) behind
        services whose labels say it is current: one listing of every product (a page per 1,000),
        each in-place service's part compared with it. In a plan the row shows what a run would do;
        applying, the returned services are reconciled with their products read and written."""
        listed = {str(doc.get("name", "")): doc for doc in self.apigee.list_products()}
        refresh = []
        for index, want in wants.items():
            if want.product is None:
                continue
            doc = listed.get(want.product.name)
            current = products.Product.from_json(doc) if doc is not None else None
            fix = products.plan_product(
                want.product, current, owner_id=self.settings.owner_id, policy=self.settings.policy
            )
            if not fix.writes and fix.result not in ("conflict", "error"):
                continue
            old = report.reports[index]
            event(_log, "product drift", level=30, service=old.ref.key, product=fix.name, result=fix.result)
            if apply and fix.writes and old.plan is not None:
                refresh.append((old.ref, want, old.plan))
                continue
            result = fix.result if fix.result in ("conflict", "error") else "update"
            outcome = replace(old.outcome, result=result, reason=f"{fix.reason} (changed by hand?)")
            report.reports[index] = Report(old.ref, old.plan, outcome, [fix])
            outcomes[index] = outcome
        return refresh

    # -- invoker drift ----------------------------------------------------------------------------

    @property
    def _member(self) -> str:
        return f"serviceAccount:{self.settings.proxy_service_account}"

    def _invoker_drift(
        self, report: SweepReport, outcomes: list[Outcome], in_place: list[int], *, apply: bool, workers: int
    ) -> list[Plan]:
        """Read the IAM policy of each in-place service (``workers`` at a time). Where the binding
        is gone: in a plan, its report shows the grant; applying, its report and outcome are
        dropped here and the returned plans (one ``GrantInvoker`` each) are executed later."""

        def check(index: int) -> bool | GatehouseError:
            ref = report.reports[index].ref
            try:
                return self.cloudrun.has_invoker(ref.project, ref.region, ref.service, self._member)
            except GatehouseError as exc:
                return exc

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            found = dict(zip(in_place, pool.map(check, in_place), strict=True))
        restore: list[Plan] = []
        dropped: set[int] = set()
        for index, has in found.items():
            if has is True:
                continue
            old = report.reports[index]
            if isinstance(has, GatehouseError):
                outcome = replace(
                    old.outcome, result="error", reason=f"could not read the run.invoker policy: {has}"
                )
                report.reports[index] = Report(old.ref, old.plan, outcome)
                outcomes[index] = outcome
                continue
            fix = Plan(
                old.ref,
                old.outcome.proxy or "",
                "update",
                f"the roles/run.invoker binding of {self._member} is missing (removed by hand?); "
                "granting it again",
                (GrantInvoker(),),
            )
            event(_log, "invoker drift", level=30, service=old.ref.key, proxy=fix.proxy, member=self._member)
            if apply:
                restore.append(fix)
                dropped.add(index)
            else:
                outcome = replace(old.outcome, result=fix.result, reason=fix.reason)
                report.reports[index] = Report(old.ref, fix, outcome)
                outcomes[index] = outcome
        if dropped:
            report.reports[:] = [r for i, r in enumerate(report.reports) if i not in dropped]
            outcomes[:] = [o for i, o in enumerate(outcomes) if i not in dropped]
        return restore

    def _restore_invoker(self, fix: Plan) -> Report:
        """Grant the binding again: an idempotent, etag-guarded edit of the service's policy, so it
        needs no proxy lease (nothing in Apigee changes)."""
        correlation_id = new_correlation_id()
        with bound(correlation_id=correlation_id, service=fix.ref.key):
            try:
                applied = self.executor.apply(fix, None)
            except GatehouseError as exc:
                why = f"transient, will be retried: {exc}" if isinstance(exc, TransientError) else str(exc)
                return self._finish(fix.ref, fix, "error", why, apply=True, correlation_id=correlation_id)
            return self._finish(
                fix.ref, fix, applied.result, applied.reason, apply=True, correlation_id=correlation_id
            )

    def _apply_one(
        self,
        ref: ServiceRef,
        want: Desired,
        the_plan: Plan,
        *,
        claims: Sequence[PathClaim],
        force_products: bool = False,
    ) -> Report:
        correlation_id = new_correlation_id()
        with bound(correlation_id=correlation_id, service=ref.key):
            try:
                # fresh state under the lease: the bulk listing may be minutes old
                current = self._current(want.proxy_name)
                fresh = self._plan(ref, want, current, claims)
                return self._apply_under_lease(
                    ref, want, fresh, correlation_id, claims, current=current, force_products=force_products
                )
            except TransientError as exc:
                return self._finish(
                    ref,
                    the_plan,
                    "error",
                    f"transient, will be retried: {exc}",
                    apply=True,
                    correlation_id=correlation_id,
                )
            except PermanentError as exc:
                return self._finish(
                    ref, the_plan, "error", str(exc), apply=True, correlation_id=correlation_id
                )

    @staticmethod
    def _is_orphan(proxy: ProxyInfo, services: dict[ServiceRef, Any], swept: set[tuple[str, str]]) -> bool:
        labels = proxy.labels
        project, region, service = (
            labels.get(PROJECT_LABEL),
            labels.get(REGION_LABEL),
            labels.get(SERVICE_LABEL),
        )
        if not (project and region and service) or (project, region) not in swept:
            return False
        return ServiceRef(project, region, service) not in services

    @staticmethod
    def _orphan_ref(proxy: ProxyInfo) -> ServiceRef:
        labels = proxy.labels
        return ServiceRef(labels[PROJECT_LABEL], labels[REGION_LABEL], labels[SERVICE_LABEL])


def _product_note(done: Sequence[ProductPlan]) -> str:
    return "".join(f"; {p.reason}" for p in done if p.writes)


def _without_grant(the_plan: Plan) -> Plan:
    """The plan less its run.invoker grant: granted a moment ago, to read the service's spec."""
    return replace(the_plan, actions=tuple(a for a in the_plan.actions if not isinstance(a, GrantInvoker)))
