"""A concrete routing-policy change that fits both the diagnosis and the proxy as deployed.

Alert-to-ticket tools stop at "latency is high"; the owner still has to work out what to change.
Here each diagnosis walks a ladder of Apigee routing knobs and proposes the first rung the proxy
does not already have, written as the XML to paste or the management API payload to send:

target-bound (and traffic-bound when throttling is already tight):
  1. ``target-loadbalancer``: a direct URL or a single server -> TargetServers in two regions behind
     a LoadBalancer (failover server, MaxFailures, HealthMonitor, timeouts);
  2. ``target-healthmonitor``: a LoadBalancer without a HealthMonitor -> add one;
  3. ``target-timeouts``: connect/io timeouts unset or looser than the evidence warrants, or no
     MaxFailures -> tighten them so a slow server fails over instead of holding requests;
  4. ``response-cache``: all of the above in place, no ResponseCache -> cache GET responses briefly;
  5. ``investigate``: routing has every knob already -> trace the proxy to find the slow step.
traffic-bound: ``spike-arrest`` (add one, or lower its rate to the baseline's busiest minute with
  headroom), unless an existing SpikeArrest is already at or below that rate.
proxy-bound: ``policy-review``: the policies that usually dominate processing time, and a debug
  session to measure them.
inconclusive: ``investigate``.

XML is built with ``xml.etree`` (no string templates, so names are always escaped) and JSON payloads
use the management API's field names (``sSLInfo``, ``isEnabled``).
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from gatehouse.tickets.diagnosis import Diagnosis
from gatehouse.tickets.evidence import Evidence, fmt_ms
from gatehouse.tickets.proxyconfig import ProxyConfig, Rate, TargetConfig

ProposalType = Literal[
    "target-loadbalancer",
    "target-healthmonitor",
    "target-timeouts",
    "response-cache",
    "spike-arrest",
    "policy-review",
    "investigate",
]
PROPOSAL_TYPES: tuple[ProposalType, ...] = (
    "target-loadbalancer",
    "target-healthmonitor",
    "target-timeouts",
    "response-cache",
    "spike-arrest",
    "policy-review",
    "investigate",
)
API = "https://apigee.googleapis.com/v1"
DEFAULT_CONNECT_TIMEOUT_MS = 3_000  # Apigee's defaults when the properties are absent
DEFAULT_IO_TIMEOUT_MS = 55_000
FAILOVER_CONNECT_TIMEOUT_MS = 2_000
MIN_IO_TIMEOUT_MS = 2_000
MAX_IO_TIMEOUT_MS = 30_000
FALLBACK_IO_TIMEOUT_MS = 10_000
MAX_FAILURES = 3
SPIKE_HEADROOM = 1.5
CACHE_SECONDS = 60
DEBUG_COUNT = 15  # transactions a debug session records (Apigee: 1-15)
DEBUG_SECONDS = 600  # how long it runs: the ``timeout`` query parameter
# policies that usually dominate request/response processing time
HEAVY_POLICIES = (
    "ServiceCallout",
    "ExternalCallout",
    "JavaCallout",
    "JavaScript",
    "PythonScript",
    "KeyValueMapOperations",
    "MessageLogging",
    "XSL",
    "XMLToJSON",
    "JSONToXML",
    "AccessEntity",
    "VerifyJWT",
)
_CLOUD_RUN_HOST = re.compile(
    r"(?P<service>[a-z0-9-]+)-(?P<number>[0-9]+)\.(?P<region>[a-z]+-[a-z]+[0-9]+)\.run\.app"
)


@dataclass(frozen=True)
class Subject:
    organization: str  # the configured Apigee organization (for Apigee X, named after its project)
    environment: str
    proxy: str


@dataclass(frozen=True)
class Change:
    """One thing to apply: an XML fragment for the bundle, or an API request body."""

    title: str
    language: Literal["xml", "json"]
    content: str
    request: str | None = None  # "METHOD URL" for API payloads


@dataclass(frozen=True)
class Proposal:
    type: ProposalType
    title: str
    rationale: tuple[str, ...]
    changes: tuple[Change, ...]


def propose(
    diagnosis: Diagnosis,
    config: ProxyConfig,
    *,
    subject: Subject,
    evidence: Evidence | None,
    failover_regions: Mapping[str, str] | None = None,
) -> Proposal:
    notes: list[str] = []
    if not config.known:
        notes.append("The deployed bundle could not be read: check the proxy does not already have this.")
    if diagnosis.kind == "traffic-bound":
        spike = _spike_arrest(config, evidence, subject, notes)
        if spike is not None:
            return spike
        return _routing(config, evidence, subject, failover_regions or {}, notes)
    if diagnosis.kind == "target-bound":
        return _routing(config, evidence, subject, failover_regions or {}, notes)
    if diagnosis.kind == "proxy-bound":
        return _policy_review(config, subject, notes)
    return _investigate(config, subject, ["The evidence does not single out a cause.", *notes])


# ---------------------------------------------------------------------------------------- routing


def _routing(
    config: ProxyConfig,
    evidence: Evidence | None,
    subject: Subject,
    failover_regions: Mapping[str, str],
    notes: list[str],
) -> Proposal:
    target = config.target
    if config.known and target is None:
        notes.insert(0, "The proxy has no TargetEndpoint, so the time is spent in its own flow.")
        return _policy_review(config, subject, notes)
    target = target or TargetConfig(name="default")
    timeouts = _timeouts(evidence)
    if len(target.servers) < 2:
        return _load_balancer(target, subject, failover_regions, timeouts, notes)
    if not target.health_monitor:
        return Proposal(
            "target-healthmonitor",
            f"Add a HealthMonitor to the {target.name} load balancer",
            (
                f"TargetEndpoint {target.name} balances over {', '.join(target.servers)} but has no "
                "HealthMonitor: a server taken out by MaxFailures never comes back on its own, "
                "and a failing one is only noticed by failing client requests.",
                *notes,
            ),
            (
                Change(
                    f"apiproxy/targets/{target.name}.xml: inside <HTTPTargetConnection>",
                    "xml",
                    _xml(_health_monitor(target.google_id_token)),
                ),
            ),
        )
    loose_io = target.io_timeout_ms is None or target.io_timeout_ms > timeouts.io_ms
    loose_connect = target.connect_timeout_ms is None or target.connect_timeout_ms > timeouts.connect_ms
    if loose_io or loose_connect or not target.max_failures:
        return _tighten(target, timeouts, notes)
    if not config.response_cache:
        return _response_cache(config, target, notes)
    return _investigate(
        config,
        subject,
        [
            f"{target.name} already load-balances with a HealthMonitor, tight timeouts and a ResponseCache: "
            "the remaining latency is inside the backend or a specific flow.",
            *notes,
        ],
    )


@dataclass(frozen=True)
class _Timeouts:
    connect_ms: int
    io_ms: int
    basis: str  # why io_ms


def _timeouts(evidence: Evidence | None) -> _Timeouts:
    """io is twice the baseline's slowest target minute, within bounds; connect fails over fast."""
    base = evidence.baseline if evidence else None
    reference = base.peak_target_ms if base else None
    if reference is None:
        return _Timeouts(
            FAILOVER_CONNECT_TIMEOUT_MS,
            FALLBACK_IO_TIMEOUT_MS,
            f"no baseline target latency, so a conservative {FALLBACK_IO_TIMEOUT_MS // 1000} s",
        )
    io_ms = min(max(math.ceil(2 * reference / 500) * 500, MIN_IO_TIMEOUT_MS), MAX_IO_TIMEOUT_MS)
    return _Timeouts(
        FAILOVER_CONNECT_TIMEOUT_MS,
        io_ms,
        f"twice the slowest baseline minute of the target ({fmt_ms(reference)}), "
        f"within {MIN_IO_TIMEOUT_MS // 1000}-{MAX_IO_TIMEOUT_MS // 1000} s",
    )


