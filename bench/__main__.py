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
- ``rollout``: a fleet change over 1,000 proxies in waves at 50 ms, management calls and wall time
  without bake vs one sweep redeploying all at once, and the calls per minute under the quota.

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
JOBS = ("rotation", "tickets_storm", "rollout")
BENCHMARKS = REGISTRATION + JOBS


def _interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so that every ``finally`` stops its processes."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"any of {', '.join(BENCHMARKS)} (default: all)"
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
            outcome = importlib.import_module(f"bench.{name}").run()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            outcome = {"error": f"{type(exc).__name__}: {exc}"}
            failed = True
        outcome["elapsed_s"] = round(time.perf_counter() - began, 1)
        result["benchmarks"][name] = outcome
        log(f"== {name} done in {outcome['elapsed_s']:.1f}s")
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    result["all_pass"] = not failed and all(
        f["pass"] is not False for b in result["benchmarks"].values() for f in b.get("figures", [])
    )

    text = json.dumps(result, indent=2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    files = {"registration": [n for n in names if n in REGISTRATION]}
    files.update({n: [n] for n in names if n in JOBS})
    for stem, members in files.items():
        if not members:
            continue
        part = {k: v for k, v in result.items() if k not in ("benchmarks", "elapsed_s", "all_pass")}
        part["benchmarks"] = {n: result["benchmarks"][n] for n in members}
        part["elapsed_s"] = round(sum(b["elapsed_s"] for b in part["benchmarks"].values()), 1)
        part["all_pass"] = all(
            "error" not in b and all(f["pass"] is not False for f in b.get("figures", []))
            for b in part["benchmarks"].values()
        )
        out = RESULTS / f"{stem}.json"
        out.write_text(json.dumps(part, indent=2) + "\n")
        log(f"wrote {out}")
    print(text)
    log(f"{result['elapsed_s']:.1f}s in all")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; the processes started so far have been stopped")
        sys.exit(130)
