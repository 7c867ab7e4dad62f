"""What every benchmark shares: progress lines, the local stack as a context manager, the
stand-ins' call counters, the Cloud Run client the benchmarks create services with, recorded
outcomes, and the shape of a reported figure.

Nothing here is measured itself; it is the hands and eyes of the benchmarks. Every process a
benchmark starts is started through a context manager here (or :func:`gatehouse.local.processes.spawn`
with a ``finally``), so it is stopped on success, failure and Ctrl-C alike.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import os
import shutil
import statistics
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests

T = TypeVar("T")

RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parents[1]  # the checkout: functions/main.py, bench/bare_function.py
_T0 = time.perf_counter()


class BenchError(RuntimeError):
    """A benchmark could not produce its figure (setup failed, a wait timed out)."""


def log(message: str) -> None:
    """One progress line on stderr (stdout carries only the JSON result)."""
    print(f"[bench {time.perf_counter() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def quiet_gatehouse_logs() -> None:
    """Route gatehouse's in-process logs to stderr at WARNING, as ``gatehouse reconcile`` does."""
    from gatehouse.logging import configure

    configure(level=logging.WARNING, stream=sys.stderr)


# -- statistics ----------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p95 of 50 samples is the 48th smallest)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return float(ordered[int(rank) - 1])


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def figure(
    name: str,
    value: float,
    unit: str,
    *,
    baseline: float | None = None,
    baseline_label: str = "",
    target: str | None = None,
    passed: bool | None = None,
    **details: Any,
) -> dict[str, Any]:
    """One reported figure next to its baseline, target and pass/fail flag (None: no target)."""
    out: dict[str, Any] = {"figure": name, "value": value, "unit": unit}
    if baseline is not None:
        out["baseline"] = baseline
        out["baseline_is"] = baseline_label
    out["target"] = target
    out["pass"] = passed
    out.update(details)
    return out