def _load_balancer(
    target: TargetConfig,
    subject: Subject,
    failover_regions: Mapping[str, str],
    timeouts: _Timeouts,
    notes: list[str],
) -> Proposal:
    connect_ms, io_ms = timeouts.connect_ms, timeouts.io_ms
    scheme, host, port, path = _split_url(target.url)
    primary, secondary, host_note = _server_hosts(host, failover_regions)
    base = _resource_name(subject.proxy)
    # a single-server balancer keeps its TargetServer; a direct URL gets one for the current backend
    names = (target.servers[0] if target.servers else f"{base}-primary", f"{base}-failover")
    if target.servers:
        host_note = "Replace FAILOVER-HOST with the backend of the existing TargetServer in a second region."
        secondary = "FAILOVER-HOST"
    servers = [(names[1], secondary, "failover")]
    if not target.servers:
        servers.insert(0, (names[0], primary, "primary"))
    tls = scheme == "https"
    payloads = tuple(
        Change(
            f"TargetServer {name} in {subject.environment}",
            "json",
            _json(
                {
                    "name": name,
                    "host": server_host,
                    "port": port,
                    "isEnabled": True,
                    "description": f"{subject.proxy} {role} (proposed by gatehouse)",
                    **({"sSLInfo": {"enabled": True, "enforce": True}} if tls else {}),
                }
            ),
            f"POST {API}/organizations/{subject.organization}/environments/{subject.environment}"
            f"/targetservers?name={name}",
        )
        for name, server_host, role in servers
    )
    connection = ET.Element("HTTPTargetConnection")
    if target.google_id_token:
        auth = ET.SubElement(ET.SubElement(connection, "Authentication"), "GoogleIDToken")
        _sub(auth, "Audience", target.audience or f"{scheme}://{primary}")
    balancer = ET.SubElement(connection, "LoadBalancer")
    _sub(balancer, "Algorithm", "RoundRobin")
    ET.SubElement(balancer, "Server", name=names[0])
    _sub(ET.SubElement(balancer, "Server", name=names[1]), "IsFallback", "true")
    _sub(balancer, "MaxFailures", str(MAX_FAILURES))
    _sub(balancer, "RetryEnabled", "true")
    if path:
        _sub(connection, "Path", path)
    connection.append(_health_monitor(target.google_id_token, port))
    connection.append(_properties(connect_ms, io_ms))
    single = len(target.servers) == 1
    rationale = [
        (
            f"TargetEndpoint {target.name} sends every request to one server ({target.servers[0]}), "
            "and MaxFailures on a single server only turns slowness into errors."
            if single
            else f"TargetEndpoint {target.name} calls one URL ({target.url or 'unknown'}) with nothing "
            "to fail over to."
        ),
        f"Two TargetServers, the second in another region as a fallback: after {MAX_FAILURES} failures "
        f"(a request over the {io_ms // 1000} s io timeout counts as one) the primary leaves rotation and "
        "the HealthMonitor brings it back once it answers again.",
        f"io.timeout.millis {io_ms} is {timeouts.basis}; connect.timeout.millis {connect_ms} fails over fast "
        f"(Apigee defaults: {DEFAULT_CONNECT_TIMEOUT_MS} and {DEFAULT_IO_TIMEOUT_MS}).",
    ]
    if target.google_id_token:
        rationale.append(
            "The target authenticates with a Google ID token: add the Audience below to the failover "
            "service's customAudiences so one token fits both regions, and note that HealthMonitor probes "
            "carry no token (hence a TCP monitor)."
        )
    if host_note:
        rationale.append(host_note)
    return Proposal(
        "target-loadbalancer",
        "Route through a TargetServer load balancer with a health monitor and a failover region",
        (*rationale, *notes),
        (
            *payloads,
            Change(
                f"apiproxy/targets/{target.name}.xml: replace <HTTPTargetConnection>", "xml", _xml(connection)
            ),
        ),
    )


