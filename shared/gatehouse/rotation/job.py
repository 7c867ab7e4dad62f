"""The rotation job's use case: find the targets, keep this task's share, run each, report.

Entry points (the ``rotate-credentials`` Cloud Run job, ``on_command`` for
``{"command": "rotate", "secret": ..., "mode": "plan"|"apply"}``, the CLI) build the ports and
:class:`RotationSettings`, call :func:`run` and exit with ``report.exit_code``: 0 when every target
is fine, 1 when any target failed or was refused or a project could not be listed (Cloud Run then
retries the task; the retry resumes instead of repeating). One target's failure never stops the
others. Targets are listed with one paged ListSecrets per project (``labels.gatehouse-rotate:*``).
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from gatehouse.errors import GatehouseError, NotFoundError
from gatehouse.logging import bound, event, get_logger, redact
from gatehouse.rotation import shard as sharding
from gatehouse.rotation.executor import RunState, TargetRunner
from gatehouse.rotation.ports import RotationPorts, SecretInfo
from gatehouse.rotation.report import RunReport, TargetReport
from gatehouse.rotation.settings import RotationSettings
from gatehouse.rotation.target import (
    LIST_FILTER,
    ROTATE_LABEL,
    Kind,
    Target,
    TargetError,
    is_target,
    parse_target,
)

_log = get_logger("rotation")

Progress = Callable[[TargetReport], None]


def run(
    ports: RotationPorts,
    settings: RotationSettings,
    *,
    plan_only: bool = False,
    shard: tuple[int, int] = (0, 1),
    secret: str | None = None,
    force_before: datetime | None = None,
    revoke: bool | None = None,
    progress: Progress | None = None,
    workers: int = 1,
) -> RunReport:
    """Rotate what is due (``plan_only``: only say what would be done).

    ``secret`` limits the run to one ``projects/P/secrets/S`` (a command or a ``SECRET_ROTATE``
    notification; still age-gated). ``force_before`` makes a rotation due for every target whose
    current credential was created before that instant (an operator's "rotate now", e.g. after a
    leak); passing the command's publish time keeps redelivered commands from rotating twice. The
    force is recorded with the rotation's intent, so a run that did not receive it still completes
    it. ``revoke`` (default: whenever ``force_before`` is given) makes the force a leak response:
    the replaced credential is disabled as soon as the new one has passed its test, not after
    grace 1; a ``SECRET_ROTATE`` notification passes False.

    ``secret`` may name its project by id or by number (Secret Manager answers with the number):
    both are one secret. A secret outside ``settings.projects`` is left alone: its report says so
    (status ``skipped``) and nothing is written.
    ``workers`` targets run at once: each target's steps stay strictly in order (every step re-reads
    its secret), but targets are independent (one secret per account), and the run is bound by API
    latency, not CPU.
    """
    sharding.check(*shard)
    started = ports.clock.now()
    run_id = f"run-{started:%Y%m%dt%H%M%S}-{secrets.token_hex(3)}"
    notes: list[str] = []
    if not settings.job_identity:
        notes.append("the job's own identity is not configured: it cannot be excluded from rotation")
    with bound(correlation_id=run_id, component="rotation"):
        listed, errors, scope = _list(ports, settings)
        reports: list[TargetReport] = []
        if secret is not None and secret not in listed:
            found = _single(ports, settings, secret, listed, scope)
            if isinstance(found, SecretInfo):
                secret = found.name
                listed.setdefault(secret, found)
            else:
                reports.append(found)
        targets, invalid = _parse(listed, settings)
        # a single secret that is not a valid listed target was reported above
        names = sorted(listed) if secret is None else [secret] if secret in listed else []
        state = RunState(settings)

        def one(name: str) -> TargetReport:
            if name in invalid:
                return TargetReport(secret=name, status="failed", reason=invalid[name])
            with bound(correlation_id=run_id, component="rotation", secret_name=name):
                runner = TargetRunner(
                    targets[name],
                    ports,
                    state,
                    plan_only=plan_only,
                    force_before=force_before,
                    revoke=force_before is not None if revoke is None else revoke,
                )
                return runner.run_target()

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for report in pool.map(one, sharding.select(names, *shard)):
                reports.append(report)
                if progress is not None:
                    progress(report)
        finished = ports.clock.now()
        result = RunReport(
            run_id=run_id,
            mode="plan" if plan_only else "apply",
            holder=settings.holder,
            started=started,
            finished=finished,
            shard=shard,
            secret=secret,
            job_identity=settings.job_identity,
            targets=tuple(reports),
            errors=tuple(errors),
            notes=tuple(notes),
        )
        event(
            _log,
            "rotation run finished",
            level=logging.WARNING if result.exit_code else logging.INFO,
            mode=result.mode,
            counts=result.counts(),
            failed=[t.secret for t in result.failed],
            errors=list(errors),
        )
    return result


def _project_of(name: str) -> str:
    return name.split("/")[1] if name.startswith("projects/") and name.count("/") >= 3 else ""


def _list(
    ports: RotationPorts, settings: RotationSettings
) -> tuple[dict[str, SecretInfo], list[str], set[str]]:
    """The targets (by the names Secret Manager answers with), the listing errors, and the scope:
    every way the projects are named (ids, the known numbers, the numbers the listing answered)."""
    listed: dict[str, SecretInfo] = {}
    errors: list[str] = []
    scope = set(settings.projects)
    scope |= {settings.project_numbers[p] for p in settings.projects if p in settings.project_numbers}
    scope |= {p for p, n in settings.project_numbers.items() if n in settings.projects}
    for project in settings.projects:
        parent = f"projects/{project}"
        try:
            for info in ports.secrets.list_secrets(parent, filter=LIST_FILTER):
                scope.add(_project_of(info.name))
                if is_target(info.labels):
                    listed[info.name] = info
        except GatehouseError as exc:
            errors.append(f"{parent}: secrets could not be listed: {redact(str(exc))}")
    return listed, errors, scope


def _single(
    ports: RotationPorts,
    settings: RotationSettings,
    secret: str,
    listed: dict[str, SecretInfo],
    scope: set[str],
) -> SecretInfo | TargetReport:
    """A secret named by a command that the listing did not return under that name: the secret
    (named as Secret Manager names it: project number or id, one secret either way) when it is a
    target in scope, else the report that answers the command. Out of scope changes nothing."""
    out_of_scope = TargetReport(
        secret=secret,
        status="skipped",
        reason=f"{secret} is outside the rotation projects (GATEHOUSE_ROTATION_PROJECTS: "
        f"{', '.join(settings.projects) or 'none'}): left alone",
    )
    try:
        info = ports.secrets.get_secret(secret)
    except NotFoundError:
        if _project_of(secret) not in scope:
            return out_of_scope
        return TargetReport(secret=secret, status="failed", reason=f"{secret} does not exist")
    except GatehouseError as exc:
        if _project_of(secret) not in scope:
            return out_of_scope
        return TargetReport(
            secret=secret, status="failed", reason=f"{secret} could not be read: {redact(str(exc))}"
        )
    if info.name in listed:
        return listed[info.name]
    if _project_of(secret) not in scope and _project_of(info.name) not in scope:
        return out_of_scope
    if not is_target(info.labels):
        return TargetReport(
            secret=secret,
            status="failed",
            reason=f"{secret} has no {ROTATE_LABEL} label: not a rotation target",
        )
    return info


def _parse(
    listed: dict[str, SecretInfo], settings: RotationSettings
) -> tuple[dict[str, Target], dict[str, str]]:
    """Validate every target; a service account may be held by one secret only (its keys' lifecycle
    has one owner: otherwise one secret's recovery would take another's fresh key for an orphan)."""
    targets: dict[str, Target] = {}
    invalid: dict[str, str] = {}
    for name, info in sorted(listed.items()):
        try:
            targets[name] = parse_target(name, info.labels, info.annotations, settings)
        except TargetError as exc:
            invalid[name] = str(exc)
    holders: dict[str, list[str]] = defaultdict(list)
    for name, target in sorted(targets.items()):
        if target.kind is Kind.SA_KEY and target.service_account:
            holders[target.service_account.lower()].append(name)
    for account, names in holders.items():
        for name in names[1:]:
            del targets[name]
            invalid[name] = (
                f"service account {account} is already rotated by {names[0]}; one secret per account"
            )
    return targets, invalid
