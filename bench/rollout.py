"""A fleet change rolled out over N proxies (1,000; smoke 24) with 50 ms on every Apigee call.

What is measured. The profiles file renames the API-key header; ``RolloutEngine`` takes the fleet
through the default waves (``1,10%,50%,100%``) with the bake skipped by advancing its clock (bake
time is waiting, not work: it is reported apart, as the configured 15 minutes per wave). Counted:
Apigee management calls (each pays 50 ms), grouped stats calls (the analytics API's own, smaller
quota), Firestore-like store writes, wall time without bake.

Baseline, in the same run: what happened before rollouts existed, one ``Registrar.sweep`` with the
new profiles redeploying every proxy at once (4 workers), on an identical fresh fleet.

Quota. Apigee allows about 6,000 management calls a minute per organization: the figure is the
rollout's calls per minute of wall time (a lower bound of its peak rate), which must stay under it.

The fleet lives in registration's in-memory fakes (tests/registration_fakes.py: one revision per
environment, deploy not idempotent), so the figures count calls and latency, not a real Apigee's
deploy time.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness import figure

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

LATENCY = 0.05
QUOTA_PER_MINUTE = 6000


class Slow:
    """Every Apigee call waits ``LATENCY`` first, as a call over the network would."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0
        # the fake is not thread-safe and the baseline sweep runs 4 workers: the waits overlap,
        # the calls themselves take turns
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            time.sleep(LATENCY)
            with self.lock:
                self.calls += 1
                return attr(*args, **kwargs)

        return call


def _fleet(n: int) -> Any:
    from registration_fakes import FakeApigee, FakeCloudRun, FakeCoordinator, v2_service

    from gatehouse.config import Settings
    from gatehouse.registration.plan import ServiceRef

    services = {
        ServiceRef("proj-one", "europe-west1", f"svc{i:04d}"): v2_service(
            "proj-one", "europe-west1", f"svc{i:04d}"
        )
        for i in range(n)
    }
    settings = Settings(
        proxy_service_account="apigee@proj-one.iam.gserviceaccount.com",
        projects=["proj-one"],
        regions=["europe-west1"],
        apigee_environments=["prod"],
        deploy_poll_seconds=0.01,
        owner_id="gatehouse",  # as bundle_settings("gatehouse") below
    )
    return (
        FakeApigee(),
        FakeCloudRun({r.key: d for r, d in services.items()}),
        FakeCoordinator(),
        settings,
        services,
    )


def _registrar(settings: Any, apigee: Any, cloudrun: Any, coordinator: Any, config: Any) -> Any:
    from gatehouse.registration.service import Registrar

    return Registrar(settings, apigee, cloudrun, coordinator, config.profiles(), sleep=lambda s: None)


def run(smoke: bool = False, size: int | None = None) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_rollout_engine import Stats, Store  # the same stats and store doubles as the tests
    from tickets_fakes import FakeTracker

    from gatehouse.bundle import RENDER_VERSION
    from gatehouse.rollouts.deployer import RegistrarDeployer, TrackerTickets, changed_members
    from gatehouse.rollouts.engine import RolloutEngine, RolloutSettings
    from gatehouse.rollouts.fleet import FleetConfig, bundle_settings
    from gatehouse.rollouts.waves import parse_waves

    n = size or (24 if smoke else 1000)
    text = (Path(__file__).resolve().parents[1] / "shared/gatehouse/profiles.yaml").read_text("utf-8")
    old = FleetConfig(text, RENDER_VERSION, bundle_settings("gatehouse"))
    new = FleetConfig(
        text.replace("header: x-api-key", "header: x-caller-key", 1), RENDER_VERSION, old.settings
    )

    # baseline: one sweep with the new file redeploys everything at once
    apigee, cloudrun, coord, settings, _ = _fleet(n)
    _registrar(settings, apigee, cloudrun, coord, old).sweep(apply=True, workers=1)
    slow = Slow(apigee)
    began = time.perf_counter()
    _registrar(settings, slow, cloudrun, coord, new).sweep(apply=True)
    sweep_s, sweep_calls = time.perf_counter() - began, slow.calls

    # the rollout, on an identical fresh fleet
    apigee, cloudrun, coord, settings, services = _fleet(n)
    _registrar(settings, apigee, cloudrun, coord, old).sweep(apply=True, workers=1)
    slow = Slow(apigee)
    clock = [10_000.0]
    stats = Stats(clock)
    store = Store()
    bake = 900.0
    engine = RolloutEngine(
        store,
        coord,
        RegistrarDeployer(
            slow, lambda c: _registrar(settings, slow, cloudrun, coord, c), settings.proxy_service_account
        ),
        stats,
        TrackerTickets(FakeTracker()),
        settings=RolloutSettings(
            waves=parse_waves("1,10%,50%,100%"), bake_seconds=bake, analytics_delay_seconds=600
        ),
        clock=lambda: clock[0],
    )
    began = time.perf_counter()
    engine.running(old)
    members = changed_members(
        services,
        _registrar(settings, apigee, cloudrun, coord, old),
        _registrar(settings, apigee, cloudrun, coord, new),
    )
    rollout = engine.start(new, members)
    ticks = 0
    while rollout is not None and rollout.state == "running" and ticks < 100:
        rollout = engine.tick()
        clock[0] += bake + 60  # the bake passes without being waited for
        ticks += 1
    rollout_s = time.perf_counter() - began
    assert rollout is not None and rollout.state == "completed", rollout and rollout.state
    waves = rollout.wave_count
    per_minute = slow.calls / (rollout_s / 60)
    return {
        "figures": [
            figure(
                "management calls per proxy",
                round(slow.calls / n, 2),
                "calls",
                baseline=round(sweep_calls / n, 2),
                baseline_label="one Registrar.sweep redeploying every proxy at once, same fleet",
                target="no more than 1.5x the all-at-once sweep",
                passed=slow.calls <= 1.5 * sweep_calls,
                ratio=round(slow.calls / max(1, sweep_calls), 2),
            ),
            figure(
                "wall time without bake",
                round(rollout_s, 1),
                "s",
                baseline=round(sweep_s, 1),
                baseline_label="the same sweep's wall time",
                target="reported (deploys are sequential within a wave)",
                ratio=round(rollout_s / max(sweep_s, 1e-9), 2),
            ),
            figure(
                "management calls per minute of wall time",
                round(per_minute),
                "calls/min",
                baseline=QUOTA_PER_MINUTE,
                baseline_label="the organization's management quota",
                target=f"under the {QUOTA_PER_MINUTE}/min organization quota",
                passed=per_minute < QUOTA_PER_MINUTE,
                ratio=round(per_minute / QUOTA_PER_MINUTE, 3),
            ),
        ],
        "details": {
            "proxies": n,
            "latency_ms": LATENCY * 1000,
            "waves": waves,
            "bake_s_per_wave": bake,
            "bake_total_s": bake * waves,
            "stats_calls": stats.calls,
            "store_writes": store.writes,
            "ticks": ticks,
        },
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(smoke="--smoke" in sys.argv), indent=2))
