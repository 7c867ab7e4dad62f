"""A burst: 50 services deployed at once, registered through Pub/Sub, until all are READY.

What is measured. On a full local stack (Apigee deployments take 300 ms to become READY), 50
opted-in services are created through the official Cloud Run client from 50 threads at once. Each
create publishes its audit entries; the Pub/Sub emulator pushes them to the one ``on_run_event``
process (functions-framework's gunicorn: 1 worker, 4 threads per core), which registers each
service and records the outcome ``registered`` in Firestore only after its deployment is READY.
Reported: the wall time from the first create call to the last ``registered`` outcome, and p50/p95
of the per-service latency (its create call returned -> its outcome committed), plus the management
calls per service (stand-in counters, minus the benchmark's 50 creates). The function has handled
one warm-up service first, so its cold start (see ``cold_start``) is not part of this figure.

Outcome times are Firestore's commit timestamps (``update_time``), read back from the emulator on the
same machine: they are exact, where polling would add up to a poll interval. Since they are wall-clock
times, the create times they are compared with are ``time.time()``; the benchmark's own intervals use
``time.perf_counter``.

What limits it is recorded next to the figures: from ``on_run_event``'s own log, how long one
registration takes inside the function and how many ran at once; and, probed separately, how many
push requests the Pub/Sub emulator keeps in flight per subscription (8 messages to an endpoint that
answers after 0.5 s).

Why that baseline. The same 50 services on a fresh stack whose audit subscription nobody consumes,
registered by one in-process ``Registrar.sweep(apply=True)`` (what ``gatehouse reconcile --all
--apply`` and the nightly job run: one process, 4 workers): the same work without Pub/Sub, pushes
and the function's threads, under the same per-process Apigee client rate limit (1,200 calls a
minute). To show whether that limit binds, 50 more services are then swept on the same stack
with the limit at its maximum, 6,000 a minute.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.calls_per_service import TARGET_NEW
from bench.harness import (
    BenchError,
    CallCount,
    Outcomes,
    PushRecorder,
    RunFleet,
    detach_run_events,
    figure,
    local_stack,
    log,
    median,
    ms,
    percentile,
    read_stats,
    reset_stats,
    sized,
    wait_until,
)

SERVICES = 50
OUTCOME_TIMEOUT = 180.0
TARGET_CALLS = TARGET_NEW  # the per-service target of calls_per_service (with its API product)
MAX_CALLS_PER_MINUTE = 6000  # the highest GATEHOUSE_APIGEE_CALLS_PER_MINUTE (Apigee's own org quota)


def _burst(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    fleet = RunFleet(state)
    outcomes = Outcomes(state["project"])
    prefix = fleet.key("burst-")

    fleet.create("burst-warmup")
    outcomes.wait(fleet.key("burst-warmup"), "registered", timeout=60)
    reset_stats(state)
    fleet.own_calls.clear()

    created: dict[str, float] = {}  # name -> wall time its create call returned
    lock = threading.Lock()

    def create(name: str) -> None:
        fleet.create(name)
        with lock:
            created[name] = time.time()

    log(f"burst: creating {len(names)} services from {len(names)} threads")
    first_create_wall, started = time.time(), time.perf_counter()
    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(create, names))
    creates_done = time.perf_counter() - started

    registered: dict[str, float] = {}  # key -> commit time of its "registered" outcome

    def all_registered() -> bool:
        for key, (result, committed) in outcomes.read(prefix).items():
            if result == "registered" and key not in registered:
                registered[key] = committed
        return len([k for k in registered if not k.endswith("/burst-warmup")]) >= len(names)

    wait_until(
        all_registered, timeout=OUTCOME_TIMEOUT, what=f"{len(names)} registered outcomes", interval=0.25
    )
    observed = time.perf_counter() - started
    time.sleep(1.0)  # late duplicates or retries would show in the counters
    calls = CallCount.between(read_stats(state), fleet.own_calls, per=len(names))

    latencies = [registered[fleet.key(n)] - created[n] for n in names]
    if min(latencies) < 0:
        raise BenchError("an outcome was committed before its create call returned: clocks disagree")
    wall = max(registered[fleet.key(n)] for n in names) - first_create_wall
    log(f"burst: all {len(names)} registered, {wall:.2f}s after the first create")
    return {
        "wall": wall,
        "latencies": latencies,
        "calls": calls,
        "creates_done_s": round(creates_done, 2),
        "observed_by_polling_s": round(observed, 2),
    }


def _registrations_in_function(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """From ``on_run_event``'s log: per registration, its first line ("invoker granted") to its
    "service registered" line, and the most registrations that overlapped in time."""
    wanted = {f"projects/{state['project']}/locations/{state['region']}/services/{n}" for n in names}
    spans: dict[str, list[float]] = {}
    for line in (Path(state["state_dir"]) / "logs" / "on_run_event.log").read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if (
            record.get("service") not in wanted
            or record.get("message") == "operation started; waiting for its completion entry"
        ):
            continue
        at = datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00")).timestamp()
        span = spans.setdefault(record["logging.googleapis.com/labels"]["correlation_id"], [at, at])
        span[1] = at
    edges = sorted([(start, 1) for start, _ in spans.values()] + [(end, -1) for _, end in spans.values()])
    overlap = most = 0
    for _, step in edges:
        overlap += step
        most = max(most, overlap)
    return {
        "registrations_logged": len(spans),
        "registration_in_function_ms_median": ms(median([end - start for start, end in spans.values()])),
        "most_registrations_at_once": most,
    }


def _emulator_push_concurrency(state: dict[str, Any]) -> int:
    """How many push requests the Pub/Sub emulator keeps in flight for one subscription."""
    from google.cloud import pubsub_v1

    topic = f"projects/{state['project']}/topics/bench-push-probe"
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    with PushRecorder(delay=0.5) as recorder:
        publisher.create_topic(name=topic)
        subscriber.create_subscription(
            request={
                "name": f"projects/{state['project']}/subscriptions/bench-push-probe",
                "topic": topic,
                "push_config": {"push_endpoint": f"{recorder.url}/{topic}"},
                "ack_deadline_seconds": 30,
            }
        )
        for future in [publisher.publish(topic, b"{}") for _ in range(8)]:
            future.result(timeout=10)
        wait_until(lambda: len(recorder.received) >= 8, timeout=30, what="8 probe pushes")
    subscriber.close()
    return recorder.max_in_flight


def _sweep_baseline(
    state: dict[str, Any], names: list[str], calls_per_minute: int | None = None
) -> dict[str, Any]:
    """Create ``names`` unnoticed, then register them with one in-process sweep (the services
    registered by an earlier call are swept too, at no cost beyond the listings)."""
    from gatehouse import runtime
    from gatehouse.config import load_settings

    detach_run_events(state)
    fleet = RunFleet(state)
    fleet.create_many(names)
    overrides = {"apigee_calls_per_minute": calls_per_minute} if calls_per_minute else {}
    registrar = runtime.registrar(load_settings(**overrides))
    reset_stats(state)
    started = time.perf_counter()
    report = registrar.sweep(apply=True)
    elapsed = time.perf_counter() - started
    calls = CallCount.between(read_stats(state), per=len(names))
    registered = [r.outcome.result for r in report.reports].count("registered")
    if registered != len(names):
        raise BenchError(f"baseline sweep: {registered}/{len(names)} registered")
    limit = calls_per_minute or registrar.settings.apigee_calls_per_minute
    log(
        f"burst baseline: one in-process sweep registered {len(names)} services in {elapsed:.2f}s "
        f"(Apigee client limit {limit}/min)"
    )
    return {"wall": elapsed, "calls": calls}


def _apigee_calls(calls: CallCount) -> float:
    return sum(n for route, n in calls.by_route.items() if route.startswith("apigee: "))


# smoke size: the same code at sizes that finish in seconds (`python -m bench --smoke`, run by make test)
SMOKE: dict[str, Any] = {"SERVICES": 4}


def run(smoke: bool = False) -> dict[str, Any]:
    with sized(globals(), SMOKE if smoke else {}):
        return _measure()


def _measure() -> dict[str, Any]:
    names = [f"burst-{i:02d}" for i in range(SERVICES)]
    with local_stack("burst") as state:
        burst = _burst(state, names)
        inside = _registrations_in_function(state, names)
        push_concurrency = _emulator_push_concurrency(state)
        log(
            f"burst: {inside['most_registrations_at_once']} registrations at once at most, "
            f"{inside['registration_in_function_ms_median']:.0f} ms each (median); the emulator pushes "
            f"at most {push_concurrency} requests at once per subscription"
        )
    with local_stack("burst_baseline") as state:
        baseline = _sweep_baseline(state, names)
        unthrottled = _sweep_baseline(
            state, [f"burst-max-{i:02d}" for i in range(SERVICES)], MAX_CALLS_PER_MINUTE
        )
    latencies: list[float] = burst["latencies"]
    calls: CallCount = burst["calls"]
    return {
        "figures": [
            figure(
                f"burst of {SERVICES} services through Pub/Sub: first create -> last READY outcome",
                round(burst["wall"], 2),
                "s",
                baseline=round(baseline["wall"], 2),
                baseline_label=f"one in-process Registrar.sweep(apply=True) of the same {SERVICES} services",
                ratio=round(burst["wall"] / baseline["wall"], 2),
            ),
            figure(
                "  per-service latency (create returned -> outcome registered), p50",
                ms(percentile(latencies, 50)),
                "ms",
                samples_ms=sorted(ms(v) for v in latencies),
            ),
            figure(
                "  per-service latency (create returned -> outcome registered), p95",
                ms(percentile(latencies, 95)),
                "ms",
                median_ms=ms(median(latencies)),
            ),
            figure(
                "  management calls per service in the burst",
                calls.total,
                "calls",
                baseline=baseline["calls"].total,
                baseline_label="the in-process sweep, per service (its 2+2 listings included)",
                target=f"<= {TARGET_CALLS} (as calls_per_service)",
                passed=calls.total <= TARGET_CALLS,
                calls=calls.to_dict(),
                baseline_calls=baseline["calls"].to_dict(),
            ),
        ],
        "details": {
            "all_creates_returned_after_s": burst["creates_done_s"],
            "all_registered_seen_by_polling_after_s": burst["observed_by_polling_s"],
            "on_run_event_log": inside,
            "pubsub_emulator_max_pushes_in_flight_per_subscription": push_concurrency,
            "apigee_calls_per_second": {
                "burst": round(_apigee_calls(burst["calls"]) * SERVICES / burst["wall"], 1),
                "baseline_sweep": round(_apigee_calls(baseline["calls"]) * SERVICES / baseline["wall"], 1),
                "client_side_limit": 1200 / 60,
            },
            f"baseline_sweep_with_{MAX_CALLS_PER_MINUTE}_apigee_calls_per_minute_s": round(
                unthrottled["wall"], 2
            ),
        },
    }
