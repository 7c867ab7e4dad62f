"""Rotation of 200 targets (150 service-account keys on 150 accounts, 50 generated values) with 50 ms
injected latency on every API the job calls: the first run, when every target is due (each gets its
first credential: begin, create, mark pending, test, finish), and the second, when nothing is (age
gating makes it a read-only pass).

Setup (not measured). The rotation job needs neither Pub/Sub nor Firestore (its state lives on the
secrets), so this benchmark starts only the stand-ins it calls, Secret Manager, IAM, Org Policy and
Cloud Run (listed for the secrets' consumers), as processes of their own, fresh for each latency:
no state file (the stack's stand-ins rewrite their whole state file, RSA keys included, on every
change: the stand-in's cost, not the job's) and no notification topics on the secrets (nothing is
published to ``on_command``). Targets are declared as ``gatehouse.local.samples.seed_rotation_targets``
declares them: accounts created in IAM, secrets labelled ``gatehouse-rotate`` through the official
Secret Manager client. The job gets the ``GATEHOUSE_*`` settings ``settings_env`` gives the
``rotate-credentials`` job, minus the emulators it never calls.

What is measured. ``gatehouse.rotation.job.run`` in-process, with ``runtime.rotation_ports`` and
``RotationSettings.from_env`` as the ``rotate-credentials`` entry point builds them, as one task
(shard 0 of 1: ``deploy/terraform/jobs.tf`` deploys the job with ``task_count = 1``): wall time of
run 1 and run 2; HTTP calls per target by route from the stand-ins' counters, split Secret Manager /
IAM / other; and, from a timing wrapper around the ports and the run's ``progress`` callback, each
target's time and calls, how many calls were ever in flight at once (1: strictly sequential) and
how much of the wall time was spent waiting for a call.

Why those baselines. The same two runs on fresh stand-ins with 0 ms latency: the difference is what
the latency costs; what remains is CPU, mostly RSA (IAM's stand-in generates a 2048-bit key and its
certificate on each create; the job loads each new key file to sign its test probe; both measured
below, and a profile of a smaller run says where the rest goes). The computed lower bound, HTTP calls
x 50 ms, is what a job that makes its calls one after another must pay: wall(50 ms) ~ wall(0 ms) +
calls x (what 50 ms of injected latency adds to one raw call on this machine, measured alongside)
means it does. The job's only parallelism knob is the Cloud Run task count
(``CLOUD_RUN_TASK_COUNT``: each task rotates the targets whose sha256 falls in its shard); its effect
is measured on the no-op run with 4 tasks at once (threads, one set of ports each).
"""

from __future__ import annotations

import cProfile
import dataclasses
import gc
import os
import pstats
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests

from bench.harness import (
    RESULTS,
    BenchError,
    PortTimer,
    environment,
    figure,
    is_write,
    log,
    median,
    ms,
    reset_standin_calls,
    set_standin_latency,
    sized,
    standin_calls,
    time_limit,
)
from gatehouse.local.processes import Managed, free_port, start_python, stop
from gatehouse.local.stack import PROJECT, REGION, ROTATION_IDENTITY

SA_KEYS = 150
GENERATED = 50
TARGETS = SA_KEYS + GENERATED
LATENCY_MS = 50
TASKS = 4  # the knob's demonstration: CLOUD_RUN_TASK_COUNT=4 on the no-op run
RUN_LIMIT_S = 600.0  # one run; the first at 50 ms is expected to take ~5 minutes
JOB_TIMEOUT_S = 1800  # deploy/terraform/jobs.tf: rotate-credentials timeout
PROFILE_PROJECT = "gatehouse-profile"
PROFILE_TARGETS = (20, 10)  # sa-key, generated
STANDIN_NAMES = ("secretmanager", "iam", "orgpolicy", "cloudrun")
STACK_DIR = RESULTS / "stacks" / "rotation"


# -- setup ---------------------------------------------------------------------------------------


