"""A notification storm: 10,000 Cloud Monitoring notifications for 20 proxies (20 open latency
incidents, each re-sent 500 times, interleaved) through Pub/Sub into the tickets job, with the
hourly ticket cap at its default of 10 and at 20.

Setup (not measured). A full local stack: the alerts topic and its pull subscription on the Pub/Sub
emulator, the ledger in the Firestore emulator, tickets in the GitHub stand-in, per-minute
analytics in the Apigee stand-in. For each of 20 proxies an hour of calm traffic then 20 minutes of
incident is seeded (``gatehouse.local.samples.scenario``: even proxies target-bound with a ``target``
latency alert, odd ones a traffic spike with a ``proxy`` latency alert), and one open incident
notification (``samples.incident``) is built per proxy. The 10,000 messages are published to the
alerts topic with ``samples.publish`` (one ``PublisherClient``, default batching).

What is measured. ``gatehouse.tickets.run`` in-process with ``runtime.ticket_ports`` and
``runtime.ticket_settings`` as the ``latency-tickets`` entry point builds them, run again and again
(at most 5 times) until a run finds the subscription drained: the first run pulls all 10,000 (its
``max_messages``), the next one confirms the subscription is empty. (a) cap 10 on one stack: 10
tickets and one digest ticket listing the other 10 are expected; (b) cap 20 on a fresh stack: 20
tickets and no digest. Reported per case: tickets, digest, comments, messages acknowledged, the
runs' wall time and notifications per second, analytics calls (at most one per proxy per run is the
contract), tracker calls by route (the GitHub stand-in's counters) and, from a timing wrapper around
the job's ports, where the run's time goes (pulls, acks, ledger, tracker, analytics, the job's own
CPU), and what the job's three client-side rate limiters (analytics, Apigee management, tracker
creations) made it wait, read from probes in front of them that change nothing. The benchmark fails
(not silently) if more than 20 tickets were created or a fingerprint got two tickets.

Why that baseline. The queue's own cost, measured on the same stack before the storm: publishing
the 10,000 messages, then pulling and acknowledging them through the job's own ``PubSubMessages``
adapter without processing them (pull 1,000 at a time until an empty answer, acknowledge 1,000 ids
a request). What the job adds to that is gatehouse: triage and grouping, evidence reads, ledger
writes, tracker calls.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import time
from collections import Counter
from typing import Any

import requests

from bench.harness import (
    BenchError,
    PortTimer,
    figure,
    local_stack,
    log,
    ms,
    reset_standin_calls,
    sized,
    standin_calls,
    time_limit,
)
from gatehouse.local import samples

PROXIES = 20
RESENDS = 500
NOTIFICATIONS = PROXIES * RESENDS
MAX_RUNS = 5
CAP = 10  # the hourly ticket cap of the first case (the default); the second case has none binding
RUN_LIMIT_S = 120.0  # one job run
DRAIN_LIMIT_S = 120.0  # the baseline's pull-and-ack


def _incidents(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Seed each proxy's analytics and build its one open incident notification."""
    env = state["environment"]
    out = []
    for i in range(PROXIES):
        proxy = f"storm-{i:02d}"
        samples.seed_proxy(state, proxy)  # the job tickets only proxies gatehouse owns
        kind, family = ("target", "target") if i % 2 == 0 else ("traffic", "proxy")
        started = samples.seed_stats(state, env, proxy, samples.scenario(kind))
        out.append(
            samples.incident(
                state,
                incident_id=f"0.storm-{i:02d}",
                proxy=proxy,
                environment=env,
                started_at=started,
                family=family,
            )
        )
    return out


def _publish(state: dict[str, Any], incidents: list[dict[str, Any]]) -> float:
    """Publish the storm (interleaved: every pull sees every proxy); returns the seconds it took."""
    storm = [incidents[i % PROXIES] for i in range(NOTIFICATIONS)]
    started = time.perf_counter()
    samples.publish(state, "alerts", storm)
    return time.perf_counter() - started


