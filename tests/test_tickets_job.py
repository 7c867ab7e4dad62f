"""gatehouse.tickets.job end to end through the fakes: lifecycle, storms, races, crashes, plan mode."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from gatehouse.tickets import TicketPorts, TicketSettings, run
from gatehouse.tickets.fingerprint import Fingerprint
from gatehouse.tickets.job import RunReport
from gatehouse.tickets.settings import FINGERPRINT_FIELDS
from tests.tickets_fakes import (
    PROJECT,
    T0,
    Crash,
    FakeBundles,
    FakeLedger,
    FakeStats,
    FakeSubscription,
    FakeTracker,
    direct_bundle,
    incident,
    message,
    scenario_minutes,
    stats_response,
)

STARTED = T0 + 3600  # incidents start after a one-hour calm baseline
NOW = STARTED + 20 * 60
DAY = 86400


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


@dataclass
class World:
    settings: TicketSettings = field(default_factory=TicketSettings)
    clock: Clock = field(default_factory=lambda: Clock(NOW))
    sub: FakeSubscription = field(default_factory=FakeSubscription)
    ledger: FakeLedger = field(default_factory=FakeLedger)
    tracker: FakeTracker = field(default_factory=FakeTracker)
    stats: FakeStats = field(default_factory=FakeStats)
    bundles: FakeBundles = field(default_factory=FakeBundles)

    def __post_init__(self) -> None:
        self.stats.default = lambda proxy, start, end: stats_response(
            proxy, scenario_minutes("target"), start=T0
        )

    def publish(self, *docs: dict[str, Any]) -> None:
        for doc in docs:
            self.sub.publish(message(doc))

    def run(
        self, *, plan: bool = False, run_id: str | None = None, sub: FakeSubscription | None = None
    ) -> RunReport:
        ports = TicketPorts(sub or self.sub, self.ledger, self.tracker, self.stats, self.bundles)
        return run(ports, self.settings, plan=plan, clock=self.clock, sleep=self.clock.sleep, run_id=run_id)


def fp(proxy: str = "orders-v1", proposal: str = "target-loadbalancer", family: str = "proxy") -> Fingerprint:
    return Fingerprint(PROJECT, "prod", proxy, family, proposal, FINGERPRINT_FIELDS)  # type: ignore[arg-type]


def test_one_incident_one_ticket() -> None:
    world = World()
    world.bundles.bundles["orders-v1"] = direct_bundle()
    world.publish(incident(incident_id="i-1", started_at=STARTED))
    report = world.run(run_id="r1")
    assert report.exit_code == 0 and report.acked == 1 and report.actions() == {"create": 1}
    (issue,) = world.tracker.tickets()
    assert issue.labels == ["gatehouse", "apigee-latency", fp().label]
    assert "target-bound" in issue.body and "<LoadBalancer>" in issue.body
    doc = world.ledger.doc(fp().doc_id)
    assert doc["state"] == "open" and doc["ticket_id"] == issue.id and doc["incidents"] == ["i-1"]
    assert doc["claimed_by"] is None and doc["peak_ms"] == pytest.approx(2450)
    assert world.ledger.doc("bucket-2025031415") == {"count": 1}
    assert world.sub.pending == 0
    assert report.stats_calls == 1 and report.bundle_reads == 1
    assert world.stats.calls == [("prod", "orders-v1", T0, NOW, "minute")]


def test_redelivery_and_renotification_change_nothing() -> None:
    world = World()
    world.publish(incident(incident_id="i-1", started_at=STARTED))
    world.run()
    world.publish(
        incident(incident_id="i-1", started_at=STARTED), incident(incident_id="i-1", started_at=STARTED)
    )
    report = world.run()
    assert report.actions() == {"ignore": 1} and report.acked == 2 and report.exit_code == 0
    assert len(world.tracker.tickets()) == 1 and world.tracker.calls["comment"] == 0


def test_refires_become_one_comment_per_run() -> None:
    world = World()
    world.publish(incident(incident_id="i-1", started_at=STARTED))
    world.run()
    world.clock.now += 3600
    world.publish(*(incident(incident_id=f"i-{n}", started_at=STARTED + 3600) for n in range(2, 6)))
    world.publish(incident(incident_id="i-1", state="closed", started_at=STARTED, ended_at=STARTED + 1800))
    report = world.run()
    assert report.actions() == {"comment": 1}
    (issue,) = world.tracker.tickets()
    (comment,) = issue.comments
    assert comment.count("**Re-fired**") == 1 and all(f"i-{n}" in comment for n in range(2, 6))
    assert "**Cleared** at" in comment
    doc = world.ledger.doc(fp().doc_id)
    assert doc["incidents"] == ["i-1", "i-2", "i-3", "i-4", "i-5"] and doc["cleared"] == ["i-1"]
    assert doc["comments_count"] == 1 and doc["pending_comment"] is None


def test_closed_incident_adds_a_cleared_comment() -> None:
    world = World()
    world.publish(incident(incident_id="i-1", started_at=STARTED))
    world.run()
    world.publish(incident(incident_id="i-1", state="closed", started_at=STARTED, ended_at=STARTED + 2400))
    report = world.run()
    assert report.actions() == {"comment-cleared": 1}
    (issue,) = world.tracker.tickets()
    assert issue.state == "open"  # humans close tickets
    assert issue.comments[0].splitlines()[-1].startswith("**Cleared** at 2025-03-14 15:40 UTC")
    world.publish(incident(incident_id="i-1", state="closed", started_at=STARTED, ended_at=STARTED + 2400))
    assert world.run().actions() == {"ignore": 1}


@pytest.mark.parametrize(("closed_days_ago", "action"), [(3, "comment"), (10, "create-linked")])
def test_reopen_window(closed_days_ago: int, action: str) -> None:
    world = World()
    world.publish(incident(incident_id="i-1", started_at=STARTED))
    world.run()
    world.clock.now += 20 * DAY
    world.tracker.close("1", "completed", at=world.clock.now - closed_days_ago * DAY)
    world.stats.default = lambda proxy, start, end: stats_response(
        proxy, scenario_minutes("target"), start=start
    )
    world.publish(incident(incident_id="i-2", started_at=int(world.clock.now) - 1200))
    report = world.run()
    assert report.actions() == {action: 1}
    if action == "create-linked":
        old, new = world.tracker.tickets()
        assert new.body.splitlines()[1].startswith(
            f"> Follows <{old.url}>: re-fired 10.0 days after ticket 1 closed"
        )
        doc = world.ledger.doc(fp().doc_id)
        assert (
            doc["ticket_id"] == new.id
            and doc["previous_ticket_ids"] == [old.id]
            and doc["incidents"] == ["i-2"]
        )
    else:
        assert (
            len(world.tracker.tickets()) == 1
            and "within the 7.0 days reopen window" in world.tracker.issues["1"].comments[0]
        )


def worse(factor: float) -> Callable[[str, int, int], dict[str, Any]]:
    def response(proxy: str, start: int, end: int) -> dict[str, Any]:
        minutes = scenario_minutes("target")
        minutes = [
            m if i < 60 else {**m, "total": m["total"] * factor, "target": m["target"] * factor}
            for i, m in enumerate(minutes)
        ]
        return stats_response(proxy, minutes, start=start)

    return response


def test_wont_fix_suppresses_until_the_evidence_worsens() -> None:
    world = World()
    world.publish(incident(incident_id="i-1", started_at=STARTED))
    world.run()
    world.tracker.close("1", "not_planned", at=NOW + 60)
    for n, factor, action in [(2, 1.5, "suppressed"), (3, 1.9, "suppressed"), (4, 2.1, "create-linked")]:
        world.clock.now += 3600
        world.stats.default = worse(factor)
        world.publish(incident(incident_id=f"i-{n}", started_at=int(world.clock.now) - 1200))
        report = world.run()
        assert report.actions() == {action: 1}, n
        assert report.acked == 1
    doc = world.ledger.doc(fp().doc_id)
    assert (
        doc["state"] == "open" and doc["suppressed_peak_ms"] is None and doc["previous_ticket_ids"] == ["1"]
    )
    tickets = world.tracker.tickets()
    assert len(tickets) == 2 and "closed as won't fix" in tickets[1].body
    assert world.tracker.issues["1"].comments == []  # nothing posted on the won't-fix ticket


def test_absurd_timestamp_is_malformed_and_acknowledged_once() -> None:
    """An ended_at of 2**62 used to reach datetime and fail the fingerprint (OSError) in every run
    until the message was dead-lettered; now it is rejected when decoded, and acknowledged."""
    world = World()
    world.publish(incident(incident_id="0.ok"))
    world.publish(incident(incident_id="0.absurd", state="closed", ended_at=2**62))
    world.publish(incident(incident_id="0.absurd-start", proxy="cart-v1", started_at=2**62))
    report = world.run()
    assert report.exit_code == 0 and report.failures == [] and world.sub.pending == 0
    assert len(report.malformed) == 2 and all("out of range" in error for _, error in report.malformed)
    assert report.actions() == {"create": 1} and len(world.tracker.tickets()) == 1
    assert world.run().pulled == 0  # nothing comes back


def test_proposals_name_the_configured_organization_not_the_scoping_project() -> None:
    """A metrics scope can span projects: the incident's scoping project is where the alert policy
    lives, not the Apigee organization the proposal's API calls and console links must name."""
    world = World(settings=TicketSettings(apigee_org="shop-apigee"))
    world.publish(incident(project="monitoring-hub-1", org="shop-apigee"))
    report = world.run()
    assert report.actions() == {"create": 1}
    (ticket,) = world.tracker.tickets()
    assert "/organizations/shop-apigee/environments/prod/" in ticket.body
    assert "organizations/monitoring-hub-1" not in ticket.body
    assert "overview?project=shop-apigee)" in ticket.body