def _standins(stack: ExitStack, log_dir: Path, label: str) -> dict[str, str]:
    """The four stand-in processes (no state file), stopped when ``stack`` closes."""

    def start(name: str) -> Managed:
        port = free_port()
        return start_python(
            f"rotation-{label}-{name}-standin",
            ["-m", f"gatehouse.local.standins.{name}", "--port", str(port)],
            port=port,
            log_dir=log_dir,
            ready_path="/_standin/health",
        )

    urls: dict[str, str] = {}
    with ThreadPoolExecutor(len(STANDIN_NAMES)) as pool:
        futures = {name: pool.submit(start, name) for name in STANDIN_NAMES}
        failure: BaseException | None = None
        for name, future in futures.items():
            try:
                managed = future.result()
            except BaseException as exc:  # the others that did start are stopped by ``stack``
                failure = failure or exc
                continue
            stack.callback(stop, managed)
            urls[name] = managed.url
        if failure:
            raise failure
    return urls


def _env(urls: dict[str, str]) -> dict[str, str]:
    """What ``settings_env`` gives the ``rotate-credentials`` job, pointed at these stand-ins."""
    return {
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "GATEHOUSE_ANONYMOUS_CREDENTIALS": "true",
        "GATEHOUSE_SECRETMANAGER_ENDPOINT": urls["secretmanager"],
        "GATEHOUSE_IAM_ENDPOINT": urls["iam"],
        "GATEHOUSE_ORGPOLICY_ENDPOINT": urls["orgpolicy"],
        "GATEHOUSE_CLOUDRUN_ENDPOINT": urls["cloudrun"],
        "GATEHOUSE_PROJECTS": PROJECT,
        "GATEHOUSE_REGIONS": REGION,
        "GATEHOUSE_ROTATION_JOB_IDENTITY": ROTATION_IDENTITY,
    }


