"""Management calls per service event, counted by the stand-ins themselves: a NEW service with its
API product (target <= 11: 9 before products, plus the product's read and create), the same with a
service-path OpenAPI spec (target <= 13, the figure issue 11 sets for a product and a spec), and an
UNCHANGED one with and without a spec (target <= 3 reads, 0 writes: the product and spec labels on
the proxy say both are current without reading them).

What is measured. The real path: on a full local stack, a service is created through the official
Cloud Run client; the Cloud Run stand-in publishes its two audit entries, the Pub/Sub emulator
pushes them to ``on_run_event``, which registers the service. Then the same service is redeployed
with a new image (a new revision: the most common event, and one its proxy does not care about).
Before each step both stand-ins' counters are reset; after the outcome is recorded in Firestore
their ``/_standin/stats`` are read, and the benchmark's own Cloud Run calls (counted on its client's
session, by the same discovery routes) are subtracted. Calls are listed by route, split into reads
and writes (``generateDeployChangeReport`` and ``testIamPermissions`` are POSTs that only read).

The same two figures are also taken in-process, with ``Registrar.reconcile_service`` against fresh
stand-ins of the same configuration (no audit publishing, so nothing else runs): that is what one
event costs by construction, and the real-path figure must not exceed it (duplicate deliveries,
retries or the ``operation.first`` entry would show up as a difference).

Why that baseline. The target is absolute; the in-process figure is the floor the event path is
compared to. A third figure measures, in the same in-process run, a new service on the ``public``
profile, which gets no API product: what registering cost before products, so the product's own
price (a read and a create) shows as the difference.
"""

from __future__ import annotations

import time
from typing import Any

from bench.harness import (
    CallCount,
    Outcomes,
    RunFleet,
    environment,
    figure,
    local_stack,
    log,
    read_stats,
    reset_stats,
    sized,
    wait_until,
)
from gatehouse.local.samples import SAMPLE_SPEC, serve_spec
from gatehouse.local.stack import ENVIRONMENT, ORGANIZATION, settings_env

TARGET_NEW = 11  # 9 before products, plus the product's read and create
TARGET_NEW_WITH_SPEC = 13  # issue 11: a product and a spec on top of the 9
SPEC = {"gatehouse.dev/openapi": "/openapi.yaml"}
TARGET_UNCHANGED_READS = 3
OUTCOME_TIMEOUT = 60.0


def _through_pubsub(state: dict[str, Any]) -> dict[str, CallCount]:
    fleet = RunFleet(state)
    outcomes = Outcomes(state["project"])
    name, counts = "calls-real", {}
    for step, expect in (("new", "registered"), ("unchanged", "unchanged")):
        reset_stats(state)
        fleet.own_calls.clear()
        started = time.perf_counter()
        if step == "new":
            fleet.create(name)
        else:
            fleet.redeploy(name, "img:2")
        outcomes.wait(fleet.key(name), expect, timeout=OUTCOME_TIMEOUT)
        time.sleep(1.0)  # let any late delivery (a duplicate, a retry) show in the counters too
        counts[step] = CallCount.between(read_stats(state), fleet.own_calls)
        log(
            f"calls_per_service via Pub/Sub, {step}: {counts[step].total:g} calls "
            f"({time.perf_counter() - started:.2f}s to outcome {expect!r} + 1 s settle)"
        )
    # a service whose spec is a path on it: the spec is read as the proxy service account (one ID
    # token, one read of the service) when new and when its ready revision changes, not otherwise
    spec_name = "calls-spec"
    serve_spec(state, spec_name, "/openapi.yaml", SAMPLE_SPEC)
    for step, expect in (
        ("new-spec", "registered"),
        ("unchanged-spec", "unchanged"),
        ("revision-spec", "unchanged"),
    ):
        reset_stats(state)
        fleet.own_calls.clear()
        since = time.time()
        if step == "new-spec":
            fleet.create(spec_name, annotations=SPEC)
        elif step == "unchanged-spec":
            fleet.relabel(spec_name, {"apigee-expose": "true", "team": "bench"})
        else:
            fleet.redeploy(spec_name, "img:2", annotations=SPEC)
        _wait_recorded(outcomes, fleet.key(spec_name), expect, since)
        time.sleep(1.0)
        counts[step] = CallCount.between(read_stats(state), fleet.own_calls)
        log(f"calls_per_service via Pub/Sub, {step}: {counts[step].total:g} calls")
    return counts


def _recorded(outcomes: Outcomes, key: str, expect: str, since: float) -> bool:
    result, at = outcomes.read(key).get(key, ("", 0.0))
    return result == expect and at >= since


def _wait_recorded(outcomes: Outcomes, key: str, expect: str, since: float) -> None:
    """Until an outcome ``expect`` for ``key`` is recorded after ``since`` (an earlier step may have
    left the same result behind)."""
    wait_until(
        lambda: _recorded(outcomes, key, expect, since), timeout=OUTCOME_TIMEOUT, what=f"{key} -> {expect}"
    )