def _drain_only(state: dict[str, Any]) -> dict[str, float]:
    """Pull and acknowledge everything without processing it, through the job's own adapter."""
    from gatehouse.adapters.pubsub import ACK_CHUNK, MAX_PULL, PubSubMessages

    messages = PubSubMessages(state["subscriptions"]["alerts"])
    pulled, pulls = 0, 0
    try:
        with time_limit(DRAIN_LIMIT_S, "baseline pull and ack"):
            started = time.perf_counter()
            last_empty = 0.0
            while True:
                began = time.perf_counter()
                batch = messages.pull(MAX_PULL)
                pulls += 1
                if not batch:
                    last_empty = time.perf_counter() - began
                    break
                pulled += len(batch)
                ids = [m.ack_id for m in batch]
                for start in range(0, len(ids), ACK_CHUNK):
                    messages.ack(ids[start : start + ACK_CHUNK])
            elapsed = time.perf_counter() - started
    finally:
        messages.close()
    if pulled != NOTIFICATIONS:
        raise BenchError(f"baseline pulled {pulled} messages, published {NOTIFICATIONS}")
    return {
        "seconds": elapsed,
        "without_final_empty_pull_s": elapsed - last_empty,
        "final_empty_pull_s": last_empty,
        "pulls": pulls,
    }


class _LimiterProbe:
    """Stands in front of one of the job's client-side rate limiters and adds up what it waited
    (``RateLimiter.acquire`` returns the seconds it slept); the limiter itself decides as before."""

    def __init__(self, limiter: Any) -> None:
        self.limiter, self.acquired, self.waited = limiter, 0, 0.0

    def acquire(self) -> float:
        waited = float(self.limiter.acquire())
        self.acquired += 1
        self.waited += waited
        return waited

    def to_dict(self) -> dict[str, Any]:
        limiter = self.limiter
        return {
            "per_minute": round(limiter.rate * 60),
            "burst": limiter.capacity,
            "acquired": self.acquired,
            "waited_s": round(self.waited, 2),
        }


def _ports(settings: Any, config: Any, timer: PortTimer) -> tuple[Any, dict[str, _LimiterProbe]]:
    """The job's ports, timed, and probes on its three client-side rate limiters."""
    from gatehouse import runtime

    ports = runtime.ticket_ports(settings, config)
    analytics: Any = ports.stats  # ApigeeAnalytics
    http: Any = ports.tracker._http  # type: ignore[attr-defined]  # GitHubTracker's REST plumbing
    probes = {
        "analytics (stats calls)": _LimiterProbe(analytics.limiter),
        "Apigee management client (stats + bundle reads)": _LimiterProbe(analytics.client.limiter),
        "tracker creations (issues, comments)": _LimiterProbe(http.creates),
    }
    analytics.limiter = probes["analytics (stats calls)"]
    # the limiter lives on the shared REST session; ApigeeClient.limiter only reads it
    analytics.client.http.limiter = probes["Apigee management client (stats + bundle reads)"]
    http.creates = probes["tracker creations (issues, comments)"]
    timed = dataclasses.replace(
        ports,
        messages=timer.wrap("messages", ports.messages),
        ledger=timer.wrap("ledger", ports.ledger),
        tracker=timer.wrap("tracker", ports.tracker),
        stats=timer.wrap("stats", ports.stats),
        bundles=timer.wrap("bundles", ports.bundles),
    )
    return timed, probes