def _seed(urls: dict[str, str], project: str, sa_keys: int, generated: int) -> None:
    """Accounts in IAM and the secrets that declare the targets (as ``seed_rotation_targets``,
    without notification topics)."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    client = secretmanager.SecretManagerServiceClient(
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        transport="rest",
        client_options=ClientOptions(api_endpoint=urls["secretmanager"]),
    )
    session = requests.Session()

    def secret(secret_id: str, kind: str, annotations: dict[str, str]) -> None:
        client.create_secret(
            parent=f"projects/{project}",
            secret_id=secret_id,
            secret={  # type: ignore[arg-type]  # the client accepts the message as a dict
                "replication": {"automatic": {}},
                "labels": {"gatehouse-rotate": kind},
                "annotations": annotations,
            },
        )

    try:
        for i in range(sa_keys):
            account = f"rot-sa-{i:03d}"
            session.post(
                f"{urls['iam']}/v1/projects/{project}/serviceAccounts",
                json={"accountId": account},
                timeout=10,
            ).raise_for_status()
            email = f"{account}@{project}.iam.gserviceaccount.com"
            secret(f"rot-sa-key-{i:03d}", "sa-key", {"gatehouse-service-account": email})
        for i in range(generated):
            # half with the defaults (32 alnum), half as the sample webhook token (48 base64url)
            spec = {"gatehouse-length": "48", "gatehouse-alphabet": "base64url"} if i % 2 else {}
            secret(f"rot-gen-{i:03d}", "generated", spec)
    finally:
        session.close()
        client.transport.close()  # type: ignore[no-untyped-call]


def _ports(settings: Any, rotation: Any, timer: PortTimer) -> Any:
    from gatehouse import runtime

    ports = runtime.rotation_ports(settings, rotation)
    return dataclasses.replace(
        ports,
        secrets=timer.wrap("secrets", ports.secrets),
        keys=timer.wrap("keys", ports.keys),
        policies=timer.wrap("policies", ports.policies),
        consumers=timer.wrap("consumers", ports.consumers) if ports.consumers is not None else None,
    )


def _close(ports: Any) -> None:
    for port in (ports.secrets, ports.keys, ports.policies):
        close = getattr(getattr(port, "_adapter", port), "close", None)  # unwrapped: not a timed call
        if close is not None:
            close()


# -- one run ------------------------------------------------------------------------------------


def _run(urls: dict[str, str], expect: str, *, tasks: int = 1, limit: float = RUN_LIMIT_S) -> dict[str, Any]:
    """One job run (``tasks`` > 1: that many shards at once), timed; every target must end ``expect``."""
    from gatehouse.config import load_settings
    from gatehouse.rotation.job import run
    from gatehouse.rotation.settings import RotationSettings

    settings = load_settings()
    rotation = RotationSettings.from_env(os.environ)
    timer = PortTimer()
    task_settings = [dataclasses.replace(rotation, holder=f"bench-rotation/{i}") for i in range(tasks)]
    ports = [_ports(settings, s, timer) for s in task_settings]
    marks: list[tuple[float, str, str]] = []  # (time, kind, status) as each target finishes

    def progress(report: Any) -> None:
        marks.append((time.perf_counter(), report.kind, report.status))

    def one(index: int) -> Any:
        return run(
            ports[index],
            task_settings[index],
            shard=(index, tasks),
            progress=progress,
            workers=task_settings[index].workers,
        )

    reset_standin_calls(urls)
    gc.collect()
    try:
        with time_limit(limit, f"rotation run ({tasks} task(s))"):
            started = time.perf_counter()
            if tasks == 1:
                reports = [one(0)]
            else:
                with ThreadPoolExecutor(tasks) as pool:
                    reports = list(pool.map(one, range(tasks)))
            elapsed = time.perf_counter() - started
    finally:
        for p in ports:
            _close(p)
    calls = standin_calls(urls)
    statuses = Counter(t.status for r in reports for t in r.targets)
    if statuses != Counter({expect: TARGETS}):
        odd = [f"{t.secret}: {t.status} {t.reason}" for r in reports for t in r.targets if t.status != expect]
        raise BenchError(f"expected {TARGETS} {expect}, got {dict(statuses)}; e.g. {odd[:3]}")
    return {"seconds": elapsed, "calls": calls, "timer": timer, "marks": marks, "started": started}


def _http(calls: dict[str, Counter[str]]) -> dict[str, Any]:
    """HTTP calls from the stand-ins' counters: totals, per target, Secret Manager / IAM / other."""
    total = sum(sum(c.values()) for c in calls.values())
    sm, iam = sum(calls["secretmanager"].values()), sum(calls["iam"].values())
    writes = sum(n for c in calls.values() for route, n in c.items() if is_write(route))
    return {
        "total": total,
        "per_target": round(total / TARGETS, 2),
        "per_target_secret_manager": round(sm / TARGETS, 2),
        "per_target_iam": round(iam / TARGETS, 2),
        "per_target_other": round((total - sm - iam) / TARGETS, 2),
        "writes": writes,
        "by_route_per_target": {
            f"{name}: {route}": round(n / TARGETS, 3)
            for name in STANDIN_NAMES
            for route, n in sorted(calls[name].items())
        },
        "by_route_total": {
            f"{name}: {route}": n for name in STANDIN_NAMES for route, n in sorted(calls[name].items())
        },
    }


def _per_kind(measured: dict[str, Any]) -> dict[str, Any]:
    """Per target kind: median seconds and calls per target, from the progress marks (a target's
    interval runs from the previous target's end; the first one's from the end of the listing)."""
    timer: PortTimer = measured["timer"]
    listed = [c.end for c in timer.calls if c.method == "list_secrets"]
    start = max(listed) if listed else measured["started"]
    kinds: dict[str, dict[str, list[float]]] = {}
    for at, kind, _ in sorted(measured["marks"]):
        entry = kinds.setdefault(kind, {"seconds": [], "calls": []})
        entry["seconds"].append(at - start)
        # list_consumers is answered from the adapter's cache after the run's first scan: not a call
        calls = [c for c in timer.between(start, at) if c.method != "list_consumers"]
        entry["calls"].append(float(len(calls)))
        start = at
    return {
        kind: {
            "targets": len(v["seconds"]),
            "seconds_per_target_median_ms": ms(median(v["seconds"])),
            "calls_per_target_median": median(v["calls"]),
        }
        for kind, v in sorted(kinds.items())
    }


