"""Cold start of ``on_run_event``: process start -> first 2xx answer to a real Pub/Sub push request.

What is measured. ``python -m functions_framework --target on_run_event --source functions/main.py
--signature-type cloudevent`` is started with the local stack's settings (``settings_env``); the
clock runs from just before ``Popen`` until the first 2xx response to a push request. The request
is real: the Cloud Run stand-in published the audit entries of a service created through the
official client, and the Pub/Sub emulator pushed them to a recorder (the stack's audit
subscription is pointed at it), which kept the exact body, path and headers. Each "new" sample
replays the ``operation.last`` push of a service that exists in Cloud Run and has no proxy yet,
so the first request does the whole registration (invoker grant, import, label, change report,
deploy, watch to READY, outcome in Firestore). Each "unchanged" sample then starts a fresh process
and replays the same push: the service is registered, so the request reads and finds nothing to do.
Each "started" sample replays the service's ``operation.first`` push: the function decodes it and
acknowledges it without any API call (the completion entry does the work), so it shows what
gatehouse's own start-up and decoding add to the framework.
Each total is split into "process start -> listening" (a TCP connect succeeds: imports done,
gunicorn bound its socket) and "first request" (listening -> 2xx: worker start, the lazy imports
and clients of the first event, the calls themselves).

Why that baseline. A bare CloudEvent function (:mod:`bench.bare_function`) started the same way,
with the same interpreter, environment and request, is the floor no function can beat: Python,
functions-framework, Flask and gunicorn. The ratio median(ours)/median(bare) says what gatehouse
adds on top (target <= 2x). Samples alternate bare / new / unchanged so that drift in machine load
hits all three alike; one discarded warm-up round first warms the emulators' JVMs and the page cache.

The outcome every sample should produce (``registered``, then ``unchanged``) is checked in
Firestore after the clock stops. An import-time profile (``python -X importtime``, taken in a child
process) and the function's own log timestamps show where the time goes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from bench.harness import (
    REPO,
    BenchError,
    Outcomes,
    PushRecorder,
    PushRequest,
    RunFleet,
    detach_run_events,
    figure,
    local_stack,
    log,
    median,
    ms,
    sized,
    wait_until,
)
from gatehouse.local.processes import alive, free_port, spawn, stop
from gatehouse.local.stack import settings_env

ROUNDS = 7
WARMUP = "cold-warmup"  # the service of the discarded first round
TARGET_RATIO = 2.0
BARE = ("bare", REPO / "bench" / "bare_function.py")
OURS = ("on_run_event", REPO / "functions" / "main.py")
START_TIMEOUT = 30.0
REQUEST_TIMEOUT = 60.0
# what the function logs on its way through an event, in order (see shared/registration)
MILESTONES = (
    "invoker granted",
    "bundle imported",
    "deploy requested",
    "deployment ready",
    "service registered",
    "service unchanged",
)


@dataclass
class Sample:
    kind: str
    service: str
    listening: float  # process start -> a TCP connect succeeds
    total: float  # process start -> 2xx received
    milestones: dict[str, float]  # function log line -> seconds after process start

    @property
    def first_request(self) -> float:
        return self.total - self.listening

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "service": self.service,
            "total_ms": ms(self.total),
            "listening_ms": ms(self.listening),
            "first_request_ms": ms(self.first_request),
            "log_milestones_ms": {k: ms(v) for k, v in self.milestones.items()},
        }


def _wait_listening(pid: int, port: int, deadline: float) -> None:
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if not alive(pid):
                raise BenchError(f"function process {pid} exited before listening") from None
            if time.perf_counter() > deadline:
                raise BenchError(f"function process {pid} not listening after {START_TIMEOUT:.0f}s") from None
            time.sleep(0.002)


def _milestones(log_file: Path, started_wall: float) -> dict[str, float]:
    """Seconds from process start to the first log line of each milestone (JSON ``time`` field)."""
    found: dict[str, float] = {}
    for line in log_file.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        message = record.get("message")
        if message in MILESTONES and message not in found:
            at = datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00")).timestamp()
            found[message] = at - started_wall
    return found


def cold_start_once(
    kind: str, function: tuple[str, Path], push: PushRequest, *, env: dict[str, str], log_dir: Path
) -> Sample:
    """Start the function, wait until it listens, send ``push``; stop it whatever happens."""
    target, source = function
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "functions_framework",
        "--target",
        target,
        "--source",
        str(source),
        "--signature-type",
        "cloudevent",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    service = str(push.entry()["resource"]["labels"]["service_name"])
    name = f"{service}-{kind}"
    log_file = log_dir / f"{name}.log"
    log_file.unlink(missing_ok=True)
    headers = {k: v for k, v in push.headers.items() if k.lower() not in ("host", "content-length")}
    started_wall = time.time()
    started = time.perf_counter()
    managed = spawn(name, argv, port=port, log_dir=log_dir, env=env)
    try:
        _wait_listening(managed.pid, port, started + START_TIMEOUT)
        listening = time.perf_counter()
        response = requests.post(
            f"http://127.0.0.1:{port}{push.path}", data=push.body, headers=headers, timeout=REQUEST_TIMEOUT
        )
        done = time.perf_counter()
        if not 200 <= response.status_code < 300:
            raise BenchError(f"{name}: HTTP {response.status_code}: {response.text[:200]} (see {log_file})")
    finally:
        # the work is done once the answer is in; SIGKILL spares gunicorn's graceful wait for the
        # push connection (Pub/Sub keeps it alive), ~2 s per sample
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(managed.pid, signal.SIGKILL)
        stop(managed)
    return Sample(kind, service, listening - started, done - started, _milestones(log_file, started_wall))


def capture_pushes(
    state: dict[str, Any], names: list[str]
) -> tuple[dict[str, PushRequest], dict[str, PushRequest]]:
    """Create ``names`` in the Cloud Run stand-in; keep the ``operation.last`` and ``operation.first``
    push of each."""
    with PushRecorder() as recorder:
        detach_run_events(state, f"{recorder.url}/{state['topics']['run_events']}")
        RunFleet(state).create_many(names)

        def pushes_of(which: str) -> dict[str, PushRequest] | None:
            found = {}
            for push in list(recorder.received):
                entry = push.entry()
                if entry.get("operation", {}).get(which):
                    found[entry["resource"]["labels"]["service_name"]] = push
            return found if set(names) <= set(found) else None

        last = wait_until(lambda: pushes_of("last"), timeout=30, what="the audit entries' push requests")
        first = wait_until(lambda: pushes_of("first"), timeout=30, what="the operation.first pushes")
        detach_run_events(state)  # nothing else may reach the recorder (or the stack's function)
    return last, first


# one cold on_run_event, step by step: what the bare function imports too, what functions/main.py
# adds at start, and what the first event adds (lazy imports, then the clients runtime.registrar builds)
IMPORT_STEPS = (
    ("functions_framework + flask (the bare function pays this too)", "import functions_framework, flask"),
    ("functions/main.py on top (gatehouse.events, gatehouse.config: pydantic)", "import functions.main"),
    (
        "first event: gatehouse.runtime, registration, profiles",
        "import gatehouse.runtime, gatehouse.registration.service",
    ),
    ("first event: google.cloud.run_v2 + Cloud Run adapter", "import gatehouse.adapters.cloudrun"),
    ("first event: google.cloud.firestore (gRPC) + adapter", "import gatehouse.adapters.firestore"),
    ("first event: Apigee adapter (google.auth, requests)", "import gatehouse.adapters.apigee"),
    (
        "first event: runtime.registrar() (settings, profiles, 3 clients)",
        "gatehouse.entrypoints.functions._registrar()",
    ),
)


def import_profile() -> dict[str, float]:
    """Wall time of each of ``IMPORT_STEPS`` in a fresh interpreter, median of 3 runs."""
    script = "import json, time\nt = [time.perf_counter()]\n"
    script += "".join(f"{code}\nt.append(time.perf_counter())\n" for _, code in IMPORT_STEPS)
    script += "print(json.dumps([b - a for a, b in zip(t, t[1:])]))\n"
    runs = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True, cwd=REPO
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {label: ms(median([r[i] for r in runs])) for i, (label, _) in enumerate(IMPORT_STEPS)}


# smoke size: the same code at sizes that finish in seconds (`python -m bench --smoke`, run by make test)
SMOKE: dict[str, Any] = {"ROUNDS": 1}


def run(smoke: bool = False) -> dict[str, Any]:
    with sized(globals(), SMOKE if smoke else {}):
        return _measure()


def _measure() -> dict[str, Any]:
    with local_stack("cold_start") as state:
        names = [WARMUP, *(f"cold-{i:02d}" for i in range(ROUNDS))]
        log(f"cold_start: creating {len(names)} services and recording their audit pushes")
        pushes, started_pushes = capture_pushes(state, names)
        env = {**settings_env(state), "PYTHONUNBUFFERED": "1"}
        log_dir = Path(state["state_dir"]) / "logs"
        outcomes = Outcomes(state["project"])
        fleet_key = RunFleet(state).key
        samples: list[Sample] = []
        for name in names:
            push = pushes[name]
            for kind, function, expect in (
                ("bare", BARE, None),
                ("started", OURS, None),
                ("new", OURS, "registered"),
                ("unchanged", OURS, "unchanged"),
            ):
                request = started_pushes[name] if kind == "started" else push
                sample = cold_start_once(kind, function, request, env=env, log_dir=log_dir)
                if expect and outcomes.result(fleet_key(name)) != expect:
                    raise BenchError(
                        f"{kind} sample for {name}: outcome {outcomes.result(fleet_key(name))!r}, "
                        f"expected {expect!r}"
                    )
                log(
                    f"cold_start {name} {kind:9s}: {ms(sample.total):7.1f} ms "
                    f"(listening {ms(sample.listening):6.1f}, first request {ms(sample.first_request):6.1f})"
                    + ("  [warm-up, discarded]" if name == WARMUP else "")
                )
                samples.append(sample)
        log("cold_start: import profile (python -c, 3 runs)")
        profile = import_profile()

    measured = [s for s in samples if s.service != WARMUP]

    def of(kind: str, attr: str = "total") -> list[float]:
        return [getattr(s, attr) for s in measured if s.kind == kind]

    bare, new, unchanged = median(of("bare")), median(of("new")), median(of("unchanged"))
    started = median(of("started"))
    milestones = {
        k: ms(median([s.milestones[k] for s in measured if s.kind == "new" and k in s.milestones]))
        for k in next(s.milestones for s in measured if s.kind == "new")
    }
    return {
        "figures": [
            figure(
                "cold start, event answered without API calls (an operation.first entry), median",
                ms(started),
                "ms",
                baseline=ms(bare),
                baseline_label="bare functions-framework CloudEvent function, same request, median",
                target=f"<= {TARGET_RATIO:g}x baseline",
                passed=started / bare <= TARGET_RATIO,
                ratio=round(started / bare, 2),
                samples_ms=[ms(v) for v in of("started")],
            ),
            figure(
                "cold start, new service (process start -> first 2xx), median",
                ms(new),
                "ms",
                baseline=ms(bare),
                baseline_label="bare functions-framework CloudEvent function, same request, median",
                target=f"<= {TARGET_RATIO:g}x baseline",
                passed=new / bare <= TARGET_RATIO,
                ratio=round(new / bare, 2),
                samples_ms=[ms(v) for v in of("new")],
                baseline_samples_ms=[ms(v) for v in of("bare")],
            ),
            figure(
                "  of which process start -> listening (new), median",
                ms(median(of("new", "listening"))),
                "ms",
                baseline=ms(median(of("bare", "listening"))),
                baseline_label="bare: process start -> listening, median",
                samples_ms=[ms(v) for v in of("new", "listening")],
            ),
            figure(
                "  of which first request latency (new), median",
                ms(median(of("new", "first_request"))),
                "ms",
                baseline=ms(median(of("bare", "first_request"))),
                baseline_label="bare: first request latency, median",
                samples_ms=[ms(v) for v in of("new", "first_request")],
            ),
            figure(
                "cold start, unchanged service (process start -> first 2xx), median",
                ms(unchanged),
                "ms",
                baseline=ms(bare),
                baseline_label="bare functions-framework CloudEvent function, same request, median",
                target=f"<= {TARGET_RATIO:g}x baseline",
                passed=unchanged / bare <= TARGET_RATIO,
                ratio=round(unchanged / bare, 2),
                samples_ms=[ms(v) for v in of("unchanged")],
                listening_samples_ms=[ms(v) for v in of("unchanged", "listening")],
                first_request_samples_ms=[ms(v) for v in of("unchanged", "first_request")],
            ),
        ],
        "details": {
            "rounds": ROUNDS,
            "samples": [s.to_dict() for s in measured],
            "warmup_samples_discarded": [s.to_dict() for s in samples if s not in measured],
            "new_service_log_milestones_after_process_start_ms_median": milestones,
            "import_profile_ms_median": profile,
            "stand_in_deploy_delay_ms": 300,
            "deploy_poll_seconds": float(env["GATEHOUSE_DEPLOY_POLL_SECONDS"]),
        },
    }
