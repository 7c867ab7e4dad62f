"""What the inventory of 1,000 services costs: API calls and wall time at 50 ms injected latency,
next to the no-op sweep (``Registrar.sweep(apply=False)``) measured in the same run on the same
fleet, and the calls per minute it makes against the Apigee quota it reads
(``GATEHOUSE_APIGEE_CALLS_PER_MINUTE``, which the client's rate limiter enforces).

Setup (not measured) is noop_sweep's: own Apigee and Cloud Run stand-ins, the services created
through the official Cloud Run client and registered by one in-process sweep.

Measured, with ``{"latency_ms": 50}`` on both stand-ins, median of 3 after a discarded warm-up:
- the inventory as ``gatehouse inventory`` reads it (listings, plus one getIamPolicy per
  registered service, 8 at a time), built into the model;
- the same with ``--live-states`` (one getDeployments per deployment, rate-limited);
- the no-op sweep, the baseline.
Rotation targets and tickets are not part of this fleet (no secrets, no tracker): their reads are
one listing per project plus one per target, independent of the number of services.

``smoke=True`` (``python -m bench.inventory --smoke``): 50 services, one repeat, for `make test`.
"""

from __future__ import annotations

import gc
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import (
    CallCount,
    RunFleet,
    environment,
    figure,
    local_stack,
    log,
    median,
    read_stats,
    reset_stats,
    set_latency,
    sized,
)
from bench.noop_sweep import _register_all, _standins
from gatehouse.local.stack import settings_env

SERVICES = 1000
LATENCY_MS = 50
REPEATS = 3
SMOKE: dict[str, Any] = {"SERVICES": 50, "REPEATS": 1}


def _inventory(state: dict[str, Any], *, live_states: bool) -> tuple[float, CallCount, Any]:
    from gatehouse import runtime
    from gatehouse.config import load_settings
    from gatehouse.inventory.gather import InventoryPorts, Scope, gather
    from gatehouse.inventory.model import Context, build
    from gatehouse.profiles import load_profiles

    settings = load_settings()
    ports = InventoryPorts(
        runtime.apigee(settings), runtime.cloudrun(settings), runtime.coordinator(settings)
    )
    scope = Scope(
        tuple(settings.projects),
        tuple(settings.regions),
        settings.owner_id,
        settings.proxy_service_account,
        dict(settings.project_numbers),
    )
    context = Context(
        settings.apigee_org,
        settings.owner_id,
        settings.proxy_service_account,
        load_profiles(settings.profiles_file),
        tuple(settings.apigee_environments),
    )
    reset_stats(state)
    gc.collect()
    started = time.perf_counter()
    inventory = build(gather(ports, scope, now=datetime.now(UTC), live_states=live_states), context)
    elapsed = time.perf_counter() - started
    return elapsed, CallCount.between(read_stats(state)), inventory


def _sweep(state: dict[str, Any]) -> tuple[float, CallCount]:
    from gatehouse import runtime
    from gatehouse.config import load_settings

    registrar = runtime.registrar(load_settings())
    reset_stats(state)
    gc.collect()
    started = time.perf_counter()
    registrar.sweep(apply=False)
    return time.perf_counter() - started, CallCount.between(read_stats(state))


def run(smoke: bool = False) -> dict[str, Any]:
    with sized(globals(), SMOKE if smoke else {}):
        return _measure()


def _measure() -> dict[str, Any]:
    count, repeats = SERVICES, REPEATS
    with local_stack("inventory") as stack_state, ExitStack() as cleanup:
        urls = _standins(cleanup, Path(stack_state["state_dir"]) / "logs")
        state = {**stack_state, **urls}
        with environment(settings_env(state)):
            from gatehouse.config import load_settings

            quota = load_settings().apigee_calls_per_minute
            _register_all(RunFleet(state), [f"inv-{i:04d}" for i in range(count)])
            _inventory(state, live_states=False)  # warm-up, discarded
            set_latency(state, LATENCY_MS)
            plain = [_inventory(state, live_states=False) for _ in range(repeats)]
            live = [_inventory(state, live_states=True) for _ in range(repeats)]
            sweeps = [_sweep(state) for _ in range(repeats)]
            set_latency(state, 0)
    inventory = plain[-1][2]
    if len(inventory.services) != count or inventory.incomplete:
        raise RuntimeError(
            f"inventory saw {len(inventory.services)}/{count} services: {inventory.incomplete}"
        )
    out = []
    for label, runs in (("inventory", plain), ("inventory --live-states", live)):
        seconds = median([s for s, _, _ in runs])
        calls: CallCount = runs[-1][1]
        apigee_calls = sum(n for r, n in calls.by_route.items() if r.startswith("apigee: "))
        per_minute = apigee_calls / max(seconds, 1e-9) * 60
        log(f"inventory bench: {label} of {count} services: {seconds:.2f} s, {calls.total:g} calls")
        out.append(
            figure(
                f"{label} of {count} services at {LATENCY_MS} ms latency: wall time, median",
                round(seconds, 2),
                "s",
                baseline=round(median([s for s, _ in sweeps]), 2),
                baseline_label="no-op sweep (Registrar.sweep(apply=False)) of the same fleet, same latency",
                target=f"Apigee calls/min <= GATEHOUSE_APIGEE_CALLS_PER_MINUTE ({quota})",
                passed=apigee_calls <= 2 or per_minute <= quota,
                calls=calls.to_dict(),
                baseline_calls=sweeps[-1][1].to_dict(),
                apigee_calls_per_minute=round(per_minute),
                samples_s=[round(s, 2) for s, _, _ in runs],
            )
        )
        out.append(
            figure(
                f"{label} of {count} services: API calls",
                calls.total,
                "calls",
                baseline=sweeps[-1][1].total,
                baseline_label="no-op sweep of the same fleet",
                target="listings + 1 getIamPolicy per service (+ 1 getDeployments each with --live-states)",
                passed=None,
            )
        )
    return {"figures": out, "services": count}


if __name__ == "__main__":
    import json

    result = run(smoke="--smoke" in sys.argv[1:])
    print(json.dumps(result, indent=1))