def test_only_proxies_this_installation_looks_after_get_tickets() -> None:
    """An incident for a proxy that does not exist, one not created by this installation (no owner
    label of ours), or one labelled with another Apigee organization used to get a ticket whose
    evidence came from a same-named proxy of our organization. Now each is acknowledged with a reason,
    and nothing is read for it."""
    world = World(settings=TicketSettings(apigee_org=PROJECT))
    world.bundles.proxies = {
        "ghost-v1": None,
        "handmade-v1": {"team": "payments"},
        "theirs-v1": {"gatehouse-owner": "other-install"},
    }
    world.publish(
        incident(incident_id="0.ghost", proxy="ghost-v1"),
        incident(incident_id="0.handmade", proxy="handmade-v1"),
        incident(incident_id="0.theirs", proxy="theirs-v1"),
        incident(incident_id="0.other-org", proxy="orders-v1", org="partner-org-1"),
        incident(incident_id="0.ours", proxy="cart-v1"),
    )
    report = world.run()
    assert report.exit_code == 0 and world.sub.pending == 0 and report.acked == 5
    assert report.ignored == {
        f"proxy ghost-v1 does not exist in Apigee organization {PROJECT}": 1,
        "proxy handmade-v1 was not created by this gatehouse installation (no gatehouse-owner=gatehouse "
        "label)": 1,
        "proxy theirs-v1 was not created by this gatehouse installation (no gatehouse-owner=gatehouse "
        "label)": 1,
        f"incident for Apigee organization partner-org-1, not {PROJECT}": 1,
    }
    assert [t.title.split()[1] for t in world.tracker.tickets()] == ["cart-v1"]
    assert {call[1] for call in world.stats.calls} == {"cart-v1"}  # no evidence read for the others
    assert "orders-v1" not in world.bundles.label_calls