def _tighten(target: TargetConfig, timeouts: _Timeouts, notes: list[str]) -> Proposal:
    now_io = target.io_timeout_ms or DEFAULT_IO_TIMEOUT_MS
    now_connect = target.connect_timeout_ms or DEFAULT_CONNECT_TIMEOUT_MS
    new_io, new_connect = min(timeouts.io_ms, now_io), min(timeouts.connect_ms, now_connect)
    changes = [
        Change(
            f"apiproxy/targets/{target.name}.xml: inside <HTTPTargetConnection>",
            "xml",
            _xml(_properties(new_connect, new_io)),
        )
    ]
    rationale = [
        f"{target.name} already load-balances over {len(target.servers)} servers with a HealthMonitor; what "
        "is left is how long a slow server may hold a request.",
        f"io.timeout.millis {now_io} → {new_io} ({timeouts.basis}); connect.timeout.millis {now_connect} → "
        f"{new_connect}.",
    ]
    if not target.max_failures:
        balancer = ET.Element("LoadBalancer")
        if target.algorithm:
            _sub(balancer, "Algorithm", target.algorithm)
        for server in target.servers:
            element = ET.SubElement(balancer, "Server", name=server)
            if server in target.fallback_servers:
                _sub(element, "IsFallback", "true")
        _sub(balancer, "MaxFailures", str(MAX_FAILURES))
        _sub(balancer, "RetryEnabled", "true")
        changes.append(
            Change(f"apiproxy/targets/{target.name}.xml: replace <LoadBalancer>", "xml", _xml(balancer))
        )
        rationale.append(
            f"MaxFailures {MAX_FAILURES} takes a server that keeps timing out out of rotation (it is "
            f"{target.max_failures or 0} now, so a slow server keeps its share); RetryEnabled retries the "
            "request once on the next server. Keep RetryEnabled false if the API is not idempotent."
        )
    return Proposal(
        "target-timeouts",
        f"Tighten {target.name} timeouts and retry limits",
        (*rationale, *notes),
        tuple(changes),
    )


