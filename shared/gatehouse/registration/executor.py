"""Apply a registration plan through the ports, safely.

Order matters: every environment's deploy change report is checked before anything is deployed
(a base-path conflict fails the service and deploys nothing); each deployment is watched to
READY; a deployment that ends in ERROR (or READY with its base path not routed) is rolled back to
the revision it replaced and the failure is reported.

An import is never repeated blindly: each one that lands creates a revision. When its answer is
lost (a 5xx or a timeout), the executor looks for a revision whose description carries the
bundle's content hash and carries on with it; if there is none, the error surfaces as transient
and the next delivery plans again from what Apigee then has.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gatehouse.bundle import read_markers
from gatehouse.errors import ConflictError, NotFoundError, PermanentError, TransientError
from gatehouse.logging import event, get_logger
from gatehouse.ports import ApigeeApi, CloudRunApi, DeploymentStatus
from gatehouse.registration.plan import (
    FAILED_LABEL,
    NEW,
    REVISION_LABEL,
    Deploy,
    GrantInvoker,
    ImportBundle,
    LabelProxy,
    Plan,
    Prune,
    RevokeInvoker,
    Undeploy,
)

_log = get_logger("registration")
MAX_PRUNE_PER_RUN = 20  # bounds the calls one event may spend on housekeeping
MAX_LOST_IMPORT_READS = 20  # revisions read to find the one a lost import answer created


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Applied:
    """What executing a plan did."""

    result: str
    reason: str
    revision: int | None = None


@dataclass
class Executor:
    apigee: ApigeeApi
    cloudrun: CloudRunApi
    proxy_service_account: str
    deploy_timeout: float = 300.0
    poll_interval: float = 2.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def apply(self, plan: Plan, bundle_zip: bytes | None) -> Applied:
        if not plan.writes:
            return Applied(plan.result, plan.reason)
        ref, name = plan.ref, plan.proxy
        member = f"serviceAccount:{self.proxy_service_account}"
        new_revision: int | None = None
        labelled: int | None = None
        labels: dict[str, str] = {}
        deploys = [a for a in plan.actions if isinstance(a, Deploy)]

        for action in plan.actions:
            if isinstance(action, GrantInvoker):
                changed = self.cloudrun.add_invoker(ref.project, ref.region, ref.service, member)
                event(
                    _log,
                    "invoker granted" if changed else "invoker already granted",
                    proxy=name,
                    member=member,
                )
            elif isinstance(action, ImportBundle):
                if bundle_zip is None:
                    raise PermanentError("plan imports a bundle but none was rendered")
                new_revision = self._import(name, action, bundle_zip)
                event(_log, "bundle imported", proxy=name, revision=new_revision)
            elif isinstance(action, LabelProxy):
                labels = dict(action.labels)
                if new_revision is not None:
                    labels[REVISION_LABEL] = str(new_revision)
                self.apigee.set_labels(name, labels)
                labelled = _int(labels.get(REVISION_LABEL))
            elif isinstance(action, Deploy):
                if action is deploys[0]:
                    self._check_routes(name, deploys, new_revision)
                revision = self._resolve(action.revision, new_revision)
                self._deploy_and_watch(name, action, revision, labels)
            elif isinstance(action, Undeploy):
                self.apigee.undeploy(action.environment, name, action.revision)
                event(
                    _log, "undeployed", proxy=name, environment=action.environment, revision=action.revision
                )
            elif isinstance(action, RevokeInvoker):
                self.cloudrun.remove_invoker(ref.project, ref.region, ref.service, member)
            elif isinstance(action, Prune):
                self._prune(name, action, new_revision)

        final_revision = new_revision if new_revision is not None else labelled
        if final_revision is None and deploys:
            final_revision = deploys[0].revision
        result = {
            "create": "registered",
            "update": "registered",
            "redeploy": "registered",
            "unregister": "unregistered",
        }.get(plan.result, plan.result)
        return Applied(result, plan.reason, final_revision)

    def _import(self, name: str, action: ImportBundle, bundle_zip: bytes) -> int:
        try:
            return self.apigee.import_bundle(name, bundle_zip)
        except TransientError as exc:
            if not action.content_hash or exc.status == 429:
                raise  # 429: refused before it did anything
            lost = exc
        # the import may have landed: find its revision before anyone imports again
        found = self._find_imported(name, action)
        if found is None:
            raise TransientError(
                f"{lost}; no revision of {name} holds the bundle, so the import did not land; "
                "the next attempt plans again"
            ) from lost
        event(_log, "import answer lost; found the revision it created", proxy=name, revision=found)
        return found

    def _find_imported(self, name: str, action: ImportBundle) -> int | None:
        proxy = self.apigee.get_proxy(name)
        if proxy is None:
            return None
        known = set(action.known)
        newer = sorted((r for r in proxy.revisions if r not in known), reverse=True)
        for revision in newer[:MAX_LOST_IMPORT_READS]:
            try:
                description = self.apigee.revision_description(name, revision)
            except NotFoundError:
                continue
            if read_markers(description).content_hash == action.content_hash:
                return revision
        return None

    @staticmethod
    def _resolve(revision: int, new_revision: int | None) -> int:
        if revision != NEW:
            return revision
        if new_revision is None:
            raise PermanentError("plan deploys the new revision before importing it")
        return new_revision

    def _check_routes(self, name: str, deploys: list[Deploy], new_revision: int | None) -> None:
        """Dry-run every deployment first: one conflict fails the service before anything changes."""
        for action in deploys:
            revision = self._resolve(action.revision, new_revision)
            report = self.apigee.change_report(action.environment, name, revision)
            if report.conflicts:
                c = report.conflicts[0]
                raise ConflictError(
                    f"base path {c.base_path or '?'} in environment {c.environment or action.environment} is "
                    f"already served by proxy {c.other_proxy}; nothing was deployed"
                    + (f" ({c.description})" if c.description else "")
                )
            if report.validation_errors:
                raise PermanentError(
                    f"Apigee rejects deploying {name} r{revision} to {action.environment}: "
                    + "; ".join(report.validation_errors)
                )

    def _deploy_and_watch(self, name: str, action: Deploy, revision: int, labels: dict[str, str]) -> None:
        env = action.environment
        self.apigee.deploy(env, name, revision, service_account=self.proxy_service_account)
        event(_log, "deploy requested", proxy=name, environment=env, revision=revision)
        status = self._watch(env, name, revision)
        if status.state == "READY" and not status.conflicts:
            event(_log, "deployment ready", proxy=name, environment=env, revision=revision)
            return
        if status.state in ("PROGRESSING", "RUNTIME_STATE_UNSPECIFIED"):
            raise TransientError(
                f"deployment of {name} r{revision} in {env} still {status.state} after "
                f"{self.deploy_timeout:.0f}s; will look again"
            )
        why = "; ".join(status.errors) or (
            f"base path not routed: conflicts with proxy {status.conflicts[0].other_proxy}"
            if status.conflicts
            else f"state {status.state}"
        )
        restored = self._roll_back(env, name, revision, action.previous)
        if labels:
            self.apigee.set_labels(name, {**labels, FAILED_LABEL: str(revision)})
        event(
            _log,
            "deployment failed",
            level=40,
            proxy=name,
            environment=env,
            revision=revision,
            errors=why,
            restored=restored,
        )
        raise PermanentError(
            f"revision {revision} of {name} failed in {env}: {why}; "
            + (
                f"restored revision {restored}"
                if restored is not None
                else "undeployed it (no earlier revision)"
            )
        )

    def _watch(self, env: str, name: str, revision: int) -> DeploymentStatus:
        deadline = self.clock() + self.deploy_timeout
        # a deployment is never ready the instant it is requested; the first look waits a little
        delay = min(0.5, self.poll_interval)
        while True:
            self.sleep(delay)
            status = self.apigee.deployment_status(env, name, revision)
            if status.state in ("READY", "ERROR") or self.clock() >= deadline:
                return status
            delay = min(self.poll_interval, delay * 2)

    def _roll_back(self, env: str, name: str, failed: int, previous: int | None) -> int | None:
        if previous is not None and previous != failed:
            self.apigee.deploy(env, name, previous, service_account=self.proxy_service_account)
            self._watch(env, name, previous)
            return previous
        self.apigee.undeploy(env, name, failed)
        return None

    def _prune(self, name: str, action: Prune, new_revision: int | None) -> None:
        revisions = sorted({*action.existing, *([new_revision] if new_revision is not None else [])})
        protected = set(revisions[-action.keep :]) | set(action.protected)
        if new_revision is not None:
            protected.add(new_revision)
        extras = [r for r in action.extras if r != new_revision and r not in action.protected]
        doomed = sorted({*extras, *(r for r in revisions if r not in protected)})[:MAX_PRUNE_PER_RUN]
        for revision in doomed:
            self.apigee.delete_revision(name, revision)
        if doomed:
            event(_log, "old revisions pruned", proxy=name, deleted=doomed)