def test_the_job_gets_the_organization_owner_and_unowned_setting_from_the_environment() -> None:
    from gatehouse import runtime
    from gatehouse.config import Settings, TicketsConfig

    config = TicketsConfig(include_unowned_proxies=True, jira_browse_url="https://shop.atlassian.net")
    settings = runtime.ticket_settings(config, Settings(apigee_org="shop-apigee", owner_id="team-a"))
    assert (settings.apigee_org, settings.owner_id, settings.include_unowned_proxies) == (
        "shop-apigee",
        "team-a",
        True,
    )
    assert runtime.ticket_settings(TicketsConfig(), Settings()).include_unowned_proxies is False


def test_tickets_for_hand_made_proxies_when_configured() -> None:
    world = World(settings=TicketSettings(include_unowned_proxies=True))
    world.bundles.proxies = {"ghost-v1": None, "handmade-v1": {}}
    world.publish(
        incident(incident_id="0.ghost", proxy="ghost-v1"), incident(incident_id="0.hand", proxy="handmade-v1")
    )
    report = world.run()
    assert report.actions() == {"create": 1} and len(report.ignored) == 1  # a missing proxy never
    assert world.tracker.tickets()[0].title.split()[1] == "handmade-v1"


def test_ownership_unreadable_waits_for_the_next_run() -> None:
    from gatehouse.errors import TransientError

    world = World()
    world.bundles.fail_labels = TransientError("apigee unavailable")
    world.publish(incident())
    report = world.run()
    assert report.exit_code == 1 and report.left == 1 and world.tracker.issues == {}
    assert "ownership unknown" in report.deferred[0][1]
    world.bundles.fail_labels = None
    assert world.run().actions() == {"create": 1}


