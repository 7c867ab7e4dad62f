"""Cloud Run job ``reconcile``: the nightly full sweep (and `{"command": "reconcile", "service": "all"}`).

Catches what events missed: lost messages, manual edits in Apigee (drift), proxies whose service
is gone (orphans). Exit code: 0 when every service converged, 1 when any failed (Cloud Run then
retries the task), 2 for bad settings (retrying would not help).
"""

from __future__ import annotations

import os
import sys

from gatehouse.config import Settings, load_settings
from gatehouse.errors import InputError, TransientError
from gatehouse.logging import bound, configure, event, get_logger, new_correlation_id

_log = get_logger("jobs.reconcile")


def main() -> int:
    try:
        settings = load_settings()
    except InputError as exc:
        configure()
        event(_log, "invalid settings", level=40, error=str(exc))
        return 2
    configure(project=settings.firestore_project)
    mode = os.environ.get("GATEHOUSE_RECONCILE_MODE", "apply")
    apply = mode == "apply"
    from gatehouse import runtime

    if mode.startswith("rollout-"):
        return _rollout(settings, mode.removeprefix("rollout-"))

    with bound(
        correlation_id=new_correlation_id(),
        component="reconcile-job",
        execution=os.environ.get("CLOUD_RUN_EXECUTION"),
    ):
        try:
            report = runtime.registrar(settings).sweep(apply=apply)
        except InputError as exc:
            event(_log, "reconcile refused", level=40, error=str(exc))
            return 2
        except TransientError as exc:
            event(_log, "reconcile interrupted; Cloud Run will retry the task", level=40, error=str(exc))
            return 1
        counts: dict[str, int] = {}
        for r in report.reports:
            counts[r.outcome.result] = counts.get(r.outcome.result, 0) + 1
        event(
            _log,
            "reconcile finished",
            mode="apply" if apply else "plan",
            counts=counts,
            failed=[r.ref.key for r in report.failed],
        )
        published = publish_inventory(settings) if settings.inventory_bucket else True
        return 1 if report.failed or not published else 0


def publish_inventory(settings: Settings) -> bool:
    """Write inventory.html and inventory.json to GATEHOUSE_INVENTORY_BUCKET (after the sweep, so
    the page shows its outcomes). False when it could not: the job then fails and is retried."""
    from gatehouse import runtime
    from gatehouse.adapters.storage import BucketPublisher
    from gatehouse.errors import GatehouseError
    from gatehouse.inventory.render import to_html, to_json

    try:
        found = runtime.inventory(settings)
        html, doc = to_html(found), to_json(found)
        urls = BucketPublisher(
            settings.inventory_bucket, project=runtime.firestore_project(settings)
        ).publish(
            {
                "inventory.html": (html.encode(), "text/html; charset=utf-8"),
                "inventory.json": (doc.encode(), "application/json"),
            }
        )
    except GatehouseError as exc:
        event(_log, "inventory not published", level=40, error=str(exc))
        return False
    event(
        _log,
        "inventory published",
        urls=urls,
        services=len(found.services),
        with_problems=found.problem_count,
        incomplete=list(found.incomplete),
        calls=dict(found.calls),
    )
    return True


def _rollout(settings: object, action: str) -> int:
    """``{"command": "rollout", "action": ...}``: tick (start a rollout when the configuration
    changed, then move the active one on), advance, resume or abort."""
    from gatehouse import runtime

    with bound(correlation_id=new_correlation_id(), component="rollout", action=action):
        try:
            if action in ("tick", "advance"):
                result = runtime.rollout_tick(settings, accept_inconclusive=action == "advance")  # type: ignore[arg-type]
            elif action in ("resume", "abort"):
                engine = runtime.rollout_engine(settings)  # type: ignore[arg-type]
                result = engine.resume() if action == "resume" else engine.abort()
            else:
                event(_log, "unknown rollout action", level=40, action=action)
                return 2
        except InputError as exc:
            event(_log, "rollout refused", level=40, error=str(exc))
            return 2
        except TransientError as exc:
            event(_log, "rollout interrupted; the next tick goes on", level=40, error=str(exc))
            return 1
        event(
            _log,
            "rollout step finished",
            state=result.state if result is not None else None,
            rollout=result.id if result is not None else None,
            wave=result.wave + 1 if result is not None else None,
        )
        return 0


if __name__ == "__main__":
    sys.exit(main())
