"""Cloud Run functions (CloudEvent signature), served by functions-framework.

``on_run_event``: Cloud Run admin-activity audit entries (log sink -> Pub/Sub, or Eventarc).
``on_command``: command messages on the commands topic (see README, "Commands").

Each decodes its input, calls one use case and maps the result onto Pub/Sub's contract:
raise for a transient failure (the message is redelivered), return for success, bad input and
permanent failures (the message is acknowledged, never redelivered in a loop).
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime
from typing import Any

import functions_framework
from cloudevents.http import CloudEvent

from gatehouse import events
from gatehouse.config import Settings, load_settings
from gatehouse.errors import InputError, TransientError
from gatehouse.logging import bound, configure, event, get_logger, new_correlation_id

_log = get_logger("functions")


@functools.cache
def _settings() -> Settings:
    settings = load_settings()
    configure(project=settings.firestore_project or (settings.projects[0] if settings.projects else None))
    return settings


@functools.cache
def _registrar() -> Any:
    from gatehouse import runtime

    return runtime.registrar(_settings())


@functools.cache
def _jobs() -> Any:
    from gatehouse import runtime

    return runtime.jobs(_settings())


def _published(cloud_event: CloudEvent) -> datetime | None:
    """When Pub/Sub accepted the message (the CloudEvent's time)."""
    try:
        published = datetime.fromisoformat(str(cloud_event["time"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None
    return published if published.tzinfo else published.replace(tzinfo=UTC)


def _age_seconds(cloud_event: CloudEvent) -> float:
    published = _published(cloud_event)
    return (datetime.now(UTC) - published).total_seconds() if published else 0.0


def _decode(cloud_event: CloudEvent) -> events.Event | None:
    try:
        return events.decode_cloud_event(cloud_event.get_attributes(), cloud_event.data)
    except InputError as exc:
        event(
            _log,
            "message rejected: bad input",
            level=logging.ERROR,
            error=str(exc),
            event_id=cloud_event.get("id"),
        )
        return None


def _give_up_or_raise(cloud_event: CloudEvent, exc: TransientError) -> None:
    """Redeliver transient failures, but not forever: the nightly reconcile catches up after that."""
    age = _age_seconds(cloud_event)
    if age > _settings().max_event_age_seconds:
        event(
            _log,
            "giving up on an old event after transient failures; the next reconcile will converge",
            level=logging.ERROR,
            error=str(exc),
            age_seconds=round(age),
        )
        return
    event(_log, "transient failure; Pub/Sub will redeliver", level=logging.WARNING, error=str(exc))
    raise exc


@functions_framework.cloud_event
def on_run_event(cloud_event: CloudEvent) -> None:
    _settings()
    with bound(
        correlation_id=new_correlation_id(),
        component="on_run_event",
        event_id=cloud_event.get("id"),
        trace=cloud_event.get("traceparent"),
    ):
        decoded = _decode(cloud_event)
        if decoded is None:
            return
        if not isinstance(decoded, events.ServiceChange):
            reason = (
                decoded.reason
                if isinstance(decoded, events.Ignored)
                else f"not an audit entry: {decoded.kind}"
            )
            event(_log, "event ignored", reason=reason)
            return
        if not decoded.final:
            event(_log, "operation started; waiting for its completion entry", service=decoded.service)
            return
        from gatehouse.registration.plan import ServiceRef

        ref = ServiceRef(decoded.project, decoded.region, decoded.service)
        try:
            _registrar().reconcile_service(ref, apply=True)
        except TransientError as exc:
            _give_up_or_raise(cloud_event, exc)
        except InputError as exc:
            event(_log, "configuration error", level=logging.ERROR, error=str(exc))


@functions_framework.cloud_event
def on_command(cloud_event: CloudEvent) -> None:
    _settings()
    with bound(correlation_id=new_correlation_id(), component="on_command", event_id=cloud_event.get("id")):
        decoded = _decode(cloud_event)
        if decoded is None:
            return
        from gatehouse import commands

        published = _published(cloud_event)
        try:
            if isinstance(decoded, events.SecretEvent):
                commands.on_secret_event(decoded, _settings(), published)
            elif isinstance(decoded, events.Command):
                commands.run(decoded, _settings(), registrar=_registrar, jobs=_jobs, published=published)
            else:
                event(_log, "not a command; ignored", kind=decoded.kind)
        except TransientError as exc:
            _give_up_or_raise(cloud_event, exc)
        except InputError as exc:
            event(_log, "command rejected", level=logging.ERROR, error=str(exc), kind=decoded.kind)