def _response_cache(config: ProxyConfig, target: TargetConfig, notes: list[str]) -> Proposal:
    name = "RC-LatencyCache"
    policy = ET.Element("ResponseCache", {"async": "false", "continueOnError": "false", "enabled": "true"})
    policy.set("name", name)
    _sub(policy, "DisplayName", name)
    key = ET.SubElement(policy, "CacheKey")
    ET.SubElement(key, "KeyFragment", ref="request.uri", type="string")
    rationale = [
        f"{target.name} already load-balances with a HealthMonitor and tight timeouts; serving repeated GETs "
        f"from cache for {CACHE_SECONDS} s takes them off the slow backend entirely.",
        "Only cache responses that are safe to serve up to a minute stale.",
    ]
    if config.verifies_clients:
        ET.SubElement(key, "KeyFragment", ref="client_id", type="string")
        rationale.append(
            "The proxy authenticates clients, so the key includes client_id: attach after that step."
        )
    _sub(ET.SubElement(policy, "ExpirySettings"), "TimeoutInSeconds", str(CACHE_SECONDS))
    _sub(policy, "SkipCacheLookup", 'request.verb != "GET"')
    _sub(policy, "SkipCachePopulation", 'request.verb != "GET"')
    step = ET.Element("Step")
    _sub(step, "Name", name)
    return Proposal(
        "response-cache",
        "Cache GET responses in front of the slow backend",
        (*rationale, *notes),
        (
            Change(f"apiproxy/policies/{name}.xml", "xml", _xml(policy)),
            Change(
                f"apiproxy/proxies/default.xml <PreFlow><Request> and apiproxy/targets/{target.name}.xml "
                "<PostFlow><Response>: add the step",
                "xml",
                _xml(step),
            ),
        ),
    )


