"""``python -m bench [NAME ...]``: run the registration benchmarks (all of them by default).

Prints one JSON object on stdout and writes it to ``bench/results/registration.json``: per
benchmark, its figures (each next to its baseline measured in the same run, with the target and a
pass/fail flag) and the details behind them. Progress goes to stderr.

- ``cold_start``: cold start of ``on_run_event`` vs a bare functions-framework function.
- ``calls_per_service``: management calls per new and per unchanged service.
- ``noop_sweep``: a no-op ``reconcile --all`` over 1,000 services with 50 ms API latency.
- ``burst``: 50 services deployed at once through Pub/Sub, vs one in-process sweep.

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

BENCHMARKS = ("cold_start", "calls_per_service", "noop_sweep", "burst")


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
    out = RESULTS / "registration.json"
    out.write_text(text + "\n")
    print(text)
    log(f"wrote {out} ({result['elapsed_s']:.1f}s in all)")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; the processes started so far have been stopped")
        sys.exit(130)