def _shape(measured: dict[str, Any]) -> dict[str, Any]:
    """Sequential or not: calls in flight at once, and the wall time spent waiting for calls."""
    timer: PortTimer = measured["timer"]
    busy = PortTimer.busy_seconds(timer.calls)
    return {
        "port_calls": len(timer.calls),
        "max_port_calls_in_flight": PortTimer.max_in_flight(timer.calls),
        "waiting_for_calls_s": round(busy, 2),
        "own_cpu_between_calls_s": round(measured["seconds"] - busy, 2),
        "port_time_by_method": PortTimer.summary(timer.calls),
    }


# -- what one call costs, and CPU the latency does not explain ------------------------------------


def _calibrate(urls: dict[str, str], latency: int, samples: int = 40) -> dict[str, float]:
    """Median ms of one raw GET of a secret (``requests``; the stand-ins close every connection, so
    each call connects anew, as the job's calls do) at 0 ms and at ``latency``: the latency a call
    really adds on this machine (sleep overshoot, wake-up), which the sequential model multiplies."""
    url = f"{urls['secretmanager']}/v1/projects/{PROJECT}/secrets/rot-gen-000"
    out = {}
    for injected in (0, latency):
        set_standin_latency({"secretmanager": urls["secretmanager"]}, injected)
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            requests.get(url, timeout=10).raise_for_status()
            times.append(time.perf_counter() - started)
        out[f"get_secret_at_{injected}ms_ms"] = ms(median(times))
    out["added_per_call_ms"] = round(out[f"get_secret_at_{latency}ms_ms"] - out["get_secret_at_0ms_ms"], 2)
    set_standin_latency(urls, latency)
    return out


def _key_test_cpu(urls: dict[str, str]) -> float:
    """Median ms the test step spends in the job's own CPU per sa-key (load the new key file in
    google-auth, sign a probe, verify with IAM's certificate), on key files the first run stored."""
    from gatehouse import runtime
    from gatehouse.config import load_settings
    from gatehouse.rotation.settings import RotationSettings
    from gatehouse.rotation.verify import check_key_file, key_id_of

    ports = runtime.rotation_ports(load_settings(), RotationSettings.from_env(os.environ))
    samples = []
    try:
        for i in range(min(10, SA_KEYS)):
            name = f"projects/{PROJECT}/secrets/rot-sa-key-{i:03d}"
            email = f"rot-sa-{i:03d}@{PROJECT}.iam.gserviceaccount.com"
            payload = ports.secrets.access_secret_version(name, "current").payload
            key_id = key_id_of(payload)
            public = ports.keys.get_public_key(email, key_id or "")
            started = time.perf_counter()
            check_key_file(payload, email=email, key_id=key_id, public_key_pem=public)
            samples.append(time.perf_counter() - started)
    finally:
        _close(ports)
    return ms(median(samples))


def _profile(urls: dict[str, str]) -> dict[str, Any]:
    """cProfile of a first run over a smaller set (20 sa-key, 10 generated) at 0 ms, in its own
    project on the same stand-ins: where the job's own time goes (tottime, top 12)."""
    from gatehouse.config import load_settings
    from gatehouse.rotation.job import run
    from gatehouse.rotation.settings import RotationSettings

    sa_keys, generated = PROFILE_TARGETS
    _seed(urls, PROFILE_PROJECT, sa_keys, generated)
    rotation = dataclasses.replace(RotationSettings.from_env(os.environ), projects=(PROFILE_PROJECT,))
    timer = PortTimer()
    ports = _ports(load_settings(), rotation, timer)
    profiler = cProfile.Profile()
    try:
        with time_limit(120, "profiled rotation run"):
            started = time.perf_counter()
            profiler.enable()
            report = run(ports, rotation)
            profiler.disable()
            elapsed = time.perf_counter() - started
    finally:
        profiler.disable()
        _close(ports)
    if report.counts() != {"rotated": sa_keys + generated}:
        raise BenchError(f"profiled run: {report.counts()}")
    stats = pstats.Stats(profiler)
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])  # type: ignore[attr-defined]
    top = {}
    for (path, line, func), (_, calls, tottime, _, _) in rows[:12]:
        short = "/".join(Path(path).parts[-2:]) if path != "~" else "builtin"
        top[f"{short}:{line}({func})"] = {"calls": calls, "tottime_s": round(tottime, 3)}
    waited = PortTimer.busy_seconds(timer.calls)
    return {
        "targets": f"{sa_keys} sa-key + {generated} generated, first run, 0 ms",
        "wall_s_under_profiler": round(elapsed, 2),
        "waiting_for_stand_ins_s": round(waited, 2),
        "top_tottime": top,
    }


