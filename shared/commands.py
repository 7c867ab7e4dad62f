"""What ``on_command`` does with each command message (schema: README "Commands", shared.events).

Work that fits in one function invocation runs inline (one service, one secret); fleet-wide work
starts the matching Cloud Run job so that it gets a job's timeout and retries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared import events
from shared.config import Settings
from shared.errors import InputError
from shared.logging import event, get_logger

_log = get_logger("commands")


def run(
    command: events.Command,
    settings: Settings,
    *,
    registrar: Callable[[], Any],
    jobs: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Execute one command; returns a summary that is also logged."""
    if command.command == "reconcile":
        apply = command.mode == "apply"
        if command.service == "all":
            return _start_job(
                jobs, settings.reconcile_job, {"GATEHOUSE_RECONCILE_MODE": command.mode}, command
            )
        from shared.registration.plan import ServiceRef

        ref = ServiceRef.parse(str(command.service))
        report = registrar().reconcile_service(ref, apply=apply)
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
    if command.command == "tickets":
        return _start_job(jobs, settings.tickets_job, {"GATEHOUSE_TICKETS_MODE": command.mode}, command)
    raise InputError(f"command {command.command!r} is not available in this installation yet")


def _start_job(
    jobs: Callable[[], Any] | None, job: str, env: dict[str, str], command: events.Command
) -> dict[str, Any]:
    if jobs is None or not job:
        raise InputError(f"command {command.command!r} for all needs a job name in settings")
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
