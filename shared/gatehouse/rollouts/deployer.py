"""The rollout's ``Deployer`` and ``Tickets`` over registration and the tickets tracker.

A wave's deploy is registration's own (change report, deploy with override, watch to READY, roll
back on ERROR, under the per-proxy lease), rendered with the configuration under test; a restore
deploys the recorded previous revision with ``override`` and puts the labels back, so the next
sweep sees the proxy as registration left it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gatehouse.errors import PermanentError
from gatehouse.ports import ApigeeApi
from gatehouse.registration.plan import ServiceRef
from gatehouse.rollouts.fleet import FleetConfig
from gatehouse.rollouts.waves import Member


class RegistrarDeployer:
    def __init__(
        self, apigee: ApigeeApi, registrar_for: Callable[[FleetConfig], object], service_account: str
    ) -> None:
        self.apigee = apigee
        self.registrar_for = registrar_for
        self.service_account = service_account

    def current(self, proxy: str) -> tuple[dict[str, int], dict[str, str]]:
        info = self.apigee.get_proxy(proxy)
        deployed = {d.environment: d.revision for d in self.apigee.list_proxy_deployments(proxy)}
        return deployed, dict(info.labels) if info else {}

    def deploy(self, member: Member, config: FleetConfig) -> int | None:
        registrar = self.registrar_for(config)
        report = registrar.reconcile_service(ServiceRef.parse(member.service))  # type: ignore[attr-defined]
        if report.outcome.result in ("error", "conflict"):
            raise PermanentError(report.outcome.reason)
        return report.outcome.revision  # type: ignore[no-any-return]

    def restore(self, proxy: str, previous: Mapping[str, int], labels: Mapping[str, str]) -> None:
        now = {d.environment: d.revision for d in self.apigee.list_proxy_deployments(proxy)}
        for env, revision in sorted(previous.items()):
            if revision and now.get(env) != revision:
                self.apigee.deploy(env, proxy, revision, service_account=self.service_account)
        for env, revision in sorted(now.items()):
            if not previous.get(env):
                self.apigee.undeploy(env, proxy, revision)  # the rollout deployed it there first
        if labels:
            self.apigee.set_labels(proxy, labels)


class TrackerTickets:
    """``Tickets`` over a ``gatehouse.tickets.ports.Tracker``."""

    def __init__(self, tracker: object) -> None:
        self.tracker = tracker

    def open_once(self, label: str, title: str, body: str) -> str:
        found = self.tracker.find_by_label(label)  # type: ignore[attr-defined]
        if found:
            return str(found[0].url)
        ref = self.tracker.create_issue(title, body, [label, "gatehouse-rollout"])  # type: ignore[attr-defined]
        return str(ref.url)


def changed_members(
    services: Mapping[ServiceRef, dict[str, object]],
    running: object,
    target: object,
    *,
    traffic: Mapping[str, float] | None = None,
) -> list[Member]:
    """The exposed services whose bundle renders differently under ``target`` than under
    ``running`` (two registrars, one per configuration): the proxies a rollout must change.
    A service's ``team`` label (else its project) is its team."""
    from gatehouse.errors import GatehouseError

    members = []
    for ref, doc in sorted(services.items(), key=lambda kv: kv[0].key):
        try:
            old = running.desired(ref, doc)  # type: ignore[attr-defined]
            new = target.desired(ref, doc)  # type: ignore[attr-defined]
        except GatehouseError:
            continue  # an invalid contract is its own outcome, not the rollout's
        if new.proxy is None or old.proxy is None or old.proxy.content_hash == new.proxy.content_hash:
            continue
        labels = doc.get("labels")
        team = str((labels.get("team") if isinstance(labels, dict) else None) or ref.project)
        members.append(
            Member(
                new.proxy.name,
                ref.key,
                new.proxy.profile,
                tuple(new.proxy.environments),
                team,
                (traffic or {}).get(new.proxy.name, 0.0),
            )
        )
    return members