# -- phases -----------------------------------------------------------------------------------------


def _phase(latency: int, *, knob: bool = False, extras: bool = False) -> dict[str, Any]:
    """Fresh stand-ins, 200 targets, latency on, run 1 (all due) and run 2 (nothing due)."""
    label = f"{latency}ms"
    out: dict[str, Any] = {}
    with ExitStack() as stack:
        urls = _standins(stack, STACK_DIR / "logs", label)
        with environment(_env(urls)):
            started = time.perf_counter()
            _seed(urls, PROJECT, SA_KEYS, GENERATED)
            log(f"rotation {label}: {TARGETS} targets declared in {time.perf_counter() - started:.1f}s")
            set_standin_latency(urls, latency)
            for name, expect in (("first", "rotated"), ("second", "unchanged")):
                measured = _run(urls, expect)
                out[name] = measured
                http = _http(measured["calls"])
                log(
                    f"rotation {label}: {name} run {measured['seconds']:.2f}s, {http['total']} HTTP calls "
                    f"({http['per_target']:g}/target), all {expect}"
                )
            if knob:
                measured = _run(urls, "unchanged", tasks=TASKS)
                out["second_tasks"] = measured
                log(f"rotation {label}: second run with {TASKS} tasks at once {measured['seconds']:.2f}s")
                out["calibration"] = _calibrate(urls, latency)
                log(f"rotation {label}: one call costs {out['calibration']['added_per_call_ms']:g} ms more")
            if extras:
                set_standin_latency(urls, 0)
                out["key_test_cpu_ms"] = _key_test_cpu(urls)
                out["profile"] = _profile(urls)
                log(f"rotation {label}: profiled a {sum(PROFILE_TARGETS)}-target first run")
    return out


def _run_figures(
    name: str, slow: dict[str, Any], fast: dict[str, Any], added_ms: float
) -> list[dict[str, Any]]:
    http, base = _http(slow["calls"]), _http(fast["calls"])
    lower = http["total"] * LATENCY_MS / 1000
    predicted = fast["seconds"] + http["total"] * added_ms / 1000
    shape = _shape(slow)
    what = "second run (nothing due)"
    if name == "first":
        what = f"first run (all {TARGETS} due: first credentials)"
    return [
        figure(
            f"rotation {what} at {LATENCY_MS} ms latency: wall time",
            round(slow["seconds"], 2),
            "s",
            baseline=round(fast["seconds"], 2),
            baseline_label="the same run on fresh stand-ins at 0 ms latency",
            lower_bound_s=round(lower, 2),
            lower_bound_is=f"{http['total']} HTTP calls one after another x {LATENCY_MS} ms (computed)",
            sequential_model_s=round(predicted, 2),
            sequential_model_is=f"0 ms wall time + HTTP calls x {added_ms:g} ms, the latency one raw call "
            "measurably adds here (computed; see details.latency_calibration)",
            model_error_pct=round(100 * (slow["seconds"] - predicted) / predicted, 1),
            per_target_ms=ms(slow["seconds"] / TARGETS),
            max_port_calls_in_flight=shape["max_port_calls_in_flight"],
        ),
        figure(
            f"  {what}: HTTP calls per target (Secret Manager + IAM + other)",
            http["per_target"],
            "calls",
            baseline=base["per_target"],
            baseline_label="the same run at 0 ms latency",
            secret_manager=http["per_target_secret_manager"],
            iam=http["per_target_iam"],
            other=http["per_target_other"],
            total_calls=http["total"],
            writes=http["writes"],
            by_route_per_target=http["by_route_per_target"],
        ),
    ]


