"""A no-op ``reconcile --all`` (plan) over 1,000 registered services with 50 ms injected latency on
both stand-ins (target <= 50 management calls and <= 5 s).

Setup (not measured). The Firestore emulator comes from a local stack; the Apigee and Cloud Run
stand-ins are this benchmark's own processes (same code and organization as the stack's, but no
audit publishing, so creating services triggers nothing, and no state file, which would be
rewritten whole on every change). 1,000 opted-in services are created through the official Cloud
Run client, then registered by one in-process ``Registrar.sweep(apply=True)`` without latency. To
keep that setup short, the stand-in reports deployments READY at once, the deploy watch polls every
10 ms and the client-side Apigee rate limit (1,200 calls/min: 6 Apigee calls per new service would
make it last 5 minutes) is lifted for the setup registrar only; none of this is what is measured.

What is measured. With ``{"latency_ms": 50}`` on both stand-ins: ``Registrar.sweep(apply=False)``
in-process (median of 5 after one discarded warm-up; stand-in counters reset before each), and
``gatehouse reconcile --all --plan`` as a subprocess, wall time including process start (median
of 3). Every service must plan ``unchanged``. Calls are listed by route.

The invoker drift check. The nightly job sweeps with ``apply=True``, which also reads every
registered service's IAM policy (one ``getIamPolicy`` each, ``workers`` = 4 at a time) to restore a
roles/run.invoker binding removed by hand. Measured at 50 ms: ``Registrar.sweep(apply=True)`` on
the same no-op fleet (every service must stay ``unchanged``: nothing is written but the outcome
records in Firestore), median of 3, next to the same sweep with ``check_invokers=False`` as its
baseline; the difference is what the check costs.

Why those baselines. The same sweeps at 0 ms latency separate what the latency costs from the
sweep's own CPU work (decoding 1,000 services, rendering and hashing 1,000 bundles), which the
phase timings break down, as a separate timing does the CLI's start (interpreter, imports,
clients). The naive alternative, one GET per service at 50 ms, is computed: 1,000 calls and 50 s
sequentially (the per-event path, 3 reads per service, would make 3,000).
"""

from __future__ import annotations

import gc
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests

from bench.harness import (
    REPO,
    BenchError,
    CallCount,
    RunFleet,
    environment,
    figure,
    local_stack,
    log,
    median,
    ms,
    read_stats,
    reset_stats,
    set_latency,
    sized,
)
from gatehouse.local.processes import Managed, free_port, start_python, stop
from gatehouse.local.stack import ENVIRONMENT, ORGANIZATION, settings_env

SERVICES = 1000
LATENCY_MS = 50
TARGET_CALLS = 50
TARGET_SECONDS = 5.0
REPEATS = 5
CLI_REPEATS = 3
CLI_TIMEOUT = 120.0
DRIFT_REPEATS = 3


def _standins(stack: ExitStack, log_dir: Path) -> dict[str, str]:
    """Apigee and Cloud Run stand-in processes (no audit topic, no state file, instant deploys)."""
    args = {
        "apigee": ["--org", ORGANIZATION, "--env", ENVIRONMENT, "--env", "prod", "--deploy-delay-ms", "0"],
        "cloudrun": [],
    }
    urls = {}
    for name, extra in args.items():
        port = free_port()
        managed: Managed = start_python(
            f"noop-sweep-{name}-standin",
            ["-m", f"gatehouse.local.standins.{name}", "--port", str(port), *extra],
            port=port,
            log_dir=log_dir,
            ready_path="/_standin/health",
        )
        stack.callback(stop, managed)
        urls[name] = managed.url
    return urls