def test_formats_test_message_other_metrics_and_malformed() -> None:
    world = World()
    world.sub.publish(
        b'{"version": "test", "incident": {"incident_id": "1", "state": "OPEN", "started_at": 0}}'
    )
    world.publish(incident(metric="apigee.googleapis.com/proxy/request_count"))
    world.publish(incident(proxy=None))
    world.sub.publish(b"{not json")
    world.sub.publish(b"")
    world.sub.publish(
        (
            b'{"name": "projects/1/secrets/s"}',
            {"eventType": "SECRET_UPDATE", "secretId": "projects/1/secrets/s"},
        )
    )
    report = world.run()
    assert report.exit_code == 0 and report.acked == 6 and world.sub.pending == 0
    assert len(report.malformed) == 2
    assert report.ignored == {
        "the console's test notification": 1,
        "metric apigee.googleapis.com/proxy/request_count is not an Apigee latency metric": 1,
        "latency incident without proxy": 1,
        "not a Monitoring incident (secret-event)": 1,
    }
    assert world.tracker.issues == {} and world.ledger.docs == {} and report.stats_calls == 0


def test_plan_mode_reads_but_writes_and_acks_nothing() -> None:
    world = World()
    world.publish(
        incident(incident_id="i-1", started_at=STARTED),
        incident(incident_id="x", proxy="cart-v1", started_at=STARTED),
    )
    world.sub.publish(b"garbage")
    report = world.run(plan=True)
    assert report.mode == "plan" and report.exit_code == 0
    assert (
        world.ledger.writes == 0
        and world.tracker.calls["create_issue"] == 0
        and world.tracker.calls["comment"] == 0
    )
    assert world.sub.acked == [] and world.sub.pending == 3
    # handed back at once, not hidden until the subscription's long ack deadline expires
    assert len(world.sub.released) == 3 and not world.sub.leased
    assert report.actions() == {"create": 2} and report.acked == 0
    assert "create" in report.plan_text and "title: [gatehouse] cart-v1 (prod) is slow" in report.plan_text
    assert "1 x " in report.plan_text  # the malformed message is listed


def storm(world: World, *, proxies: int = 20, notifications: int = 10_000) -> None:
    for n in range(notifications):
        proxy = n % proxies
        world.publish(
            incident(
                incident_id=f"{proxy}-{(n // proxies) % 25}", proxy=f"svc-{proxy:02d}", started_at=STARTED
            )
        )