def _issues(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Every issue of the tracker repository (the GitHub stand-in), pages of 100."""
    out: list[dict[str, Any]] = []
    url = f"{state['github']}/repos/{state['tracker_repo']}/issues"
    for page in range(1, 20):
        r = requests.get(
            url,
            params={"state": "all", "per_page": "100", "page": str(page)},
            headers={"Authorization": "Bearer bench"},
            timeout=10,
        )
        r.raise_for_status()
        found = [i for i in r.json() if isinstance(i, dict) and "pull_request" not in i]
        out += found
        if len(found) < 100:
            break
    return out


def _storm(state: dict[str, Any], cap: int, incidents: list[dict[str, Any]]) -> dict[str, Any]:
    """Publish the storm, then run the job until the subscription is drained; check the tickets."""
    from gatehouse import runtime
    from gatehouse.config import load_settings, load_tickets_config
    from gatehouse.tickets import run

    published = _publish(state, incidents)
    log(f"tickets_storm cap {cap}: published {NOTIFICATIONS} in {published:.2f}s")
    settings = load_settings()
    config = load_tickets_config().model_copy(update={"max_new_per_hour": cap})
    ticket_settings = runtime.ticket_settings(config, settings)
    urls = {name: state[name] for name in ("apigee", "github", "secretmanager")}
    runs: list[dict[str, Any]] = []
    for attempt in range(1, MAX_RUNS + 1):
        timer = PortTimer()
        ports, probes = _ports(settings, config, timer)  # a new job process builds new clients
        reset_standin_calls(urls)
        gc.collect()
        try:
            with time_limit(RUN_LIMIT_S, f"tickets run {attempt}"):
                started = time.perf_counter()
                report = run(ports, ticket_settings)
                elapsed = time.perf_counter() - started
        finally:
            ports.messages._adapter.close()
        calls = standin_calls(urls)
        limits = {name: probe.to_dict() for name, probe in probes.items()}
        runs.append({"seconds": elapsed, "report": report, "timer": timer, "calls": calls, "limits": limits})
        log(
            f"tickets_storm cap {cap}: run {attempt} {elapsed:.2f}s, pulled {report.pulled}, "
            f"acked {report.acked}, left {report.left}, actions {report.actions()}, "
            f"stats calls {report.stats_calls}"
        )
        if report.failures:
            log(f"tickets_storm cap {cap}: run {attempt} failures: {report.failures[:3]}")
        if report.pulled == 0 or (report.drained and not report.left):
            break
    else:
        raise BenchError(f"cap {cap}: the subscription was not drained after {MAX_RUNS} runs")

    issues = _issues(state)
    by_label: Counter[str] = Counter()
    digests = []
    for issue in issues:
        names = [label["name"] for label in issue["labels"]]
        by_label.update(n for n in names if n.startswith("gatehouse-fp-"))
        if any(n.startswith("gatehouse-digest-") for n in names):
            digests.append(issue)
    tickets = sum(by_label.values())
    twice = sorted(label for label, n in by_label.items() if n > 1)
    if tickets > PROXIES or twice:
        raise BenchError(
            f"cap {cap}: {tickets} tickets for {PROXIES} problems; fingerprints with two tickets: {twice}"
        )
    ticketed = {i["title"].split()[1] for i in issues if i not in digests}
    listed = sorted(
        f"storm-{i:02d}"
        for i in range(PROXIES)
        if any(f"storm-{i:02d}" in (d["body"] or "") for d in digests) and f"storm-{i:02d}" not in ticketed
    )
    return {
        "cap": cap,
        "published_s": published,
        "runs": runs,
        "tickets": tickets,
        "digests": len(digests),
        "digest_lists": listed,
        "comments": sum(int(i.get("comments") or 0) for i in issues),
        "acked": sum(r["report"].acked for r in runs),
        "ticketed_proxies": sorted(ticketed),
    }


def _run_details(r: dict[str, Any]) -> dict[str, Any]:
    report, timer = r["report"], r["timer"]
    busy = PortTimer.busy_seconds(timer.calls)
    return {
        "seconds": round(r["seconds"], 2),
        "pulled": report.pulled,
        "acked": report.acked,
        "left": report.left,
        "drained": report.drained,
        "actions": report.actions(),
        "ignored": dict(report.ignored),
        "stats_calls": report.stats_calls,
        "bundle_reads": report.bundle_reads,
        "failures": list(report.failures),
        "waiting_for_calls_s": round(busy, 2),
        "own_cpu_between_calls_s": round(r["seconds"] - busy, 2),
        "max_port_calls_in_flight": PortTimer.max_in_flight(timer.calls),
        "client_side_rate_limiters": r["limits"],
        "port_time_by_method": PortTimer.summary(timer.calls),
        "http_calls_by_route": {
            f"{name}: {route}": n for name, calls in r["calls"].items() for route, n in sorted(calls.items())
        },
    }


def _port_seconds(r: dict[str, Any], port: str) -> float:
    return float(sum(c.end - c.start for c in r["timer"].calls if c.port == port))


def _case_figures(case: dict[str, Any], baseline: dict[str, float]) -> list[dict[str, Any]]:
    cap, runs = case["cap"], case["runs"]
    first = runs[0]
    total = sum(r["seconds"] for r in runs)
    queue = baseline["without_final_empty_pull_s"]
    stats_per_run = [r["report"].stats_calls for r in runs]
    tracker: Counter[str] = Counter()
    for r in runs:
        tracker.update(r["calls"]["github"])
    limits = first["limits"]
    analytics_waits = sum(v["waited_s"] for k, v in limits.items() if not k.startswith("tracker"))
    tracker_waits = sum(v["waited_s"] for k, v in limits.items() if k.startswith("tracker"))
    waited = analytics_waits + tracker_waits
    expected = (PROXIES, 0) if cap >= PROXIES else (cap, 1)
    others = PROXIES - cap if cap < PROXIES else 0
    return [
        figure(
            f"storm of {NOTIFICATIONS} notifications for {PROXIES} proxies, hourly cap {cap}: tickets job "
            "run 1 (pull all, plan, apply, acknowledge) wall time",
            round(first["seconds"], 2),
            "s",
            baseline=round(queue, 2),
            baseline_label=f"pull and acknowledge the same {NOTIFICATIONS} messages without processing "
            "(PubSubMessages, 1,000 a pull, until the last message)",
            throughput_per_s=round(NOTIFICATIONS / first["seconds"], 1),
            baseline_throughput_per_s=round(NOTIFICATIONS / queue, 1),
            runs_until_drained=len(runs),
            all_runs_s=[round(r["seconds"], 2) for r in runs],
            until_drained_s=round(total, 2),
            until_drained_throughput_per_s=round(NOTIFICATIONS / total, 1),
            publish_s=round(case["published_s"], 2),
        ),
        figure(
            f"  cap {cap}: of run 1, time spent waiting in the job's client-side rate limiters",
            round(waited, 2),
            "s",
            share_of_run_pct=round(100 * waited / first["seconds"], 1),
            limiters=first["limits"],
            rest_of_run_1_s={
                "ledger (Firestore emulator)": round(_port_seconds(first, "ledger"), 2),
                "pull + ack (Pub/Sub emulator)": round(_port_seconds(first, "messages"), 2),
                "analytics and bundle HTTP (Apigee stand-in)": round(
                    _port_seconds(first, "stats") + _port_seconds(first, "bundles") - analytics_waits, 2
                ),
                "issue creation HTTP (GitHub stand-in)": round(
                    _port_seconds(first, "tracker") - tracker_waits, 2
                ),
                "the job's own CPU between calls": round(
                    first["seconds"] - PortTimer.busy_seconds(first["timer"].calls), 2
                ),
            },
        ),
        figure(
            f"  cap {cap}: tickets created (+ digest tickets)",
            case["tickets"],
            "tickets",
            target=f"{expected[0]} tickets + {expected[1]} digest"
            + (f" listing the other {others}" if others else ""),
            passed=(case["tickets"], case["digests"]) == expected
            and (not others or len(case["digest_lists"]) == others),
            digests=case["digests"],
            digest_lists=case["digest_lists"],
            ticketed_proxies=case["ticketed_proxies"],
            comments=case["comments"],
        ),
        figure(
            f"  cap {cap}: messages acknowledged",
            case["acked"],
            "messages",
            target=f"{NOTIFICATIONS}",
            passed=case["acked"] == NOTIFICATIONS,
        ),
        figure(
            f"  cap {cap}: analytics (stats) calls per run",
            max(stats_per_run),
            "calls",
            target=f"<= {PROXIES} (one per proxy per run)",
            passed=max(stats_per_run) <= PROXIES,
            per_run=stats_per_run,
        ),
        figure(
            f"  cap {cap}: tracker calls (GitHub stand-in), all runs",
            sum(tracker.values()),
            "calls",
            by_route=dict(sorted(tracker.items())),
        ),
    ]


# smoke size: the same code at sizes that finish in seconds (`python -m bench --smoke`, run by make test)
SMOKE: dict[str, Any] = {"PROXIES": 3, "RESENDS": 5, "NOTIFICATIONS": 15, "CAP": 2}


def run(smoke: bool = False) -> dict[str, Any]:
    with sized(globals(), SMOKE if smoke else {}):
        return _measure()


def _measure() -> dict[str, Any]:
    load = {"before": [round(x, 2) for x in os.getloadavg()]}
    cases = []
    with local_stack("tickets_storm") as state:
        incidents = _incidents(state)
        publish_only = _publish(state, incidents)
        drain = _drain_only(state)
        log(
            f"tickets_storm baseline: publish {publish_only:.2f}s, pull+ack {drain['seconds']:.2f}s "
            f"({drain['pulls']} pulls; the final empty one {drain['final_empty_pull_s']:.2f}s)"
        )
        cases.append(_storm(state, CAP, incidents))
    with local_stack("tickets_storm_cap20") as state:
        cases.append(_storm(state, PROXIES, _incidents(state)))
    load["after"] = [round(x, 2) for x in os.getloadavg()]

    figures = [
        figure(
            f"baseline: publish {NOTIFICATIONS} notifications to the alerts topic",
            round(publish_only, 2),
            "s",
            throughput_per_s=round(NOTIFICATIONS / publish_only, 1),
        ),
        figure(
            f"baseline: pull and acknowledge {NOTIFICATIONS} messages without processing",
            round(drain["without_final_empty_pull_s"], 2),
            "s",
            throughput_per_s=round(NOTIFICATIONS / drain["without_final_empty_pull_s"], 1),
            pulls=drain["pulls"],
            final_empty_pull_ms=ms(drain["final_empty_pull_s"]),
        ),
    ]
    for case in cases:
        figures += _case_figures(case, drain)
    return {
        "figures": figures,
        "details": {
            **{f"cap_{c['cap']}_runs": [_run_details(r) for r in c["runs"]] for c in cases},
            "load_average_1_5_15": load,
        },
    }