def _register_all(fleet: RunFleet, names: list[str]) -> None:
    from gatehouse import runtime
    from gatehouse.adapters.http import RateLimiter
    from gatehouse.config import load_settings
    from gatehouse.profiles import load_profiles
    from gatehouse.registration.service import Registrar

    started = time.perf_counter()
    fleet.create_many(names, workers=8)
    log(f"noop_sweep: created {len(names)} services in {time.perf_counter() - started:.1f}s")
    started = time.perf_counter()
    settings = load_settings(deploy_poll_seconds=0.01)
    apigee = runtime.apigee(settings)
    apigee.http.limiter = RateLimiter(10**7)  # setup only: see the module docstring
    registrar = Registrar(
        settings,
        apigee,
        runtime.cloudrun(settings),
        runtime.coordinator(settings),
        load_profiles(settings.profiles_file),
    )
    report = registrar.sweep(apply=True, workers=8)
    results = statistics.multimode([r.outcome.result for r in report.reports])
    if len(report.reports) != len(names) or results != ["registered"] or report.failed:
        raise BenchError(f"setup sweep did not register every service: {len(report.failed)} failed")
    log(f"noop_sweep: registered {len(names)} services in {time.perf_counter() - started:.1f}s (setup)")


def _sweep(state: dict[str, Any]) -> tuple[float, CallCount]:
    """One timed in-process plan sweep with a fresh registrar (as a new job process would build)."""
    from gatehouse import runtime
    from gatehouse.config import load_settings

    registrar = runtime.registrar(load_settings())
    reset_stats(state)
    gc.collect()  # the setup's garbage is not this sweep's cost
    started = time.perf_counter()
    report = registrar.sweep(apply=False)
    elapsed = time.perf_counter() - started
    calls = CallCount.between(read_stats(state))
    unchanged = sum(r.outcome.result == "unchanged" for r in report.reports)
    if unchanged != SERVICES or len(report.reports) != SERVICES:
        raise BenchError(f"plan sweep: {unchanged}/{len(report.reports)} unchanged, expected {SERVICES}")
    return elapsed, calls


def _apply_sweep(state: dict[str, Any], *, check_invokers: bool) -> tuple[float, CallCount]:
    """One timed in-process APPLY sweep of the no-op fleet (the nightly job), with or without the
    invoker drift check."""
    from gatehouse import runtime
    from gatehouse.config import load_settings

    registrar = runtime.registrar(load_settings())
    reset_stats(state)
    gc.collect()
    started = time.perf_counter()
    report = registrar.sweep(apply=True, check_invokers=check_invokers)
    elapsed = time.perf_counter() - started
    calls = CallCount.between(read_stats(state))
    unchanged = sum(r.outcome.result == "unchanged" for r in report.reports)
    if unchanged != SERVICES or len(report.reports) != SERVICES:
        raise BenchError(f"apply sweep: {unchanged}/{len(report.reports)} unchanged, expected {SERVICES}")
    return elapsed, calls


def _cli_sweep(state: dict[str, Any]) -> tuple[float, CallCount]:
    """``gatehouse reconcile --all --plan`` in a new process: wall time including interpreter start."""
    reset_stats(state)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "gatehouse.cli", "reconcile", "--all", "--plan"],
        capture_output=True,
        text=True,
        check=False,
        timeout=CLI_TIMEOUT,
        cwd=REPO,
        env=None,  # os.environ points at this benchmark's stand-ins (see run)
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"gatehouse reconcile --all --plan exited {done.returncode}: {done.stderr[-500:]}")
    return elapsed, CallCount.between(read_stats(state))


def _cli_start() -> float:
    """What the CLI pays before sweeping: interpreter start, its imports, building the registrar."""
    script = (
        "import gatehouse.cli, gatehouse.cli_views\n"
        "from gatehouse import runtime\n"
        "from gatehouse.config import load_settings\n"
        "runtime.registrar(load_settings())\n"
    )
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", script], check=True, timeout=60, cwd=REPO)
        runs.append(time.perf_counter() - started)
    return ms(median(runs))