def test_storm_makes_one_ticket_per_problem() -> None:
    world = World(settings=TicketSettings(max_new_tickets_per_hour=100))
    storm(world)
    started = time.perf_counter()
    report = world.run()
    assert time.perf_counter() - started < 15
    assert report.pulled == 10_000 and report.acked == 10_000 and report.exit_code == 0
    assert len(world.tracker.tickets()) == 20 and world.tracker.digests() == []
    assert report.stats_calls == 20 and report.bundle_reads == 20
    assert world.tracker.calls["create_issue"] == 20


def test_storm_over_the_cap_goes_into_one_digest() -> None:
    world = World(settings=TicketSettings(max_new_tickets_per_hour=5))
    storm(world)
    report = world.run()
    assert report.acked == 10_000 and report.exit_code == 0
    assert len(world.tracker.tickets()) == 5
    (digest,) = world.tracker.digests()
    assert digest.title.startswith("[gatehouse] latency digest 2025-03-14 15:00 UTC")
    assert sum(1 for line in digest.body.splitlines() if line.startswith("| `gatehouse-fp-")) == 15
    assert report.actions() == {"create": 5, "overflow-to-digest": 15}
    assert world.ledger.doc("bucket-2025031415") == {"count": 5}

    # the same hour: re-fires of listed problems change nothing, a new problem is one digest comment
    world.publish(incident(incident_id="late-1", proxy="svc-19", started_at=STARTED))
    world.publish(incident(incident_id="late-2", proxy="svc-99", started_at=STARTED))
    report = world.run()
    assert len(world.tracker.digests()) == 1 and len(world.tracker.tickets()) == 5
    (comment,) = world.tracker.digests()[0].comments
    assert "svc-99" in comment and "svc-19" not in comment

    # next hour: an overflowed problem that fires again gets its own ticket
    world.clock.now += 3600
    world.publish(incident(incident_id="next-hour", proxy="svc-07", started_at=int(world.clock.now) - 600))
    world.stats.default = lambda proxy, start, end: stats_response(
        proxy, scenario_minutes("target"), start=start
    )
    report = world.run()
    assert report.actions() == {"create": 1} and len(world.tracker.tickets()) == 6


def settled(world: World) -> None:
    """What every run must leave behind, faults or not: each fingerprint claim ended with a ticket
    (or went to the digest), no update waits unposted, and the hour's count is the real tickets."""
    for doc in world.ledger.fingerprints():
        assert doc["state"] in ("open", "suppressed", "digest"), doc
        assert doc["pending_comment"] is None, doc
        assert (doc["state"] == "digest") == (doc["ticket_id"] is None), doc
    for key, (doc, _) in world.ledger.docs.items():
        if key.startswith("digest-"):
            assert doc["state"] == "open" and doc["ticket_id"] and doc["pending_comment"] is None, doc
        if key.startswith("bucket-"):
            opened = [
                d for d in world.ledger.fingerprints() if d.get("opened_at") and d["ticket_id"] is not None
            ]
            assert doc["count"] == len(opened) == len(world.tracker.tickets()), (doc, opened)
    listed = "\n".join(i.body + "\n".join(i.comments) for i in world.tracker.digests())
    for doc in world.ledger.fingerprints():
        if doc["state"] == "digest":
            assert doc["label"] in listed, doc["label"]


def test_failed_creations_over_the_cap_resume_their_claims_instead_of_the_digest() -> None:
    """A claim whose ticket creation failed holds a slot of the hour's cap: it is resumed (the ticket
    created, or adopted) whatever the cap says, never parked in the digest with no ticket while the
    count says a ticket exists."""
    world = World(settings=TicketSettings(max_new_tickets_per_hour=2))
    world.publish(*(incident(incident_id=f"i-{p}", proxy=f"svc-{p}", started_at=STARTED) for p in range(2)))
    world.tracker.fail_create = "before"  # GitHub answers 502 to both creations
    first = world.run()
    assert first.exit_code == 1 and world.tracker.issues == {}
    world.tracker.fail_create = None
    world.publish(incident(incident_id="i-2", proxy="svc-2", started_at=STARTED))
    second = world.run()
    assert second.exit_code == 0 and world.sub.pending == 0
    assert sorted(t.title.split()[1] for t in world.tracker.tickets()) == ["svc-0", "svc-1"]
    assert second.actions() == {"create": 2, "overflow-to-digest": 1}
    settled(world)


