"""What ``on_command`` does with each message on the commands topic (schema: README "Commands",
``gatehouse.events``) and with Secret Manager ``SECRET_ROTATE`` notifications.

Work that fits in one function invocation runs inline (one service, one secret); fleet-wide work
starts the matching Cloud Run job, so that it gets a job's timeout, retries and task sharding.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gatehouse import events
from gatehouse.config import Settings
from gatehouse.errors import InputError, TransientError
from gatehouse.logging import event, get_logger
from gatehouse.ports import JobLauncher

_log = get_logger("commands")


def run(
    command: events.Command,
    settings: Settings,
    *,
    registrar: Callable[[], Any],
    jobs: Callable[[], JobLauncher] | None = None,
    published: datetime | None = None,
) -> dict[str, Any]:
    """Execute one command; returns a summary that is also logged (one line per command)."""
    if command.command == "reconcile":
        if command.service == "all":
            return _start_job(
                jobs, settings.reconcile_job, {"GATEHOUSE_RECONCILE_MODE": command.mode}, command
            )
        return _reconcile_one(command, registrar)
    if command.command == "rollout":
        # a wave's deploys or an abort's restores outlast a function invocation: the reconcile job
        # runs the verb, under the rollout lease
        return _start_job(
            jobs, settings.reconcile_job, {"GATEHOUSE_RECONCILE_MODE": f"rollout-{command.action}"}, command
        )
    if command.command == "tickets":
        return _start_job(jobs, settings.tickets_job, {"GATEHOUSE_TICKETS_MODE": command.mode}, command)
    # rotate: force means "rotate what predates this command"; the publish time keeps a redelivered
    # command from rotating twice
    force_before = published if command.force else None
    target = str(command.secret)
    if target == "all":
        env: dict[str, str] = {"GATEHOUSE_ROTATION_MODE": command.mode}
        if force_before is not None:
            env["GATEHOUSE_ROTATION_FORCE_BEFORE"] = force_before.isoformat()
        return _start_job(jobs, settings.rotate_job, env, command)
    return rotate_one(
        str(command.secret),
        settings,
        plan=command.mode == "plan",
        force_before=force_before,
        request_id=command.request_id,
        trigger="command",
    )


def _reconcile_one(command: events.Command, registrar: Callable[[], Any]) -> dict[str, Any]:
    from gatehouse.registration.plan import ServiceRef

    ref = ServiceRef.parse(str(command.service))
    report = registrar().reconcile_service(ref, apply=command.mode == "apply")
    summary = {
        "command": "reconcile",
        "mode": command.mode,
        "service": ref.key,
        "result": report.outcome.result,
        "reason": report.outcome.reason,
        "actions": report.plan.describe() if report.plan else [],
        "request_id": command.request_id,
    }
    event(_log, f"reconcile {command.mode}: {ref.key} -> {report.outcome.result}", **summary)
    return summary


def on_secret_event(
    notification: events.SecretEvent, settings: Settings, published: datetime | None
) -> dict[str, Any]:
    """``SECRET_ROTATE`` rotates that one secret now (what predates the notification); every other
    Secret Manager event is only logged."""
    if notification.event_type != "SECRET_ROTATE":
        summary: dict[str, Any] = {
            "event_type": notification.event_type,
            "secret": notification.secret,
            "action": "none",
        }
        event(_log, f"secret event {notification.event_type} needs no action", **summary)
        return summary
    return rotate_one(
        notification.secret,
        settings,
        plan=False,
        force_before=published,
        request_id=None,
        trigger="SECRET_ROTATE",
        revoke=False,  # a scheduled rotation, not a leak: the old credential keeps its grace
    )


def rotate_one(
    secret: str,
    settings: Settings,
    *,
    plan: bool,
    force_before: datetime | None,
    request_id: str | None,
    trigger: str,
    revoke: bool | None = None,
) -> dict[str, Any]:
    """Run the rotation protocol inline for one secret (still guarded by its state and etags).

    A target another runner holds (``busy``: its rotation record is inside the create-window lease)
    raises TransientError, so Pub/Sub redelivers the message until the rotation can be completed
    (a forced rotation would otherwise be acknowledged and forgotten); the force is also recorded
    with the rotation's intent, so the daily run completes it if the redeliveries give up. A
    secret outside the rotation projects is acknowledged with the reason (nothing is changed)."""
    from gatehouse import runtime
    from gatehouse.rotation.job import run as rotate
    from gatehouse.rotation.settings import RotationSettings

    rotation = RotationSettings.from_env(os.environ)
    report = rotate(
        runtime.rotation_ports(settings, rotation),
        rotation,
        plan_only=plan,
        secret=secret,
        force_before=force_before,
        revoke=revoke,
    )
    target = report.targets[0] if report.targets else None
    summary = {
        "command": "rotate",
        "trigger": trigger,
        "mode": "plan" if plan else "apply",
        "secret": secret,
        "status": target.status if target else "not found",
        "reason": target.reason if target else "; ".join(report.errors),
        "actions": [a.step for a in target.actions] if target else [],
        "request_id": request_id,
    }
    event(
        _log,
        f"rotate {summary['mode']}: {secret} -> {summary['status']}",
        level=40 if report.exit_code else 20,
        **summary,
    )
    if target is not None and target.status == "busy" and not plan:
        raise TransientError(f"rotate {secret}: {target.reason}; redeliver to complete it")
    return summary


def _start_job(
    jobs: Callable[[], Any] | None, job: str, env: dict[str, str], command: events.Command
) -> dict[str, Any]:
    if jobs is None or not job:
        raise InputError(
            f"command {command.command!r} for everything needs its Cloud Run job in settings "
            f"(GATEHOUSE_{command.command.upper()}_JOB)"
        )
    execution = jobs().run_job(job, env)
    summary = {
        "command": command.command,
        "mode": command.mode,
        "job": job,
        "execution": execution,
        "request_id": command.request_id,
    }
    event(_log, f"started job {job}", **summary)
    return summary