def _phases(state: dict[str, Any]) -> dict[str, float]:
    """Where the time of one sweep goes, step by step, with the same adapters (no latency)."""
    from gatehouse import runtime
    from gatehouse.config import load_settings
    from gatehouse.registration.plan import ServiceRef

    registrar = runtime.registrar(load_settings())
    project, region = state["project"], state["region"]
    services_url = f"{state['cloudrun']}/v2/projects/{project}/locations/{region}/services"
    docs: list[dict[str, Any]] = []

    def list_services() -> None:
        docs.extend(d for page in registrar.cloudrun.list_services(project, region) for d in page)

    def raw_pages() -> None:
        for token in ("", "NTAw"):  # the stand-in's page token for offset 500
            requests.get(services_url, params={"pageSize": 500, "pageToken": token}, timeout=30)

    def desired() -> None:
        for doc in docs:
            registrar.desired(ServiceRef(project, region, doc["name"].rsplit("/", 1)[-1]), doc)

    steps = {
        "list services (2 pages of 500: HTTP, JSON -> protobuf -> dict)": list_services,
        "  of which the stand-in answering (the same 2 GETs, raw)": raw_pages,
        "list proxies (1 call)": registrar.apigee.list_proxies,
        "list deployments (1 call)": registrar.apigee.list_org_deployments,
        "desired state: exposure contract + render and hash 1,000 bundles": desired,
    }
    out = {}
    for label, step in steps.items():
        started = time.perf_counter()
        step()
        out[label] = ms(time.perf_counter() - started)
    return out


# smoke size: the same code at sizes that finish in seconds (`python -m bench --smoke`, run by make test)
SMOKE: dict[str, Any] = {"SERVICES": 20, "REPEATS": 1, "CLI_REPEATS": 1, "DRIFT_REPEATS": 1}


def run(smoke: bool = False) -> dict[str, Any]:
    with sized(globals(), SMOKE if smoke else {}):
        return _measure()