def test_digest_comment_that_failed_is_posted_by_a_later_run() -> None:
    """The digest's pending comment is posted by the next run even when nothing new overflows (its
    problems are already listed, so their re-deliveries are acknowledged)."""
    world = World(settings=TicketSettings(max_new_tickets_per_hour=1))
    world.publish(*(incident(incident_id=f"i-{p}", proxy=f"svc-{p}", started_at=STARTED) for p in range(2)))
    world.run()
    (digest,) = world.tracker.digests()
    world.tracker.fail_comment = True
    world.publish(incident(incident_id="i-2", proxy="svc-2", started_at=STARTED))
    assert world.run().exit_code == 1 and digest.comments == []
    world.tracker.fail_comment = False
    report = world.run()  # svc-2 comes back: already listed in the digest's recorded update
    assert report.exit_code == 0 and world.sub.pending == 0
    (comment,) = digest.comments
    assert "svc-2" in comment
    assert world.run().exit_code == 0 and len(digest.comments) == 1  # posted once
    settled(world)


def test_digest_whose_creation_failed_is_created_by_a_later_run() -> None:
    world = World(settings=TicketSettings(max_new_tickets_per_hour=1))
    world.tracker.fail_create_if = lambda title: "latency digest" in title
    world.publish(*(incident(incident_id=f"i-{p}", proxy=f"svc-{p}", started_at=STARTED) for p in range(2)))
    assert world.run().exit_code == 1 and world.tracker.digests() == []
    world.tracker.fail_create_if = None
    report = world.run()
    assert report.exit_code == 0 and world.sub.pending == 0
    (digest,) = world.tracker.digests()
    assert "svc-1" in digest.body
    settled(world)


