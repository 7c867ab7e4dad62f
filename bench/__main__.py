"""``python -m bench [NAME ...]``: run the benchmarks (all of them by default).

Prints one JSON object on stdout: per benchmark, its figures (each next to its baseline measured in
the same run, with the target and a pass/fail flag) and the details behind them. Progress goes to
stderr. The registration benchmarks that ran are written together to
``bench/results/registration.json``; each job benchmark to ``bench/results/<name>.json``.

Registration:

- ``cold_start``: cold start of ``on_run_event`` vs a bare functions-framework function.
- ``calls_per_service``: management calls per new and per unchanged service.
- ``noop_sweep``: a no-op ``reconcile --all`` over 1,000 services with 50 ms API latency.
- ``burst``: 50 services deployed at once through Pub/Sub, vs one in-process sweep.

Jobs:

- ``rotation``: 200 rotation targets, first run (all due) and second (none due), 50 ms latency on
  every API the job calls, vs the same at 0 ms (about 6 minutes: the job is sequential).
- ``tickets_storm``: 10,000 notifications for 20 proxies through Pub/Sub, tickets job with the
  hourly cap at 10 and at 20, vs publishing and draining the same messages without processing.
- ``inventory``: ``gatehouse inventory`` of 1,000 services at 50 ms latency (calls, wall time, Apigee
  calls per minute against the configured quota), vs the no-op sweep of the same fleet.

- ``rollout``: a fleet change over 1,000 proxies in waves at 50 ms, management calls and wall time
  without bake vs one sweep redeploying all at once, and the calls per minute under the quota.

Imports:

- ``imports``: the import cost of each runtime dependency and entry point vs a bare interpreter.

``--smoke`` runs every benchmark at a small size (each module's ``SMOKE`` sizes) to show that it
still runs end to end: `make test` does (tests/test_bench_smoke.py). Smoke timings are not
measurements (their targets are for the full sizes on a quiet machine), so a smoke run judges only
the figures that count things (calls, writes, tickets, messages), which hold at any size, and
fails on any error. Its results go to ``bench/results/smoke/``, never over the full-size results.

Every benchmark starts and stops its own processes, on 127.0.0.1 only, and is bounded by timeouts.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import signal
import sys
import time
import traceback
from typing import Any

from bench.harness import RESULTS, log, quiet_gatehouse_logs

REGISTRATION = ("cold_start", "calls_per_service", "noop_sweep", "burst")
JOBS = ("rotation", "tickets_storm", "inventory", "rollout")
OTHERS = ("imports",)
BENCHMARKS = REGISTRATION + JOBS + OTHERS


def _interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so that every ``finally`` stops its processes."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


TIMINGS = ("s", "ms")  # figure units a smoke run does not judge


def judged_failures(result: dict[str, Any]) -> list[str]:
    """The figures that failed their target (at smoke size: only those that count things)."""
    smoke = result.get("size") == "smoke"
    return [
        f"{name}: {f.get('figure')}"
        for name, bench in result["benchmarks"].items()
        for f in bench.get("figures", [])
        if f.get("pass") is False and not (smoke and f.get("unit") in TIMINGS)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"any of {', '.join(BENCHMARKS)} (default: all)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="small sizes: check that every benchmark still runs (make test)"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)
    _interrupt_on_sigterm()
    quiet_gatehouse_logs()

    started = time.perf_counter()
    result: dict[str, Any] = {
        "size": "smoke" if args.smoke else "full",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "benchmarks": {},
    }
    failed = False
    for name in names:
        log(f"== {name}")
        began = time.perf_counter()
        try:
            outcome = dict(importlib.import_module(f"bench.{name}").run(smoke=args.smoke))
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            outcome = {"error": f"{type(exc).__name__}: {exc}"}
            failed = True
        outcome["elapsed_s"] = round(time.perf_counter() - began, 1)
        result["benchmarks"][name] = outcome
        log(f"== {name} done in {outcome['elapsed_s']:.1f}s")
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    result["all_pass"] = not failed and not judged_failures(result)

    text = json.dumps(result, indent=2)
    results = RESULTS / "smoke" if args.smoke else RESULTS
    results.mkdir(parents=True, exist_ok=True)
    files = {"registration": [n for n in names if n in REGISTRATION]}
    files.update({n: [n] for n in names if n in JOBS + OTHERS})
    for stem, members in files.items():
        if not members:
            continue
        part = {k: v for k, v in result.items() if k not in ("benchmarks", "elapsed_s", "all_pass")}
        part["benchmarks"] = {n: result["benchmarks"][n] for n in members}
        part["elapsed_s"] = round(sum(b["elapsed_s"] for b in part["benchmarks"].values()), 1)
        part["all_pass"] = all("error" not in b for b in part["benchmarks"].values()) and not judged_failures(
            part
        )
        out = results / f"{stem}.json"
        out.write_text(json.dumps(part, indent=2) + "\n")
        log(f"wrote {out}")
    print(text)
    log(f"{result['elapsed_s']:.1f}s in all")
    for failure in judged_failures(result):
        log(f"FAILED {failure}")
    # a full run reports missed targets in its JSON; a smoke run is a check, and fails on them
    return 1 if failed or (args.smoke and not result["all_pass"]) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; the processes started so far have been stopped")
        sys.exit(130)