def wait_until(probe: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# -- processes and environment ------------------------------------------------------------------


@contextlib.contextmanager
def sized(namespace: dict[str, Any], sizes: dict[str, Any]) -> Iterator[None]:
    """A benchmark module's size constants replaced for the block: ``run(smoke=True)`` runs the same
    code at its SMOKE sizes (what `make test` runs, so that a refactor cannot break a benchmark
    silently); full sizes stay the module's constants."""
    unknown = sorted(set(sizes) - set(namespace))
    if unknown:
        raise BenchError(f"smoke sizes for constants the benchmark does not have: {', '.join(unknown)}")
    saved = {name: namespace[name] for name in sizes}
    namespace.update(sizes)
    try:
        yield
    finally:
        namespace.update(saved)


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` updated for the block (the Google clients read emulator hosts from it)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def local_stack(label: str, **up_options: Any) -> Iterator[dict[str, Any]]:
    """The real local stack (``gatehouse.local.stack.up``) in ``bench/results/<label>``, stopped on exit;
    ``os.environ`` points at it meanwhile. A stack left behind by a killed run is stopped first."""
    from gatehouse.local.stack import down, settings_env, up

    state_dir = RESULTS / "stacks" / label
    down(state_dir)
    shutil.rmtree(state_dir, ignore_errors=True)
    started = time.perf_counter()
    state = up(state_dir, log=lambda m: log(f"  {label} stack: {m}"), **up_options)
    log(f"{label} stack up in {time.perf_counter() - started:.1f}s ({state_dir})")
    try:
        with environment(settings_env(state)):
            yield state
    finally:
        stopped = down(state_dir)
        log(f"{label} stack down ({len(stopped)} processes stopped)")


def detach_run_events(state: dict[str, Any], push_endpoint: str = "") -> None:
    """Point the stack's audit-entry subscription elsewhere ("" makes it a pull subscription nobody
    pulls), so that services can be created without ``on_run_event`` registering them."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    try:
        subscriber.modify_push_config(
            request={
                "subscription": state["subscriptions"]["run_events"],
                "push_config": {"push_endpoint": push_endpoint} if push_endpoint else {},
            }
        )
    finally:
        subscriber.close()


# -- the stand-ins' call counters ----------------------------------------------------------------


STANDINS = ("apigee", "cloudrun", "iam")  # iam: ID tokens minted to read services' OpenAPI specs
# POST methods that only read (a dry run and a permission check); everything else non-GET writes
READ_ONLY_POSTS = ("generateDeployChangeReport", "testIamPermissions", "generateIdToken")


def reset_stats(state: dict[str, Any]) -> None:
    for name in STANDINS:
        requests.post(f"{state[name]}/_standin/stats/reset", timeout=10).raise_for_status()


def read_stats(state: dict[str, Any]) -> dict[str, Counter[str]]:
    """Calls per route (``"GET /v1/organizations/{organizationsId}/apis/{apisId}"``) per stand-in."""
    out = {}
    for name in STANDINS:
        r = requests.get(f"{state[name]}/_standin/stats", timeout=10)
        r.raise_for_status()
        out[name] = Counter(r.json()["calls"])
    return out


def set_latency(state: dict[str, Any], latency_ms: int) -> None:
    for name in STANDINS:
        if latency_ms:
            r = requests.post(f"{state[name]}/_standin/faults", json={"latency_ms": latency_ms}, timeout=10)
        else:
            r = requests.delete(f"{state[name]}/_standin/faults", timeout=10)
        r.raise_for_status()


def is_write(route: str) -> bool:
    verb, _, path = route.partition(" ")
    return verb != "GET" and not path.endswith(READ_ONLY_POSTS)


@dataclass
class CallCount:
    """Management calls by route, split into reads and writes."""

    by_route: dict[str, float] = field(default_factory=dict)

    @classmethod
    def between(
        cls, stats: dict[str, Counter[str]], own: Counter[str] | None = None, per: int = 1
    ) -> CallCount:
        """The calls in ``stats`` (both stand-ins) minus ``own`` (the benchmark's), divided by ``per``."""
        total: Counter[str] = Counter()
        for name in STANDINS:
            total.update({f"{name}: {route}": n for route, n in stats[name].items()})
        total.subtract({f"cloudrun: {route}": n for route, n in (own or Counter()).items()})
        return cls({k: round(v / per, 2) for k, v in sorted(total.items()) if v})

    @property
    def total(self) -> float:
        return round(float(sum(self.by_route.values())), 2)

    @property
    def writes(self) -> float:
        return round(float(sum(n for r, n in self.by_route.items() if is_write(r.split(": ", 1)[1]))), 2)

    @property
    def reads(self) -> float:
        return round(self.total - self.writes, 2)

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "reads": self.reads, "writes": self.writes, "by_route": self.by_route}


# -- Cloud Run: the developer side --------------------------------------------------------------


class RunFleet:
    """Creates and updates services through the official Cloud Run client (REST), as a developer's
    ``gcloud run deploy`` would, and counts its own calls so they can be subtracted from the
    stand-in's counters."""

    def __init__(self, state: dict[str, Any]) -> None:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import run_v2

        from gatehouse.local.standins.discovery import Discovery

        self.project, self.region = state["project"], state["region"]
        self.parent = f"projects/{self.project}/locations/{self.region}"
        self.client = run_v2.ServicesClient(
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            transport="rest",
            client_options=ClientOptions(api_endpoint=state["cloudrun"]),
        )
        self._discovery = Discovery("run.v2")
        self._lock = threading.Lock()
        self.own_calls: Counter[str] = Counter()
        session = self.client._transport._session  # type: ignore[attr-defined]  # the REST transport's
        session.hooks["response"].append(self._count)

    def _count(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        request = response.request
        path = urllib.parse.urlsplit(str(request.url)).path
        found = self._discovery.match(str(request.method), path)
        route = f"{request.method} {found[0].route}" if found else f"{request.method} (no route)"
        with self._lock:
            self.own_calls[route] += 1

    def key(self, name: str) -> str:
        return f"{self.parent}/services/{name}"

    def create(
        self,
        name: str,
        *,
        image: str = "img:1",
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> None:
        from google.cloud import run_v2

        service = run_v2.Service(
            labels=labels if labels is not None else {"apigee-expose": "true"},
            annotations=annotations or {},
            template=run_v2.RevisionTemplate(
                containers=[run_v2.Container(image=f"europe-docker.pkg.dev/{self.project}/apps/{image}")]
            ),
        )
        operation = self.client.create_service(parent=self.parent, service=service, service_id=name)
        operation.result()  # type: ignore[no-untyped-call]

    def relabel(self, name: str, labels: dict[str, str]) -> None:
        """Change the service's labels only: Cloud Run keeps its ready revision."""
        service = self.client.get_service(name=self.key(name))
        service.labels = labels
        self.client.update_service(service=service).result()  # type: ignore[no-untyped-call]

    def create_many(self, names: list[str], *, workers: int = 8) -> None:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(self.create, names))

    def redeploy(self, name: str, image: str, annotations: dict[str, str] | None = None) -> None:
        """A new revision with a new image: the most common event, and one the proxy ignores."""
        from google.cloud import run_v2

        service = run_v2.Service(
            name=self.key(name),
            labels={"apigee-expose": "true"},
            annotations=annotations or {},
            template=run_v2.RevisionTemplate(
                containers=[run_v2.Container(image=f"europe-docker.pkg.dev/{self.project}/apps/{image}")]
            ),
        )
        operation = self.client.update_service(service=service)
        operation.result()  # type: ignore[no-untyped-call]


# -- outcomes ------------------------------------------------------------------------------------


class Outcomes:
    """The outcomes ``Registrar`` records in Firestore, with the emulator's commit timestamps."""

    def __init__(self, project: str) -> None:
        from gatehouse.adapters.firestore import FirestoreCoordinator

        self.collection = FirestoreCoordinator(project).outcomes_ref

    def read(self, key_prefix: str = "") -> dict[str, tuple[str, float]]:
        """key -> (result, commit time as a Unix timestamp) for keys starting with ``key_prefix``."""
        out = {}
        for snapshot in self.collection.stream():
            data = snapshot.to_dict() or {}
            key = str(data.get("key", ""))
            if key.startswith(key_prefix):
                out[key] = (str(data.get("result")), snapshot.update_time.timestamp())
        return out

    def result(self, key: str) -> str | None:
        from gatehouse.adapters.firestore import _doc_id

        snapshot = self.collection.document(_doc_id(key)).get()
        return str((snapshot.to_dict() or {}).get("result")) if snapshot.exists else None

    def wait(self, key: str, result: str, *, timeout: float) -> None:
        """Until the outcome recorded for ``key`` is ``result``."""
        wait_until(lambda: self.result(key) == result, timeout=timeout, what=f"{key} -> {result}")


# -- Pub/Sub push requests as the emulator sends them ----------------------------------------------


@dataclass(frozen=True)
class PushRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    def entry(self) -> dict[str, Any]:
        """The audit LogEntry the push carries."""
        import base64

        return dict(json.loads(base64.b64decode(json.loads(self.body)["message"]["data"])))


class PushRecorder:
    """An HTTP endpoint on 127.0.0.1 that acknowledges and keeps every push request it receives,
    after ``delay`` seconds, and notes how many requests it held at once."""

    def __init__(self, delay: float = 0.0) -> None:
        self.received: list[PushRequest] = []
        self.in_flight = self.max_in_flight = 0
        lock = threading.Lock()
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    recorder.in_flight += 1
                    recorder.max_in_flight = max(recorder.max_in_flight, recorder.in_flight)
                time.sleep(delay)
                with lock:
                    recorder.in_flight -= 1
                    recorder.received.append(PushRequest(self.path, dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> PushRecorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- any stand-in's hooks, by URL (the rotation and tickets benchmarks use more than two) ---------


def standin_calls(urls: dict[str, str]) -> dict[str, Counter[str]]:
    """Calls per route per stand-in (``{"iam": {"GET /v1/...": 3}}``); the GitHub stand-in too."""
    out = {}
    for name, url in urls.items():
        r = requests.get(f"{url}/_standin/stats", timeout=10)
        r.raise_for_status()
        out[name] = Counter(r.json()["calls"])
    return out


def reset_standin_calls(urls: dict[str, str]) -> None:
    for url in urls.values():
        requests.post(f"{url}/_standin/stats/reset", timeout=10).raise_for_status()


def set_standin_latency(urls: dict[str, str], latency_ms: int) -> None:
    """``{"latency_ms": n}`` on every route of every stand-in in ``urls`` (0 clears the faults)."""
    for url in urls.values():
        if latency_ms:
            r = requests.post(f"{url}/_standin/faults", json={"latency_ms": latency_ms}, timeout=10)
        else:
            r = requests.delete(f"{url}/_standin/faults", timeout=10)
        r.raise_for_status()


@contextlib.contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Bound an in-process block: after ``seconds`` the main thread gets a KeyboardInterrupt
    (``_thread.interrupt_main``), turned into a :class:`BenchError` here, so the caller's
    ``finally`` blocks still stop its processes. Use from the main thread only."""
    import _thread

    fired = threading.Event()

    def fire() -> None:
        fired.set()
        _thread.interrupt_main()

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    except KeyboardInterrupt:
        if fired.is_set():
            raise BenchError(f"{what} did not finish within {seconds:.0f}s") from None
        raise
    finally:
        timer.cancel()


# -- timing the calls a use case makes through its ports ----------------------------------------


@dataclass(frozen=True)
class PortCall:
    port: str
    method: str
    start: float  # time.perf_counter()
    end: float


class PortTimer:
    """Wraps port objects (adapters) so that every method call is recorded with its start and end.

    The wrapper is transparent: attributes pass through, methods are timed. A method that returns a
    lazy iterator (a paged listing) is drained inside the timed call and handed back as an iterator
    over the list: the pages are then fetched before the caller's loop rather than during it, which
    is the same calls in the same order. Nothing here changes what the use case decides."""

    def __init__(self) -> None:
        self.calls: list[PortCall] = []
        self._lock = threading.Lock()

    def wrap(self, port: str, adapter: Any) -> Any:
        return _TimedPort(port, adapter, self)

    def record(self, call: PortCall) -> None:
        with self._lock:
            self.calls.append(call)

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()

    def between(self, start: float, end: float) -> list[PortCall]:
        """The calls that started in [start, end)."""
        return [c for c in self.calls if start <= c.start < end]

    @staticmethod
    def summary(calls: list[PortCall]) -> dict[str, dict[str, float]]:
        """``{"secrets.get_secret": {"calls": n, "seconds": s}}``, most time first."""
        out: dict[str, dict[str, float]] = {}
        for c in calls:
            entry = out.setdefault(f"{c.port}.{c.method}", {"calls": 0, "seconds": 0.0})
            entry["calls"] += 1
            entry["seconds"] += c.end - c.start
        return {
            k: {"calls": v["calls"], "seconds": round(v["seconds"], 3)}
            for k, v in sorted(out.items(), key=lambda kv: -kv[1]["seconds"])
        }

    @staticmethod
    def max_in_flight(calls: list[PortCall]) -> int:
        """The most calls that overlapped in time (1: strictly one after another)."""
        edges = sorted([(c.start, 1) for c in calls] + [(c.end, -1) for c in calls])
        now = most = 0
        for _, step in edges:
            now += step
            most = max(most, now)
        return most

    @staticmethod
    def busy_seconds(calls: list[PortCall]) -> float:
        """Wall time during which at least one call was in flight (the union of the intervals)."""
        total, until = 0.0, float("-inf")
        for c in sorted(calls, key=lambda c: c.start):
            if c.end > until:
                total += c.end - max(c.start, until)
                until = c.end
        return total


class _TimedPort:
    def __init__(self, port: str, adapter: Any, timer: PortTimer) -> None:
        self._port, self._adapter, self._timer = port, adapter, timer

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._adapter, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                result = attr(*args, **kwargs)
                if isinstance(result, Iterator):
                    result = iter(list(result))
                return result
            finally:
                self._timer.record(PortCall(self._port, name, start, time.perf_counter()))

        return timed