def _measure() -> dict[str, Any]:
    with local_stack("noop_sweep") as stack_state, ExitStack() as cleanup:
        urls = _standins(cleanup, Path(stack_state["state_dir"]) / "logs")
        state = {**stack_state, **urls}
        with environment(settings_env(state)):
            fleet = RunFleet(state)
            _register_all(fleet, [f"sweep-{i:04d}" for i in range(SERVICES)])

            _sweep(state)  # warm-up, discarded: the first sweep after the setup runs ~50% slower
            measured: dict[int, dict[str, Any]] = {}
            for latency in (0, LATENCY_MS):
                set_latency(state, latency)
                runs = [_sweep(state) for _ in range(REPEATS)]
                cli_runs = [_cli_sweep(state) for _ in range(CLI_REPEATS)]
                measured[latency] = {
                    "seconds": [s for s, _ in runs],
                    "calls": runs[-1][1],
                    "cli_seconds": [s for s, _ in cli_runs],
                    "cli_calls": cli_runs[-1][1],
                }
                log(
                    f"noop_sweep at {latency} ms: in-process {', '.join(f'{s:.2f}' for s, _ in runs)} s, "
                    f"{runs[-1][1].total:g} calls; CLI {', '.join(f'{s:.2f}' for s, _ in cli_runs)} s, "
                    f"{cli_runs[-1][1].total:g} calls"
                )
            # still at LATENCY_MS: the nightly apply sweep with and without the invoker drift check
            drift: dict[bool, list[tuple[float, CallCount]]] = {True: [], False: []}
            for _ in range(DRIFT_REPEATS):
                for check in (False, True):
                    drift[check].append(_apply_sweep(state, check_invokers=check))
            for check, runs in drift.items():
                log(
                    f"noop_sweep apply at {LATENCY_MS} ms, invoker check {'on' if check else 'off'}: "
                    f"{', '.join(f'{s:.2f}' for s, _ in runs)} s, {runs[-1][1].total:g} calls"
                )
            set_latency(state, 0)
            phases = _phases(state)
            cli_start = _cli_start()

    slow, fast = measured[LATENCY_MS], measured[0]
    seconds, cli_seconds = median(slow["seconds"]), median(slow["cli_seconds"])
    calls: CallCount = slow["calls"]
    naive_seconds = SERVICES * LATENCY_MS / 1000
    checked, unchecked = drift[True], drift[False]
    check_calls, base_calls = checked[-1][1], unchecked[-1][1]
    check_seconds, base_seconds = median([s for s, _ in checked]), median([s for s, _ in unchecked])
    return {
        "figures": [
            figure(
                f"no-op sweep of {SERVICES} services at {LATENCY_MS} ms latency: management calls",
                calls.total,
                "calls",
                baseline=float(SERVICES),
                baseline_label=f"naive: 1 GET per service, computed (the event path: {3 * SERVICES})",
                target=f"<= {TARGET_CALLS}",
                passed=calls.total <= TARGET_CALLS,
                calls=calls.to_dict(),
            ),
            figure(
                f"no-op sweep of {SERVICES} services at {LATENCY_MS} ms latency: in-process "
                "Registrar.sweep(apply=False) wall time, median",
                round(seconds, 2),
                "s",
                baseline=round(median(fast["seconds"]), 2),
                baseline_label="the same sweep at 0 ms latency, median",
                target=f"<= {TARGET_SECONDS:g} s",
                passed=seconds <= TARGET_SECONDS,
                samples_s=[round(s, 2) for s in slow["seconds"]],
                baseline_samples_s=[round(s, 2) for s in fast["seconds"]],
                naive_s=naive_seconds,
                naive_is=f"{SERVICES} sequential GETs x {LATENCY_MS} ms (computed)",
            ),
            figure(
                f"`gatehouse reconcile --all --plan` over {SERVICES} services at {LATENCY_MS} ms latency, "
                "wall time including process start, median",
                round(cli_seconds, 2),
                "s",
                baseline=round(median(fast["cli_seconds"]), 2),
                baseline_label="the same command at 0 ms latency, median",
                target=f"<= {TARGET_SECONDS:g} s and <= {TARGET_CALLS} calls",
                passed=cli_seconds <= TARGET_SECONDS and slow["cli_calls"].total <= TARGET_CALLS,
                samples_s=[round(s, 2) for s in slow["cli_seconds"]],
                baseline_samples_s=[round(s, 2) for s in fast["cli_seconds"]],
                calls=slow["cli_calls"].to_dict(),
                naive_s=naive_seconds,
            ),
            figure(
                f"nightly (apply) no-op sweep of {SERVICES} services at {LATENCY_MS} ms latency with the "
                "invoker drift check: management calls",
                check_calls.total,
                "calls",
                baseline=base_calls.total,
                baseline_label="the same apply sweep without the check (check_invokers=False)",
                target=f"{SERVICES} getIamPolicy reads more than the baseline (1 per registered service)",
                passed=check_calls.total - base_calls.total == SERVICES,
                calls=check_calls.to_dict(),
                baseline_calls=base_calls.to_dict(),
            ),
            figure(
                f"nightly (apply) no-op sweep of {SERVICES} services at {LATENCY_MS} ms latency with the "
                "invoker drift check: in-process wall time, median",
                round(check_seconds, 2),
                "s",
                baseline=round(base_seconds, 2),
                baseline_label="the same apply sweep without the check, median",
                target=None,
                passed=None,
                samples_s=[round(s, 2) for s, _ in checked],
                baseline_samples_s=[round(s, 2) for s, _ in unchecked],
                computed_floor_s=SERVICES * LATENCY_MS / 1000 / 4,
                computed_floor_is=f"{SERVICES} reads x {LATENCY_MS} ms / 4 workers",
            ),
        ],
        "details": {
            "invoker_drift_check": {
                "what": f"nightly apply sweep of {SERVICES} unchanged services at {LATENCY_MS} ms latency",
                "calls_with_check": check_calls.to_dict(),
                "calls_without_check (baseline)": base_calls.to_dict(),
                "extra_calls": round(check_calls.total - base_calls.total, 2),
                "extra_calls_per_service": round((check_calls.total - base_calls.total) / SERVICES, 3),
                "seconds_with_check_median": round(check_seconds, 2),
                "seconds_without_check_median (baseline)": round(base_seconds, 2),
                "extra_seconds": round(check_seconds - base_seconds, 2),
                "samples_with_s": [round(s, 2) for s, _ in checked],
                "samples_without_s": [round(s, 2) for s, _ in unchecked],
            },
            "sweep_phases_at_0ms_ms": phases,
            "cli_interpreter_start_and_imports_ms_median": cli_start,
            "calls_at_0ms": fast["calls"].to_dict(),
        },
    }