# ------------------------------------------------------------------------------------ spike arrest


def _spike_arrest(
    config: ProxyConfig, evidence: Evidence | None, subject: Subject, notes: list[str]
) -> Proposal | None:
    busiest = evidence.baseline.peak_rpm if evidence else None
    if not busiest:
        notes.append("No baseline traffic to size a SpikeArrest from.")
        return None
    per_minute = math.ceil(busiest * SPIKE_HEADROOM)
    # per second once rounding up costs little; below that per minute keeps the rate exact
    rate = Rate(math.ceil(per_minute / 60), "ps") if per_minute >= 600 else Rate(per_minute, "pm")
    existing = config.spike_arrest
    fixed_rate = existing.rate if existing is not None and existing.rate_ref is None else None
    if fixed_rate is not None and existing is not None and fixed_rate.per_minute <= rate.per_minute:
        notes.append(
            f"SpikeArrest {existing.name} already limits to {existing.rate} (at or below the proposed "
            f"{rate}), so throttling is not the lever."
        )
        return None
    name = existing.name if existing else "SA-LatencyGuard"
    policy = ET.Element("SpikeArrest", {"async": "false", "continueOnError": "false", "enabled": "true"})
    policy.set("name", name)
    _sub(policy, "DisplayName", name)
    _sub(policy, "Rate", str(rate))
    _sub(policy, "UseEffectiveCount", "true")
    rationale = [
        f"The baseline's busiest minute had {busiest:,.0f} requests; {rate} ({SPIKE_HEADROOM}x that) lets "
        "normal peaks through and sheds the spike with 429s before it reaches the backend.",
    ]
    changes = [Change(f"apiproxy/policies/{name}.xml", "xml", _xml(policy))]
    if existing is None:
        step = ET.Element("Step")
        _sub(step, "Name", name)
        changes.append(
            Change(
                "apiproxy/proxies/default.xml <PreFlow><Request>: first step after authentication",
                "xml",
                _xml(step),
            )
        )
        title = f"Add a SpikeArrest of {rate} to {subject.proxy}"
    elif existing.rate_ref is not None:
        rationale.append(
            f"{name} takes its rate from {existing.rate_ref}; set that to {rate} or use this literal."
        )
        title = f"Set SpikeArrest {name} to {rate}"
    else:
        rationale.append(f"{name} allows {existing.rate} now, more than the backend absorbs.")
        title = f"Lower SpikeArrest {name} from {existing.rate} to {rate}"
    return Proposal("spike-arrest", title, (*rationale, *notes), tuple(changes))


# ------------------------------------------------------------------------------ review / investigate


def _policy_review(config: ProxyConfig, subject: Subject, notes: list[str]) -> Proposal:
    suspects = [p for p in config.policies if p.active and p.kind in HEAVY_POLICIES]
    rationale = [
        "The time is spent in the proxy's own flow, so routing changes will not help; find the slow step.",
    ]
    if suspects:
        listed = ", ".join(f"{p.name} ({p.kind})" for p in suspects[:20])
        rationale.append(f"Policies that usually dominate processing time here: {listed}.")
        if any(p.kind == "ServiceCallout" for p in suspects):
            rationale.append(
                "A ServiceCallout's call counts as proxy time: give it a <Timeout> and cache its result."
            )
    elif config.known:
        rationale.append(
            "No callout or script policies are attached; look at flow conditions and shared flows."
        )
    return Proposal(
        "policy-review",
        f"Find the slow policy in {subject.proxy}",
        (*rationale, *notes),
        (_debug_session(config, subject),),
    )


def _investigate(config: ProxyConfig, subject: Subject, rationale: list[str]) -> Proposal:
    return Proposal(
        "investigate",
        f"Trace {subject.proxy} to find where the time goes",
        tuple(rationale),
        (_debug_session(config, subject),),
    )