# smoke size: the same code at sizes that finish in seconds (`python -m bench --smoke`, run by make test)
SMOKE: dict[str, Any] = {"SA_KEYS": 3, "GENERATED": 2, "TARGETS": 5, "PROFILE_TARGETS": (2, 1), "TASKS": 2}


def run(smoke: bool = False) -> dict[str, Any]:
    with sized(globals(), SMOKE if smoke else {}):
        return _measure()


def _measure() -> dict[str, Any]:
    for leftover in STACK_DIR.glob("logs/*.log"):  # logs of an earlier run; processes never outlive it
        leftover.unlink()
    STACK_DIR.mkdir(parents=True, exist_ok=True)
    load = {"before": [round(x, 2) for x in os.getloadavg()]}
    fast = _phase(0, extras=True)
    slow = _phase(LATENCY_MS, knob=True)
    load["after"] = [round(x, 2) for x in os.getloadavg()]

    second_http = _http(slow["second"]["calls"])
    tasks = slow["second_tasks"]
    first_seq = slow["first"]["seconds"]
    added = slow["calibration"]["added_per_call_ms"]
    figures = [
        *_run_figures("first", slow["first"], fast["first"], added),
        *_run_figures("second", slow["second"], fast["second"], added),
        figure(
            "  second run writes nothing (age gating)",
            second_http["writes"],
            "writes",
            target="0",
            passed=second_http["writes"] == 0 and _http(fast["second"]["calls"])["writes"] == 0,
        ),
        figure(
            f"second run (nothing due) at {LATENCY_MS} ms with {TASKS} tasks at once "
            f"(CLOUD_RUN_TASK_COUNT={TASKS}, each with its workers): wall time",
            round(tasks["seconds"], 2),
            "s",
            baseline=round(slow["second"]["seconds"], 2),
            baseline_label="the same run as 1 task (the deployed task_count = 1)",
            speedup=round(slow["second"]["seconds"] / tasks["seconds"], 2),
            max_port_calls_in_flight=PortTimer.max_in_flight(tasks["timer"].calls),
            http_calls=_http(tasks["calls"])["total"],
        ),
    ]
    per_target_s = first_seq / TARGETS
    return {
        "figures": figures,
        "details": {
            "targets": {"sa-key": SA_KEYS, "generated": GENERATED, "service_accounts": SA_KEYS},
            "parallelism": (
                "GATEHOUSE_ROTATION_WORKERS targets at once inside a task (default 4; each target's steps "
                "stay in order: read, plan, apply one step, re-read), times the Cloud Run task count "
                "(CLOUD_RUN_TASK_INDEX/COUNT -> shard.select)"
            ),
            "first_run_shape_at_50ms": _shape(slow["first"]),
            "first_run_shape_at_0ms": _shape(fast["first"]),
            "second_run_shape_at_50ms": {
                k: v for k, v in _shape(slow["second"]).items() if k != "port_time_by_method"
            },
            "per_kind_first_run_at_50ms": _per_kind(slow["first"]),
            "per_kind_first_run_at_0ms": _per_kind(fast["first"]),
            "per_kind_second_run_at_50ms": _per_kind(slow["second"]),
            "http_first_run_at_0ms_by_route_total": _http(fast["first"]["calls"])["by_route_total"],
            "http_second_run_at_50ms_by_route_total": second_http["by_route_total"],
            "cpu_per_sa_key_test_ms_median": fast["key_test_cpu_ms"],
            "cpu_per_sa_key_test_is": "verify.check_key_file on a stored key file: google-auth loads the "
            "PEM (cryptography checks the RSA key), signs a probe, verifies with IAM's certificate",
            "profile_at_0ms": fast["profile"],
            f"first_rotation_targets_per_{JOB_TIMEOUT_S}s_job_timeout_at_{LATENCY_MS}ms": int(
                JOB_TIMEOUT_S / per_target_s
            ),
            "latency_calibration": slow["calibration"],
            "load_average_1_5_15": load,
        },
    }