def _in_process(state: dict[str, Any]) -> dict[str, CallCount]:
    from gatehouse import runtime
    from gatehouse.config import load_settings
    from gatehouse.local.standins import apigee, cloudrun
    from gatehouse.registration.plan import ServiceRef

    with (
        apigee.start(org=ORGANIZATION, envs=(ENVIRONMENT, "prod")) as apigee_standin,
        cloudrun.start() as cloudrun_standin,
    ):
        fresh = {**state, "apigee": apigee_standin.url, "cloudrun": cloudrun_standin.url}
        with environment(settings_env(fresh)):
            fleet = RunFleet(fresh)
            fleet.create("calls-inproc")
            registrar = runtime.registrar(load_settings())
            ref = ServiceRef(state["project"], state["region"], "calls-inproc")
            fleet.create("calls-public", labels={"apigee-expose": "true", "apigee-profile": "public"})
            public = ServiceRef(state["project"], state["region"], "calls-public")
            counts = {}
            for step, expect, which in (
                ("new", "registered", ref),
                ("unchanged", "unchanged", ref),
                ("no-product", "registered", public),
            ):
                reset_stats(fresh)
                outcome = registrar.reconcile_service(which, apply=True).outcome
                if outcome.result != expect:
                    raise RuntimeError(f"in-process {step}: outcome {outcome.result!r}, expected {expect!r}")
                if (step == "no-product") != (outcome.product is None):
                    raise RuntimeError(f"in-process {step}: product {outcome.product!r}")
                counts[step] = CallCount.between(read_stats(fresh))
                log(f"calls_per_service in-process, {step}: {counts[step].total:g} calls")
    return counts


# smoke size: the same code at sizes that finish in seconds (`python -m bench --smoke`, run by make test)
SMOKE: dict[str, Any] = {}


def run(smoke: bool = False) -> dict[str, Any]:
    with sized(globals(), SMOKE if smoke else {}):
        return _measure()


def _measure() -> dict[str, Any]:
    with local_stack("calls_per_service") as state:
        real = _through_pubsub(state)
        floor = _in_process(state)
    new, unchanged = real["new"], real["unchanged"]
    new_spec, unchanged_spec, revision_spec = real["new-spec"], real["unchanged-spec"], real["revision-spec"]
    return {
        "figures": [
            figure(
                "management calls per NEW service with a service-path OpenAPI spec",
                new_spec.total,
                "calls",
                baseline=new.total,
                baseline_label="a new service without a spec, same run",
                target=f"<= {TARGET_NEW_WITH_SPEC} (with its API product)",
                passed=new_spec.total <= TARGET_NEW_WITH_SPEC,
                calls=new_spec.to_dict(),
            ),
            figure(
                "management calls per UNCHANGED service with a spec (labels changed, same ready revision)",
                unchanged_spec.total,
                "calls",
                baseline=unchanged.total,
                baseline_label="an unchanged service without a spec, same run",
                target=f"<= {TARGET_UNCHANGED_READS} reads, 0 writes",
                passed=unchanged_spec.reads <= TARGET_UNCHANGED_READS and unchanged_spec.writes == 0,
                calls=unchanged_spec.to_dict(),
            ),
            figure(
                "calls when a spec'd service gets a new revision with the same spec (spec read again)",
                revision_spec.total,
                "calls",
                baseline=unchanged.total,
                baseline_label="an unchanged service without a spec, same run",
                target="0 writes",
                passed=revision_spec.writes == 0,
                calls=revision_spec.to_dict(),
            ),
            figure(
                "management calls per NEW service (create -> Pub/Sub -> on_run_event)",
                new.total,
                "calls",
                baseline=floor["new"].total,
                baseline_label="in-process Registrar.reconcile_service of a new service",
                target=f"<= {TARGET_NEW}",
                passed=new.total <= TARGET_NEW,
                calls=new.to_dict(),
                baseline_calls=floor["new"].to_dict(),
            ),
            figure(
                "management calls per UNCHANGED service (redeploy -> Pub/Sub -> on_run_event)",
                unchanged.total,
                "calls",
                baseline=floor["unchanged"].total,
                baseline_label="in-process Registrar.reconcile_service of a registered service",
                target=f"<= {TARGET_UNCHANGED_READS} reads, 0 writes",
                passed=unchanged.reads <= TARGET_UNCHANGED_READS and unchanged.writes == 0,
                calls=unchanged.to_dict(),
                baseline_calls=floor["unchanged"].to_dict(),
            ),
            figure(
                "management calls per NEW service: with its API product vs without (public profile)",
                floor["new"].total,
                "calls",
                baseline=floor["no-product"].total,
                baseline_label="in-process new service on the public profile (no API product)",
                target="<= 2 more calls than without a product (one read, one create)",
                passed=floor["new"].total - floor["no-product"].total <= 2,
                calls=floor["new"].to_dict(),
                baseline_calls=floor["no-product"].to_dict(),
            ),
        ],
    }
