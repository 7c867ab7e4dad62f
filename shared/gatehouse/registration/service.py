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
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from gatehouse import bundle as bundles
from gatehouse import exposure
from gatehouse.config import Settings
from gatehouse.errors import GatehouseError, InputError, NotFoundError, PermanentError, TransientError
from gatehouse.logging import bound, event, get_logger, new_correlation_id
from gatehouse.ports import ApigeeApi, CloudRunApi, Coordinator, Deployment, Outcome, ProxyInfo
from gatehouse.profiles import ProfileSet
from gatehouse.registration.executor import Executor
from gatehouse.registration.plan import (
    OWNER_LABEL,
    PROJECT_LABEL,
    REGION_LABEL,
    REVISION_LABEL,
    SERVICE_LABEL,
    Current,
    Deploy,
    DesiredProxy,
    GrantInvoker,
    PathClaim,
    Plan,
    ServiceRef,
    path_segments,
    plan,
)

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
    bundle_zip: bytes | None = None
    absent_reason: str = ""
    service_exists: bool = True


@dataclass
class Report:
    """One service's plan and, when applied, its outcome."""

    ref: ServiceRef
    plan: Plan | None
    outcome: Outcome


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
        config_for: Callable[[str], tuple[ProfileSet, str]] | None = None,
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
        # proxy name -> (profiles, owner id) it renders with: while a fleet change waits for or
        # runs as a rollout, a proxy the rollout has not reached keeps the running configuration
        self.config_for = config_for
        self.executor = Executor(
            apigee,
            cloudrun,
            settings.proxy_service_account,
            deploy_timeout=settings.deploy_timeout_seconds,
            poll_interval=settings.deploy_poll_seconds,
            sleep=sleep,
        )

    # -- desired state ------------------------------------------------------------------------

    def desired(self, ref: ServiceRef, service_doc: dict[str, Any] | None) -> Desired:
        """Pure but for rendering; raises InputError for a service whose contract is invalid."""
        name = exposure.proxy_name(ref.project, ref.region, ref.service)
        if service_doc is None:
            return Desired(name, None, absent_reason="service deleted", service_exists=False)
        service = exposure.RunService.from_json(service_doc, project=ref.project, region=ref.region)
        spec = exposure.desired(
            service, self.profiles, default_environments=self.settings.apigee_environments
        )
        if isinstance(spec, exposure.NotExposed):
            return Desired(name, None, absent_reason=spec.reason)
        profiles, owner_id = self.profiles, self.settings.owner_id
        if self.config_for is not None:
            profiles, owner_id = self.config_for(spec.proxy_name)
            if spec.profile not in profiles.names:
                profiles = self.profiles  # a profile new in this configuration: nothing to keep
        bundle = bundles.render(spec, profiles.get(spec.profile), owner_id=owner_id)
        return Desired(
            spec.proxy_name,
            DesiredProxy(
                spec.proxy_name, tuple(spec.environments), bundle.content_hash, spec.base_path, spec.profile
            ),
            bundle.zip_bytes,
        )

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
            try:
                service_doc = self.cloudrun.get_service(ref.project, ref.region, ref.service)
                want = self.desired(ref, service_doc)
            except InputError as exc:
                return self._finish(
                    ref,
                    None,
                    "error",
                    f"invalid exposure settings: {exc}",
                    apply=apply,
                    correlation_id=correlation_id,
                )
            current = self._current(want.proxy_name)
            the_plan = self._plan(ref, want, current)
            if not apply or not the_plan.writes:
                return self._finish(
                    ref,
                    the_plan,
                    the_plan.result,
                    the_plan.reason,
                    apply=apply,
                    correlation_id=correlation_id,
                )
            return self._apply_under_lease(ref, want, the_plan, correlation_id)

    def _apply_under_lease(
        self,
        ref: ServiceRef,
        want: Desired,
        first_plan: Plan,
        correlation_id: str,
        claims: Sequence[PathClaim] | None = None,
    ) -> Report:
        lease = self._take_lease(want.proxy_name, correlation_id)
        try:
            # someone may have finished the job while we waited: plan again from fresh state
            the_plan = (
                self._plan(ref, want, self._current(want.proxy_name), claims) if lease.waited else first_plan
            )
            try:
                applied = self.executor.apply(the_plan, want.bundle_zip)
            except TransientError:
                raise
            except GatehouseError as exc:
                result = "conflict" if exc.__class__.__name__ == "ConflictError" else "error"
                return self._finish(
                    ref, the_plan, result, str(exc), apply=True, correlation_id=correlation_id
                )
            return self._finish(
                ref,
                the_plan,
                applied.result,
                applied.reason,
                apply=True,
                correlation_id=correlation_id,
                revision=applied.revision,
            )
        finally:
            self.coordinator.release(lease.lease)

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
    ) -> Report:
        outcome = Outcome(
            key=ref.key,
            result=result,
            reason=reason,
            proxy=the_plan.proxy if the_plan else None,
            revision=revision,
            at=_now(),
            correlation_id=correlation_id,
        )
        level = 40 if result in ("error", "conflict") else 30 if result == OUT_OF_SCOPE else 20
        event(
            _log,
            f"service {result}",
            level=level,
            result=result,
            reason=reason,
            proxy=outcome.proxy,
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
            for done, ref in enumerate(refs, 1):
                try:
                    want = self.desired(ref, services.get(ref))
                except GatehouseError as exc:
                    r = self._finish(
                        ref,
                        None,
                        "error",
                        f"invalid exposure settings: {exc}",
                        apply=apply,
                        correlation_id=correlation_id,
                        record=False,
                    )
                    report.reports.append(r)
                    outcomes.append(r.outcome)
                else:
                    proxy = proxies.get(want.proxy_name)
                    listed = tuple(deployments.get(want.proxy_name, []))
                    current = Current(None) if proxy is None else self._with_revisions(proxy, listed)
                    the_plan = self._plan(ref, want, current, claims)
                    if apply and the_plan.writes:
                        to_apply.append((ref, want, the_plan))
                    else:
                        r = Report(
                            ref,
                            the_plan,
                            Outcome(
                                ref.key,
                                the_plan.result,
                                the_plan.reason,
                                the_plan.proxy,
                                at=_now(),
                                correlation_id=correlation_id,
                            ),
                        )
                        if the_plan.result == "unchanged" and want.proxy is not None:
                            in_place.append(len(report.reports))
                        report.reports.append(r)
                        outcomes.append(r.outcome)
                if progress:
                    progress(done, total)
            to_restore: list[Plan] = []
            if in_place and (apply if check_invokers is None else check_invokers):
                to_restore = self._invoker_drift(report, outcomes, in_place, apply=apply, workers=workers)
            if apply and outcomes:
                self.coordinator.record_many(outcomes)
            if to_apply or to_restore:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    for r in pool.map(lambda item: self._apply_one(*item, claims=claims), to_apply):
                        report.reports.append(r)
                    for r in pool.map(self._restore_invoker, to_restore):
                        report.reports.append(r)
        return report

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
        self, ref: ServiceRef, want: Desired, the_plan: Plan, *, claims: Sequence[PathClaim]
    ) -> Report:
        correlation_id = new_correlation_id()
        with bound(correlation_id=correlation_id, service=ref.key):
            try:
                # fresh state under the lease: the bulk listing may be minutes old
                current = self._current(want.proxy_name)
                fresh = self._plan(ref, want, current, claims)
                return self._apply_under_lease(ref, want, fresh, correlation_id, claims)
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
