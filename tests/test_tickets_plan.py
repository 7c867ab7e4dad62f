"""gatehouse.tickets.plan: triage of every notification format, grouping, routing of clears, the cap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gatehouse.tickets.evidence import build_evidence, parse_stats
from gatehouse.tickets.lifecycle import Entry
from gatehouse.tickets.plan import (
    Enrichment,
    Plan,
    Source,
    Triaged,
    decide_all,
    evidence_windows,
    ledger_fingerprints,
    route_closed,
    route_open,
    triage,
    work_items,
)
from gatehouse.tickets.ports import PulledMessage, TicketState
from gatehouse.tickets.proxyconfig import parse_bundle
from gatehouse.tickets.settings import TicketSettings
from tests.tickets_fakes import T0, direct_bundle, incident, message, scenario_minutes, stats_response

FIXTURES = Path(__file__).parent / "fixtures" / "tickets"
S = TicketSettings()
NOW = T0 + 3600 + 20 * 60


def pulled(
    data: bytes | dict[str, Any], ack: str = "a1", attributes: dict[str, str] | None = None
) -> PulledMessage:
    raw = data if isinstance(data, bytes) else message(data)
    return PulledMessage(ack, raw, attributes or {})


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.mark.parametrize(
    ("data", "outcome"),
    [
        (incident(), "incident:proxy"),
        (incident(state="closed", ended_at=T0 + 600), "incident:proxy"),
        (incident(metric="apigee.googleapis.com/target/latencies"), "incident:target"),
        (fixture("incident-proxyv2-percentile-open.json"), "incident:proxy"),
        (fixture("incident-target-latency-open.json"), "incident:target"),
        (fixture("incident-test-notification.json"), "ignored:the console's test notification"),
        (fixture("incident-uptime-open.json"), "ignored:metric (none) is not an Apigee latency metric"),
        (
            incident(metric="apigee.googleapis.com/proxy/request_count"),
            "ignored:is not an Apigee latency metric",
        ),
        (incident(resource_type="gce_instance"), "ignored:not an Apigee resource"),
        (incident(proxy=None), "ignored:latency incident without proxy"),
        (incident(environment=None, proxy=None), "ignored:without environment, proxy"),
        (incident(started_at=None), "incident:proxy"),  # the window falls back to the last minutes
        ({"command": "tickets", "mode": "plan"}, "ignored:not a Monitoring incident (command)"),
        (b"", "malformed:has no data"),
        (b"{not json", "malformed:not JSON"),
        (b"\xff\xfe", "malformed:"),
        ({"incident": {"state": "sideways"}}, "malformed:neither open nor closed"),
        (
            {"incident": {"resource": {"labels": {"proxy_name": "bad name!"}}}},
            "malformed:not a valid Apigee proxy name",
        ),
        ({"unexpected": True}, "malformed:unrecognised shape"),
    ],
)
def test_triage_every_format(data: bytes | dict[str, Any], outcome: str) -> None:
    result = triage(pulled(data))
    kind, _, detail = outcome.partition(":")
    if kind == "incident":
        assert result.incident is not None and result.family == detail
    elif kind == "ignored":
        assert result.incident is None and result.reason is not None and detail in result.reason
    else:
        assert result.malformed is not None and detail in result.malformed


def test_triage_passes_attributes_to_the_decoder() -> None:
    secret = {"name": "projects/804214596321/secrets/apigee-orders-client"}
    attributes = {
        "eventType": "SECRET_UPDATE",
        "secretId": "projects/804214596321/secrets/apigee-orders-client",
    }
    result = triage(pulled(secret, attributes=attributes))
    assert result.reason == "not a Monitoring incident (secret-event)"


def tri(*docs: dict[str, Any]) -> list[Triaged]:
    return [triage(pulled(doc, f"ack-{i}")) for i, doc in enumerate(docs)]


def test_evidence_windows_one_per_proxy_covering_all_its_incidents() -> None:
    triaged = tri(
        incident(incident_id="a", started_at=T0 + 3600 + 30),
        incident(incident_id="b", started_at=T0 + 4000),
        incident(incident_id="c", proxy="cart-v1", state="closed", started_at=T0, ended_at=T0 + 900),
        incident(incident_id="d", proxy="slow-v1", started_at=None),
    )
    windows = evidence_windows(triaged, NOW, S)
    orders = windows[Source("shop-prod-417", "prod", "orders-v1")]
    assert (orders.baseline_start, orders.incident_start, orders.incident_end) == (T0, T0 + 3600, NOW)
    cart = windows[Source("shop-prod-417", "prod", "cart-v1")]
    assert (cart.incident_start, cart.incident_end) == (T0, T0 + 900)  # closed: ends when it cleared
    slow = windows[Source("shop-prod-417", "prod", "slow-v1")]
    assert slow.incident_end - slow.incident_start == S.default_window_minutes * 60


def test_baseline_ends_where_the_condition_began_to_breach() -> None:
    """Monitoring opens the incident only after the condition breached for its ``duration``: the
    minutes before ``started_at`` are already slow and must not count as the baseline."""
    breach = T0 + 3600
    triaged = tri(incident(started_at=breach + 300, duration="300s"))
    (window,) = evidence_windows(triaged, NOW, S).values()
    assert window.incident_start == breach
    assert window.baseline_start == breach - S.baseline_minutes * 60
    doc = stats_response("orders-v1", scenario_minutes("target"), start=T0)
    evidence = build_evidence(
        parse_stats(doc, "orders-v1"),
        baseline_start=window.baseline_start,
        incident_start=window.incident_start,
        incident_end=window.incident_end,
    )
    calm = scenario_minutes("target")[0]["total"]
    assert evidence.baseline.peak_total_ms == pytest.approx(calm, rel=0.2)  # no breaching minute in it


def test_incident_window_is_capped() -> None:
    windows = evidence_windows(tri(incident(started_at=T0 - 86400)), NOW, S)
    (window,) = windows.values()
    assert window.incident_end - window.incident_start == S.max_incident_window_minutes * 60


def enrichment(kind: str = "target", proxy: str = "orders-v1") -> Enrichment:
    doc = stats_response(proxy, scenario_minutes(kind), start=T0)
    evidence = build_evidence(
        parse_stats(doc, proxy), baseline_start=T0, incident_start=T0 + 3600, incident_end=T0 + 4800
    )
    return Enrichment(evidence, parse_bundle(direct_bundle()))


def source(proxy: str = "orders-v1", environment: str = "prod") -> Source:
    return Source("shop-prod-417", environment, proxy)


def test_work_items_group_and_dedupe() -> None:
    triaged = tri(
        incident(incident_id="a"),
        incident(incident_id="a"),  # redelivered: one incident, two acks
        incident(incident_id="b", metric="apigee.googleapis.com/proxyv2/latencies_percentile"),
        incident(incident_id="c", metric="apigee.googleapis.com/target/latencies"),
        incident(incident_id="d", environment="staging"),
    )
    items = work_items(triaged, {source(): enrichment(), source(environment="staging"): enrichment()}, S)
    keys = sorted(item.fingerprint.key for item in items)
    assert keys == [
        "project=shop-prod-417/environment=prod/proxy=orders-v1/family=proxy/proposal=target-loadbalancer",
        "project=shop-prod-417/environment=prod/proxy=orders-v1/family=target/proposal=target-loadbalancer",
        "project=shop-prod-417/environment=staging/proxy=orders-v1/family=proxy/proposal=target-loadbalancer",
    ]
    prod_proxy = next(
        i
        for i in items
        if i.fingerprint.key.startswith("project=shop-prod-417/environment=prod")
        and i.fingerprint.family == "proxy"
    )
    assert [i.incident_id for i in prod_proxy.problem.opened] == ["a", "b"]
    assert sorted(prod_proxy.ack_ids) == ["ack-0", "ack-1", "ack-2"]
    assert prod_proxy.problem.peak_ms == pytest.approx(2450)


def test_coarse_fingerprints_merge_families() -> None:
    settings = TicketSettings(fingerprint_fields=("project", "environment", "proxy"))
    triaged = tri(
        incident(incident_id="a"), incident(incident_id="c", metric="apigee.googleapis.com/target/latencies")
    )
    (item,) = work_items(triaged, {source(): enrichment()}, settings)
    assert {i.incident_id for i in item.problem.opened} == {"a", "c"}


def test_sources_without_enrichment_are_left_out() -> None:
    assert work_items(tri(incident()), {}, S) == []


def test_peak_falls_back_to_the_observed_value() -> None:
    (item,) = work_items(tri(incident(observed="3100.5")), {source(): Enrichment()}, S)
    assert item.problem.peak_ms == 3100.5
    assert item.problem.diagnosis.kind == "inconclusive"
    assert item.fingerprint.proposal == "investigate"


def entry_for(doc_id: str, *, incidents: tuple[str, ...], ticket: str = "12") -> Entry:
    return Entry(doc_id, "1", "open", ticket_id=ticket, incidents=incidents)


def test_clear_goes_to_the_ticket_that_recorded_the_incident() -> None:
    # the incident was ticketed as "target-timeouts"; today's evidence proposes "target-loadbalancer"
    triaged = tri(incident(incident_id="old", state="closed", ended_at=NOW - 60), incident(incident_id="new"))
    items = work_items(triaged, {source(): enrichment()}, S)
    (item,) = items
    timeouts = item.fingerprint.with_proposal("target-timeouts")
    assert timeouts.doc_id in ledger_fingerprints(items)
    routed, ignored = route_closed(items, {timeouts.doc_id: entry_for(timeouts.doc_id, incidents=("old",))})
    assert ignored == []
    by_proposal = {i.fingerprint.proposal: i for i in routed}
    assert [i.incident_id for i in by_proposal["target-timeouts"].problem.closed] == ["old"]
    assert by_proposal["target-timeouts"].ack_ids == ("ack-0",)
    assert [i.incident_id for i in by_proposal["target-loadbalancer"].problem.opened] == ["new"]
    assert by_proposal["target-loadbalancer"].ack_ids == ("ack-1",)


def test_clear_of_an_incident_nobody_ticketed_is_ignored() -> None:
    items = work_items(
        tri(incident(incident_id="x", state="closed", ended_at=NOW)), {source(): enrichment()}, S
    )
    routed, ignored = route_closed(items, {})
    assert routed == [] and ignored == [("ack-0", "cleared, but it never had a ticket of its own")]


def test_open_and_close_in_one_batch_stay_together() -> None:
    triaged = tri(incident(incident_id="x"), incident(incident_id="x", state="closed", ended_at=NOW))
    routed, ignored = route_closed(work_items(triaged, {source(): enrichment()}, S), {})
    (item,) = routed
    assert ignored == [] and len(item.problem.opened) == 1 and len(item.problem.closed) == 1
    assert sorted(item.ack_ids) == ["ack-0", "ack-1"]


def test_cap_keeps_the_worst_problems() -> None:
    docs = [incident(incident_id=f"i{n}", proxy=f"p{n}", observed=str(1000 + n * 100)) for n in range(6)]
    items = work_items(tri(*docs), {source(f"p{n}"): Enrichment() for n in range(6)}, S)
    settings = TicketSettings(max_new_tickets_per_hour=5)
    steps = decide_all(
        items,
        entries={},
        tickets={},
        digest_listed=frozenset(),
        bucket_count=2,
        now=NOW,
        settings=settings,
        run_id="r",
    )
    actions = {s.item.fingerprint.proxy: s.decision.action for s in steps}
    assert actions == {
        "p5": "create",
        "p4": "create",
        "p3": "create",
        "p2": "overflow-to-digest",
        "p1": "overflow-to-digest",
        "p0": "overflow-to-digest",
    }


def test_plan_prints_every_decision() -> None:
    triaged = tri(incident(incident_id="a"))
    items = work_items(triaged, {source(): enrichment()}, S)
    steps = decide_all(
        items,
        entries={},
        tickets={},
        digest_listed=frozenset(),
        bucket_count=0,
        now=NOW,
        settings=S,
        run_id="r",
    )
    plan = Plan(
        "r",
        NOW,
        "2025031415",
        steps,
        (("x", "the console's test notification"),),
        (("y", "payload is empty"),),
    )
    text = plan.render(S)
    assert "3 message(s), 1 fingerprint(s)" in text
    assert "create" in text and "title: [gatehouse] orders-v1 (prod) is slow" in text
    assert "1 x the console's test notification" in text and "malformed" in text


def test_stats_json_survives_a_round_trip_through_fixtures() -> None:
    # the fixture helpers emit what parse_stats reads: values as strings, ms timestamps
    doc = json.loads(
        json.dumps(stats_response("p", scenario_minutes("calm", baseline=2, incident=0), start=T0))
    )
    value = doc["environments"][0]["dimensions"][0]["metrics"][0]["values"][0]
    assert isinstance(value["value"], str) and value["timestamp"] == T0 * 1000


def test_refire_stays_on_an_open_ticket_of_another_proposal() -> None:
    (item,) = work_items(tri(incident(incident_id="new")), {source(): enrichment("traffic")}, S)
    assert item.fingerprint.proposal == "spike-arrest"
    older = item.fingerprint.with_proposal("target-loadbalancer")
    entries = {older.doc_id: entry_for(older.doc_id, incidents=("old",))}
    open_ticket = TicketState("12", "https://github.com/o/r/issues/12", "open")
    (moved,) = route_open([item], entries, {"12": open_ticket})
    assert moved.fingerprint == older
    assert moved.problem.proposal.type == "spike-arrest"  # the comment will say the evidence changed
    closed = TicketState("12", "https://github.com/o/r/issues/12", "closed", "completed")
    (kept,) = route_open([item], entries, {"12": closed})
    assert kept.fingerprint == item.fingerprint  # a closed ticket: the new change gets its own ticket
