"""Import cost of each runtime dependency, against a bare interpreter measured in the same run.

Each figure is the median wall time of ``python -c "import <module>"`` in a fresh interpreter
(5 runs, warm page cache), minus nothing: the baseline ``python -c "pass"`` is printed next to it, so
the reader sees both what the interpreter costs and what a dependency adds. Shared sub-dependencies
(protobuf, grpc, google.api_core) are paid once per process, so the figures do not add up; the last
rows measure what each entry point imports before it can serve its first request.

Run: ``python -m bench.imports`` (prints JSON, writes bench/results/imports.json), or as one of
``python -m bench``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODULES = {
    "functions-framework": "functions_framework",
    "google-auth (+requests transport)": "google.auth.transport.requests",
    "requests": "requests",
    "google-cloud-pubsub": "google.cloud.pubsub_v1",
    "google-cloud-firestore": "google.cloud.firestore",
    "google-cloud-secret-manager": "google.cloud.secretmanager",
    "google-cloud-run": "google.cloud.run_v2",
    "pydantic": "pydantic",
    "pydantic-settings": "pydantic_settings",
    "PyYAML": "yaml",
    "click": "click",
    "rich": "rich.console",
    "tenacity": "tenacity",
    "Jinja2 (inventory page)": "jinja2",
    "google-cloud-storage (reconcile job, publishing)": "google.cloud.storage",
    # imported by `gatehouse history` only: must not appear on any cold path below
    "google-cloud-logging (history CLI only)": "google.cloud.logging",
}
ENTRY_POINTS = {
    "functions/main.py (what a function imports before it listens)": "import functions.main",
    "first registration event (adapters and use case)": (
        "import functions.main, gatehouse.runtime, gatehouse.registration.service, "
        "gatehouse.adapters.cloudrun, gatehouse.adapters.firestore, gatehouse.adapters.apigee"
    ),
    "gatehouse CLI (--help path)": "import gatehouse.cli",
    "gatehouse history (the CLI path that reads Cloud Logging)": (
        "import gatehouse.cli, gatehouse.inventory.history, gatehouse.adapters.logreader"
    ),
}
# entry points that must never import google.cloud.logging (checked on every run)
COLD_PATHS = {
    "functions/main.py": "import functions.main",
    "registration event": ENTRY_POINTS["first registration event (adapters and use case)"],
    "reconcile job": "import gatehouse.entrypoints.reconcile, gatehouse.runtime",
    "gatehouse CLI": "import gatehouse.cli",
}
ROOT = Path(__file__).resolve().parents[1]


def _time(code: str, runs: int = 5) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True, timeout=120)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def run(smoke: bool = False) -> dict[str, object]:
    runs = 1 if smoke else 5  # smoke: every import still happens, once
    baseline = _time("pass", runs)
    figures = []
    for label, module in {**MODULES, **{k: None for k in ENTRY_POINTS}}.items():
        code = ENTRY_POINTS.get(label) or f"import {module}"
        if module is not None and label in MODULES:
            try:
                subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)
            except subprocess.CalledProcessError:
                figures.append({"import": label, "module": module, "ms": None, "note": "not installed"})
                continue
        total = _time(code, runs)
        figures.append(
            {
                "import": label,
                "module": module or code,
                "ms": round(total, 1),
                "added_ms": round(total - baseline, 1),
            }
        )
        print(f"{label:70s} {total:7.1f} ms (+{total - baseline:6.1f})", file=sys.stderr)
    leaks = []
    for label, code in COLD_PATHS.items():
        probe = f"{code}; import sys; print('google.cloud.logging' in sys.modules)"
        found = subprocess.run(
            [sys.executable, "-c", probe], check=True, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        if found.stdout.strip() == "True":
            leaks.append(label)
    print(f"google.cloud.logging on a cold path: {leaks or 'none'}", file=sys.stderr)
    return {
        "baseline": {"figure": "python -c pass", "ms": round(baseline, 1)},
        "figures": figures,
        "google_cloud_logging_on_cold_paths": leaks,
    }


if __name__ == "__main__":
    result = run()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "imports.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