def test_two_runs_at_once_make_one_ticket_per_fingerprint() -> None:
    world = World()
    docs = [incident(incident_id=f"i-{p}", proxy=f"svc-{p}", started_at=STARTED) for p in range(4)]
    subs = [FakeSubscription([message(d) for d in docs]) for _ in range(2)]  # both see everything
    barrier = threading.Barrier(2, timeout=10)
    first_claim = threading.local()

    def together() -> None:  # both runs reach their first claim having planned "create" for all
        if not getattr(first_claim, "done", False):
            first_claim.done = True
            barrier.wait()

    world.ledger.before_create = together
    reports: dict[str, RunReport] = {}

    def job(name: str, sub: FakeSubscription) -> None:
        reports[name] = world.run(run_id=name, sub=sub)

    threads = [threading.Thread(target=job, args=(f"run-{i}", sub)) for i, sub in enumerate(subs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert set(reports) == {"run-0", "run-1"}
    assert sum(r.actions().get("create", 0) for r in reports.values()) == 4  # each claim won exactly once
    assert len(world.tracker.tickets()) == 4
    assert sorted(
        label for i in world.tracker.tickets() for label in i.labels if label.startswith("gatehouse-fp-")
    ) == sorted(fp(f"svc-{p}").label for p in range(4))
    assert world.ledger.doc("bucket-2025031415") == {"count": 4}
    # whatever a run left is settled by the next one, without new tickets
    world.ledger.before_create = None
    for sub in subs:
        sub.redeliver()
        assert world.run(sub=sub).exit_code == 0
        assert sub.pending == 0
    assert len(world.tracker.tickets()) == 4


@pytest.mark.parametrize("failure", ["before", "after"])
def test_tracker_failure_after_claim_never_duplicates(failure: str) -> None:
    world = World()
    world.publish(incident(incident_id="i-1", started_at=STARTED))
    world.tracker.fail_create = failure
    report = world.run(run_id="r1")
    assert report.exit_code == 1 and report.left == 1 and report.acked == 0
    assert report.failures and "TransientError" in report.failures[0]
    doc = world.ledger.doc(fp().doc_id)
    assert doc["state"] == "claimed" and doc["claimed_by"] is None  # released for the next run
    world.tracker.fail_create = None
    world.sub.redeliver()
    report = world.run(run_id="r2")
    assert report.exit_code == 0 and report.actions() == {"create": 1}
    assert len(world.tracker.tickets()) == 1
    assert world.tracker.calls["find_by_label"] == 1
    assert world.ledger.doc(fp().doc_id)["ticket_id"] == "1"
    assert world.ledger.doc("bucket-2025031415") == {"count": 1}  # the resumed claim kept its slot


@pytest.mark.parametrize(("crash", "creates"), [("crash", 2), ("crash-after", 1)])
def test_crash_between_claim_and_ticket_is_resumed_once(crash: str, creates: int) -> None:
    world = World()
    world.publish(incident(incident_id="i-1", started_at=STARTED))
    world.tracker.fail_create = crash
    with pytest.raises(Crash):
        world.run(run_id="dead")
    assert world.ledger.doc(fp().doc_id)["claimed_by"] == "dead"
    world.tracker.fail_create = None
    world.sub.redeliver()

    early = world.run(run_id="r2")  # the claim may still be live: wait for it
    assert early.actions() == {"defer": 1} and early.exit_code == 1 and world.sub.pending == 1
    assert world.sub.released and not world.sub.leased  # left for the next run, visible to it at once

    world.clock.now += world.settings.claim_timeout_seconds + 1
    world.sub.redeliver()
    late = world.run(run_id="r3")
    assert late.actions() == {"create": 1} and late.exit_code == 0 and world.sub.pending == 0
    assert len(world.tracker.tickets()) == 1
    assert world.tracker.calls["create_issue"] == creates  # adopted by label when the dead run had created it


def test_crash_after_ticket_before_ledger_write_is_adopted() -> None:
    world = World()
    world.publish(incident(incident_id="i-1", started_at=STARTED))
    world.ledger.fail_update_when = lambda key, changes: changes.get("state") == "open"
    report = world.run(run_id="r1")
    assert report.exit_code == 1 and len(world.tracker.tickets()) == 1
    world.ledger.fail_update_when = None
    world.clock.now += world.settings.claim_timeout_seconds + 1
    world.sub.redeliver()
    report = world.run(run_id="r2")
    assert report.exit_code == 0 and len(world.tracker.tickets()) == 1
    assert world.ledger.doc(fp().doc_id)["ticket_id"] == "1"


def test_failed_comment_is_posted_by_the_next_run_exactly_once() -> None:
    world = World()
    world.publish(incident(incident_id="i-1", started_at=STARTED))
    world.run()
    world.tracker.fail_comment = True
    world.publish(incident(incident_id="i-2", started_at=STARTED))
    report = world.run()
    assert report.exit_code == 1 and report.left == 1
    pending = world.ledger.doc(fp().doc_id)["pending_comment"]
    assert pending["by"] is None and "i-2" in pending["body"]
    world.tracker.fail_comment = False
    world.sub.redeliver()
    report = world.run()
    assert report.exit_code == 0 and report.actions() == {"comment": 1}
    (comment,) = world.tracker.issues["1"].comments
    assert "i-2" in comment
    assert world.ledger.doc(fp().doc_id)["pending_comment"] is None


def test_analytics_quota_is_respected() -> None:
    world = World(settings=TicketSettings(stats_calls_per_minute=50, max_new_tickets_per_hour=500))
    call_times: list[float] = []
    world.stats.before_call = lambda: call_times.append(world.clock.now)
    world.publish(*(incident(incident_id=f"i-{p}", proxy=f"svc-{p}", started_at=STARTED) for p in range(120)))
    report = world.run()
    assert report.stats_calls == 120 and len(world.tracker.tickets()) == 120
    assert world.clock.slept > 0
    assert max(sum(1 for t in call_times if start <= t < start + 60) for start in call_times) <= 50


def test_transient_analytics_failure_waits_for_young_incidents_only() -> None:
    from gatehouse.errors import TransientError

    world = World()
    world.stats.fail = TransientError("429 quota")
    world.publish(incident(incident_id="young", started_at=STARTED))
    report = world.run()
    assert report.exit_code == 1 and report.deferred and world.tracker.issues == {}
    assert "analytics unavailable" in report.deferred[0][1]
    world.clock.now += world.settings.evidence_wait_seconds
    world.sub.redeliver()
    report = world.run()
    assert report.exit_code == 0 and report.actions() == {"create": 1}
    (issue,) = world.tracker.tickets()
    assert "Analytics unavailable: 429 quota" in issue.body


def test_tracker_unreadable_defers_only_that_fingerprint() -> None:
    world = World()
    world.publish(incident(incident_id="i-1", started_at=STARTED))
    world.run()
    world.tracker.fail_get = True
    world.publish(
        incident(incident_id="i-2", started_at=STARTED),
        incident(incident_id="c-1", proxy="cart-v1", started_at=STARTED),
    )
    report = world.run()
    assert report.actions() == {"create": 1} and report.left == 1 and report.exit_code == 1


def test_ledger_outage_leaves_incidents_and_acks_the_rest() -> None:
    world = World()
    world.publish(incident(incident_id="i-1", started_at=STARTED))
    world.sub.publish(b"not json")
    world.ledger.unavailable = True
    report = world.run()
    assert report.exit_code == 1 and report.acked == 1 and report.left == 1
    assert "could not read the ledger" in report.failures[0] and report.deferred[0][1].startswith(
        "ledger unavailable"
    )


def test_report_is_json_ready() -> None:
    import json

    world = World()
    world.publish(incident(incident_id="i-1", started_at=STARTED))
    data = world.run(run_id="r1").to_dict()
    assert json.loads(json.dumps(data))["fingerprints"][0]["action"] == "create"
    assert data["exit_code"] == 0 and data["drained"] is True


def test_changed_diagnosis_comments_on_the_open_ticket_then_gets_its_own() -> None:
    world = World()
    world.bundles.bundles["orders-v1"] = direct_bundle()
    world.publish(incident(incident_id="i-1", started_at=STARTED))
    world.run()
    world.stats.default = lambda proxy, start, end: stats_response(
        proxy, scenario_minutes("traffic"), start=T0
    )
    world.publish(incident(incident_id="i-2", started_at=STARTED))
    report = world.run()
    assert report.actions() == {"comment": 1} and len(world.tracker.tickets()) == 1
    assert (
        "different change: **Add a SpikeArrest of 15ps to orders-v1**"
        in world.tracker.issues["1"].comments[0]
    )

    world.tracker.close("1", "completed", at=NOW)
    world.clock.now += 30 * DAY
    world.stats.default = lambda proxy, start, end: stats_response(
        proxy, scenario_minutes("traffic"), start=start
    )
    world.publish(incident(incident_id="i-3", started_at=int(world.clock.now) - 1200))
    report = world.run()
    assert report.actions() == {"create": 1}
    assert world.tracker.issues["2"].labels[-1] == fp(proposal="spike-arrest").label


def test_missing_analytics_for_a_young_incident_waits_for_the_lag() -> None:
    world = World()
    world.stats.default = lambda proxy, start, end: stats_response(
        proxy, scenario_minutes("calm", incident=0), start=T0
    )
    world.publish(incident(incident_id="i-1", started_at=STARTED))
    report = world.run()
    assert (
        report.exit_code == 1 and report.deferred[0][1] == "analytics has no data for the incident window yet"
    )
    world.clock.now = STARTED + world.settings.evidence_wait_seconds
    world.sub.redeliver()
    report = world.run()
    assert report.actions() == {"create": 1}
    assert "no analytics data in the incident window" in world.tracker.tickets()[0].body
