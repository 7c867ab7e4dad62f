"""gatehouse.tickets.proposal: the first routing knob the proxy lacks, as XML / API payloads that parse."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from gatehouse.tickets.diagnosis import Diagnosis
from gatehouse.tickets.evidence import Evidence, WindowStats
from gatehouse.tickets.proposal import Proposal, Subject, propose
from gatehouse.tickets.proxyconfig import UNKNOWN, PolicyInfo, ProxyConfig, Rate, TargetConfig

SUBJECT = Subject("shop-prod-417", "prod", "orders-v1")
URL = "https://orders-804214596321.europe-west1.run.app/v1"
TARGET = Diagnosis("target-bound", "backend slow")
PROXY = Diagnosis("proxy-bound", "proxy slow")
TRAFFIC = Diagnosis("traffic-bound", "spike")
UNSURE = Diagnosis("inconclusive", "unknown")

DIRECT = TargetConfig(
    "default", url=URL, google_id_token=True, audience="https://orders-804214596321.europe-west1.run.app"
)
SINGLE = TargetConfig("default", servers=("orders-ts",), max_failures=5)
LB = TargetConfig("default", servers=("ew1", "ew4"), fallback_servers=("ew4",), algorithm="RoundRobin")
LB_HM = TargetConfig("default", servers=("ew1", "ew4"), fallback_servers=("ew4",), health_monitor=True)
LB_HM_TIGHT = TargetConfig(
    "default",
    servers=("ew1", "ew4"),
    health_monitor=True,
    max_failures=3,
    connect_timeout_ms=2000,
    io_timeout_ms=1500,
)


def cfg(target: TargetConfig | None, *policies: PolicyInfo) -> ProxyConfig:
    return ProxyConfig("orders-v1", "7", (target,) if target else (), "default", policies, known=True)


def spike(rate: str | None, *, ref: str | None = None, active: bool = True) -> PolicyInfo:
    return PolicyInfo("SpikeArrest", "SA-1", active, True, Rate.parse(rate), ref)


CACHE = PolicyInfo("ResponseCache", "RC-1", True, True)
API_KEY = PolicyInfo("VerifyAPIKey", "VA-1", True, True)


def evidence(base_peak_target: float = 400, base_peak_rpm: float = 600) -> Evidence:
    base = WindowStats(
        0, 3600, 60, base_peak_rpm * 60, 0, 250, 200, 20, 10, 450, base_peak_target, base_peak_rpm
    )
    inc = WindowStats(3600, 4800, 20, 3000 * 20, 0, 1200, 1000, 20, 10, 1300, 1100, 3000)
    return Evidence(base, inc, ())


def test_evidence_helper_is_consistent() -> None:
    assert evidence().baseline.peak_rpm == 600


@pytest.mark.parametrize(
    ("diagnosis", "config", "expected"),
    [
        (TARGET, cfg(DIRECT), "target-loadbalancer"),
        (TARGET, cfg(SINGLE), "target-loadbalancer"),  # one server: add the second region
        (TARGET, cfg(LB), "target-healthmonitor"),
        (TARGET, cfg(LB_HM), "target-timeouts"),  # already LB + HealthMonitor: no LB proposal
        (TARGET, cfg(LB_HM_TIGHT), "response-cache"),
        (TARGET, cfg(LB_HM_TIGHT, CACHE), "investigate"),  # every routing knob in place
        (TARGET, UNKNOWN, "target-loadbalancer"),
        (TARGET, cfg(None), "policy-review"),  # no target at all: the time is the proxy's own
        (TRAFFIC, cfg(DIRECT), "spike-arrest"),
        (TRAFFIC, cfg(DIRECT, spike("100ps")), "spike-arrest"),  # looser than the proposal: lower it
        (TRAFFIC, cfg(DIRECT, spike("5ps")), "target-loadbalancer"),  # already tight: throttling is not it
        (TRAFFIC, cfg(LB_HM, spike("5ps")), "target-timeouts"),
        (TRAFFIC, cfg(DIRECT, spike("100ps", ref="var")), "spike-arrest"),
        (PROXY, cfg(DIRECT), "policy-review"),
        (UNSURE, cfg(DIRECT), "investigate"),
    ],
)
def test_proposal_fits_diagnosis_and_config(diagnosis: Diagnosis, config: ProxyConfig, expected: str) -> None:
    proposal = propose(diagnosis, config, subject=SUBJECT, evidence=evidence())
    assert proposal.type == expected
    assert proposal.title and proposal.rationale and proposal.changes
    check_payloads(proposal)


def check_payloads(proposal: Proposal) -> None:
    for change in proposal.changes:
        if change.language == "xml":
            ET.fromstring(change.content)
        else:
            json.loads(change.content)


def test_load_balancer_for_a_cloud_run_target() -> None:
    proposal = propose(
        TARGET,
        cfg(DIRECT),
        subject=SUBJECT,
        evidence=evidence(),
        failover_regions={"europe-west1": "europe-west4"},
    )
    primary, failover, xml = proposal.changes
    assert primary.request == (
        "POST https://apigee.googleapis.com/v1/organizations/shop-prod-417/environments/prod/targetservers"
        "?name=orders-v1-primary"
    )
    body = json.loads(failover.content)
    assert body == {
        "name": "orders-v1-failover",
        "host": "orders-804214596321.europe-west4.run.app",
        "port": 443,
        "isEnabled": True,
        "description": "orders-v1 failover (proposed by gatehouse)",
        "sSLInfo": {"enabled": True, "enforce": True},
    }
    conn = ET.fromstring(xml.content)
    assert conn.tag == "HTTPTargetConnection"
    assert [s.get("name") for s in conn.iter("Server")] == ["orders-v1-primary", "orders-v1-failover"]
    assert conn.findtext("LoadBalancer/Server[@name='orders-v1-failover']/IsFallback") == "true"
    assert conn.findtext("LoadBalancer/MaxFailures") == "3"
    assert conn.findtext("Path") == "/v1"
    assert conn.find("HealthMonitor/TCPMonitor") is not None  # probes carry no ID token
    assert (
        conn.findtext("Authentication/GoogleIDToken/Audience")
        == "https://orders-804214596321.europe-west1.run.app"
    )
    props = {p.get("name"): p.text for p in conn.iter("Property")}
    assert props == {"connect.timeout.millis": "2000", "io.timeout.millis": "2000"}
    assert any("customAudiences" in r for r in proposal.rationale)


def test_load_balancer_for_a_plain_http_target_uses_an_http_monitor() -> None:
    target = TargetConfig("default", url="http://legacy.internal:8080/api")
    proposal = propose(TARGET, cfg(target), subject=SUBJECT, evidence=evidence(base_peak_target=3000))
    primary = json.loads(proposal.changes[0].content)
    assert primary["host"] == "legacy.internal" and primary["port"] == 8080 and "sSLInfo" not in primary
    conn = ET.fromstring(proposal.changes[-1].content)
    assert conn.findtext("HealthMonitor/HTTPMonitor/Request/Port") == "8080"
    assert {p.get("name"): p.text for p in conn.iter("Property")}["io.timeout.millis"] == "6000"
    assert any("FAILOVER-HOST" in r for r in proposal.rationale)


def test_single_server_keeps_its_target_server() -> None:
    proposal = propose(TARGET, cfg(SINGLE), subject=SUBJECT, evidence=evidence())
    payloads = [c for c in proposal.changes if c.language == "json"]
    assert [json.loads(p.content)["name"] for p in payloads] == ["orders-v1-failover"]
    conn = ET.fromstring(proposal.changes[-1].content)
    assert [s.get("name") for s in conn.iter("Server")] == ["orders-ts", "orders-v1-failover"]
    assert "single server" in proposal.rationale[0]


def test_timeouts_only_tighten_and_add_max_failures() -> None:
    loose = TargetConfig("default", servers=("a", "b"), health_monitor=True, io_timeout_ms=1000)
    proposal = propose(TARGET, cfg(loose), subject=SUBJECT, evidence=evidence(base_peak_target=5000))
    props = {p.get("name"): p.text for p in ET.fromstring(proposal.changes[0].content).iter("Property")}
    assert props["io.timeout.millis"] == "1000"  # never loosened
    balancer = ET.fromstring(proposal.changes[1].content)
    assert balancer.findtext("MaxFailures") == "3"
    no_evidence = propose(TARGET, cfg(LB_HM), subject=SUBJECT, evidence=None)
    props = {p.get("name"): p.text for p in ET.fromstring(no_evidence.changes[0].content).iter("Property")}
    assert props["io.timeout.millis"] == "10000"


def test_response_cache_keys_by_client_when_clients_authenticate() -> None:
    proposal = propose(TARGET, cfg(LB_HM_TIGHT, API_KEY), subject=SUBJECT, evidence=evidence())
    policy = ET.fromstring(proposal.changes[0].content)
    assert policy.tag == "ResponseCache"
    assert [k.get("ref") for k in policy.iter("KeyFragment")] == ["request.uri", "client_id"]
    assert policy.findtext("ExpirySettings/TimeoutInSeconds") == "60"
    assert policy.findtext("SkipCacheLookup") == 'request.verb != "GET"'


@pytest.mark.parametrize(
    ("peak_rpm", "rate"),
    [(600, "15ps"), (30, "45pm"), (59, "89pm"), (4000, "100ps")],
)
def test_spike_arrest_rate_from_the_baseline_peak(peak_rpm: float, rate: str) -> None:
    proposal = propose(TRAFFIC, cfg(DIRECT), subject=SUBJECT, evidence=evidence(base_peak_rpm=peak_rpm))
    policy = ET.fromstring(proposal.changes[0].content)
    assert policy.findtext("Rate") == rate
    assert policy.get("name") == "SA-LatencyGuard"
    assert ET.fromstring(proposal.changes[1].content).findtext("Name") == "SA-LatencyGuard"


def test_existing_spike_arrest_is_lowered_in_place() -> None:
    proposal = propose(TRAFFIC, cfg(DIRECT, spike("100ps")), subject=SUBJECT, evidence=evidence())
    assert proposal.title == "Lower SpikeArrest SA-1 from 100ps to 15ps"
    assert len(proposal.changes) == 1 and ET.fromstring(proposal.changes[0].content).get("name") == "SA-1"


def test_traffic_without_baseline_falls_back_to_routing() -> None:
    proposal = propose(TRAFFIC, cfg(DIRECT), subject=SUBJECT, evidence=None)
    assert proposal.type == "target-loadbalancer"
    assert any("No baseline traffic" in r for r in proposal.rationale)


def test_policy_review_names_suspects_and_a_debug_session() -> None:
    callout = PolicyInfo("ServiceCallout", "SC-Inventory", True, True)
    script = PolicyInfo("JavaScript", "JS-Unused", True, False)  # not attached: not a suspect
    proposal = propose(PROXY, cfg(DIRECT, callout, script), subject=SUBJECT, evidence=None)
    text = " ".join(proposal.rationale)
    assert "SC-Inventory (ServiceCallout)" in text and "JS-Unused" not in text and "<Timeout>" in text
    (session,) = proposal.changes
    assert session.request == (
        "POST https://apigee.googleapis.com/v1/organizations/shop-prod-417/environments/prod/apis/orders-v1"
        "/revisions/7/debugsessions?timeout=600"
    )
    assert json.loads(session.content) == {"count": 15}


def test_debug_session_length_is_the_timeout_query_parameter_not_validity() -> None:
    """apigee.v1 discovery: DebugSession.validity is 1-15 s (the window for the control plane to
    accept the session); how long the session runs is ``timeout`` (seconds, query parameter)."""
    proposal = propose(UNSURE, cfg(DIRECT), subject=SUBJECT, evidence=None)
    (session,) = proposal.changes
    body = json.loads(session.content)
    # no validity: the server's default (a few seconds) is the acceptance window; the length is timeout
    assert body == {"count": 15}
    assert session.request is not None and session.request.endswith("/debugsessions?timeout=600")
    assert "10 minutes" in session.title


def test_unknown_bundle_is_said_out_loud() -> None:
    proposal = propose(TARGET, UNKNOWN, subject=SUBJECT, evidence=None)
    assert any("could not be read" in r for r in proposal.rationale)
    assert ET.fromstring(proposal.changes[-1].content).find("Authentication") is None


def test_names_are_escaped_in_xml() -> None:
    subject = Subject("shop-prod-417", "prod", 'a"b<c')
    proposal = propose(TARGET, cfg(DIRECT), subject=subject, evidence=None)
    check_payloads(proposal)