def _debug_session(config: ProxyConfig, subject: Subject) -> Change:
    """``debugsessions.create``: the session runs for the ``timeout`` query parameter (seconds);
    the body's ``validity`` is only the 1-15 s window for the control plane to accept it, so it is
    left at its default."""
    revision = config.revision or "REVISION"
    return Change(
        f"Start a debug session ({DEBUG_COUNT} transactions, {DEBUG_SECONDS // 60} minutes) and read each "
        "policy's execution time",
        "json",
        _json({"count": DEBUG_COUNT}),
        f"POST {API}/organizations/{subject.organization}/environments/{subject.environment}"
        f"/apis/{subject.proxy}/revisions/{revision}/debugsessions?timeout={DEBUG_SECONDS}",
    )


# ---------------------------------------------------------------------------------------- helpers


def _health_monitor(google_id_token: bool, port: int = 443) -> ET.Element:
    monitor = ET.Element("HealthMonitor")
    _sub(monitor, "IsEnabled", "true")
    _sub(monitor, "IntervalInSec", "10")
    if google_id_token:
        tcp = ET.SubElement(monitor, "TCPMonitor")
        _sub(tcp, "ConnectTimeoutInSec", "5")
        _sub(tcp, "Port", str(port))
        return monitor
    http = ET.SubElement(monitor, "HTTPMonitor")
    request = ET.SubElement(http, "Request")
    _sub(request, "ConnectTimeoutInSec", "5")
    _sub(request, "SocketReadTimeoutInSec", "5")
    _sub(request, "Port", str(port))
    _sub(request, "Verb", "GET")
    _sub(request, "Path", "/healthz")
    _sub(ET.SubElement(http, "SuccessResponse"), "ResponseCode", "200")
    return monitor


def _properties(connect_ms: int, io_ms: int) -> ET.Element:
    properties = ET.Element("Properties")
    _sub(properties, "Property", str(connect_ms)).set("name", "connect.timeout.millis")
    _sub(properties, "Property", str(io_ms)).set("name", "io.timeout.millis")
    return properties


def _split_url(url: str | None) -> tuple[str, str | None, int, str]:
    """(scheme, host, port, path) of a target URL; https and no host when it cannot be read."""
    if not url or "{" in url:
        return "https", None, 443, ""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "https", None, 443, ""
    scheme = "http" if parts.scheme == "http" else "https"
    return scheme, parts.hostname, port or (80 if scheme == "http" else 443), parts.path.rstrip("/")


def _server_hosts(host: str | None, failover_regions: Mapping[str, str]) -> tuple[str, str, str | None]:
    """(primary host, failover host, note when the failover host is a placeholder)."""
    if host is None:
        return (
            "PRIMARY-HOST",
            "FAILOVER-HOST",
            "Replace PRIMARY-HOST and FAILOVER-HOST with the two backends.",
        )
    match = _CLOUD_RUN_HOST.fullmatch(host)
    if match is None:
        return (
            host,
            "FAILOVER-HOST",
            "Replace FAILOVER-HOST with the same backend deployed in a second region.",
        )
    region = match["region"]
    failover = failover_regions.get(region)
    secondary = f"{match['service']}-{match['number']}.{failover or 'FAILOVER-REGION'}.run.app"
    if failover is None:
        return (
            host,
            secondary,
            "Deploy the service in a second region and put it in place of FAILOVER-REGION.",
        )
    return host, secondary, f"The failover is the same Cloud Run service deployed in {failover}."


def _resource_name(proxy: str) -> str:
    """A TargetServer name derived from the proxy name (letters, digits, '-', '_', '.')."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", proxy)[:200]
    return cleaned or "target"


def _sub(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = text
    return element


def _xml(element: ET.Element) -> str:
    ET.indent(element, space="  ")
    return ET.tostring(element, encoding="unicode")


def _json(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, indent=2)
