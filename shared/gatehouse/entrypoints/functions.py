"""Cloud Run functions (CloudEvent signature), served by functions-framework.

``on_run_event``: Cloud Run admin-activity audit entries (log sink -> Pub/Sub, or Eventarc).
``on_command``: command messages on the commands topic (see README, "Commands").

Each decodes its input, calls one use case and maps the result onto Pub/Sub's contract:
raise for a transient failure (the message is redelivered), return for success, bad input and
permanent failures (the message is acknowledged, never redelivered in a loop).

Requests functions-framework cannot read. Before any gatehouse code runs, functions-framework parses
the body into a CloudEvent (binary ``ce-*`` headers, structured ``application/cloudevents+json``, or
a raw Pub/Sub push / legacy background event). Several bodies make that parsing raise -- a JSON
array or scalar where it expects an object, JSON nested 100,000 levels deep (RecursionError), bytes
that are not UTF-8 -- and Flask then answers 500, which to a push subscription means "redeliver".
``install`` (run on the functions-framework app when this module is loaded into it) answers them
instead, with one WARNING log line and a short JSON body that does not echo the request:

- 400: the body is not a CloudEvent functions-framework can read (any exception, or 400/415, raised
  before ``on_run_event``/``on_command`` is entered);
- 413: the body is over ``MAX_BODY_BYTES`` (Flask's ``MAX_CONTENT_LENGTH``; not read, not parsed).

Why a 4xx and not a 2xx ack: neither Pub/Sub push nor Eventarc can send such a body. A push request
is a JSON object (``{"message": ..., "subscription": ...}``, data base64, depth 3) of at most
~13.4 MB for Pub/Sub's 10 MB message limit, under ``MAX_BODY_BYTES``; Eventarc sends binary-mode
CloudEvents whose data is a Google-made JSON document. So only a direct HTTP caller gets the 4xx,
and it does not retry on its own; were a misconfigured subscription ever to send one (an unwrapped
push endpoint), its dead-letter policy bounds the redeliveries. What Pub/Sub can send and
functions-framework can read -- including a binary-mode body that is a JSON array, not JSON, nested
deeper than gatehouse's 64 levels (but not so deep that the parser itself fails: that is a 400) or
over 1 MiB of data -- reaches gatehouse, which logs it as bad input and acknowledges it (200), as
above. An exception raised once a function is entered (a transient failure, or a bug) still
answers 500 so that Pub/Sub redelivers.

Log lines. Every log record of the process is one JSON line: gatehouse's loggers log handled
errors as type and message; the root logger, Flask's app logger, werkzeug, Python warnings and
gunicorn's error log log uncaught exceptions with the redacted traceback in ``stack_trace``, which
Cloud Error Reporting reads. gunicorn installs its handlers after the app is created, so they are
switched to JSON in the worker, at its first request; the gunicorn master's own notices (worker
timeouts) keep gunicorn's one-line text format, and a crash while functions-framework imports the
source (before ``install``) is printed by Python as a plain traceback.
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime
from typing import Any

import flask
import functions_framework
from cloudevents.http import CloudEvent
from flask.typing import ResponseReturnValue
from functions_framework import execution_id
from werkzeug.exceptions import HTTPException

from gatehouse import events
from gatehouse.config import Settings, load_settings
from gatehouse.errors import GatehouseError, InputError, TransientError
from gatehouse.logging import (
    bound,
    configure,
    configure_framework,
    event,
    get_logger,
    json_formatted,
    new_correlation_id,
    redact,
)

_log = get_logger("functions")

# Above the largest push request Pub/Sub can make (a 10 MB message is ~13.4 MB once base64-encoded
# in its envelope), below Cloud Run's 32 MiB request limit.
MAX_BODY_BYTES = 16 * 1024 * 1024
_TARGETS = frozenset({"on_run_event", "on_command"})
_EXTENSION = "gatehouse"
_ENTERED = "gatehouse_entered"
_REASON_CHARS = 200


def install(app: flask.Flask) -> None:
    """Answer unreadable requests with a 4xx and make the app's logs JSON lines; idempotent."""
    if app.extensions.get(_EXTENSION):
        return
    app.extensions[_EXTENSION] = True
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.register_error_handler(Exception, _unhandled)
    if not logging.getLogger("gatehouse").handlers:
        configure()  # until _settings() configures it with the project, at the first event
    configure_framework((app.name,))


def _serves_gatehouse(app: flask.Flask) -> bool:
    """A functions-framework app (create_app wraps its WSGI app first) serving one of our targets."""
    return app.name in _TARGETS and isinstance(app.wsgi_app, execution_id.WsgiMiddleware)


def _on_app_context(app: flask.Flask, **_: Any) -> None:
    # create_app pushes an app context before it executes the source, and functions/main.py's
    # import of this module only runs the first time: this covers every later create_app.
    if _serves_gatehouse(app) and not getattr(app, "_got_first_request", True):
        install(app)
    _adopt_gunicorn_logs()


def _adopt_gunicorn_logs() -> None:
    """gunicorn sets its error log's handlers after the app is created: switch them to JSON."""
    for handler in logging.getLogger("gunicorn.error").handlers:
        json_formatted(handler)  # a no-op once done


def _entered() -> None:
    """Mark the request as handed to gatehouse: from here on an exception means 500 (redeliver)."""
    if flask.has_request_context():
        setattr(flask.g, _ENTERED, True)


def _unhandled(exc: Exception) -> ResponseReturnValue:
    """Flask error handler: 4xx for what functions-framework could not read, the rest unchanged."""
    entered = bool(flask.g.get(_ENTERED, False))
    if isinstance(exc, HTTPException):
        if entered or exc.code not in (400, 413, 415):
            return exc
        return _reject(exc.code, exc.name, exc.name)
    if entered:
        raise exc  # Flask logs it (one JSON line, stack_trace) and answers 500: Pub/Sub redelivers
    detail = f"{type(exc).__name__}: {exc}"
    return _reject(400, f"not a CloudEvent ({type(exc).__name__})", detail)


def _reject(status: int, answer: str, detail: str) -> ResponseReturnValue:
    """The answer names the problem; the detail (parser messages quote the body) is only logged."""
    request = flask.request
    event(
        _log,
        "request rejected before decoding",
        level=logging.WARNING,
        status=status,
        reason=redact(detail[:_REASON_CHARS]),
        path=request.path,
        content_type=request.content_type,
        content_length=request.content_length,
        cloudevent_id=request.headers.get("ce-id"),
    )
    return flask.jsonify(error=answer), status


if flask.has_app_context() and _serves_gatehouse(flask.current_app):
    install(flask.current_app)
flask.appcontext_pushed.connect(_on_app_context)


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
    _entered()
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
        except GatehouseError as exc:  # permanent: redelivery would fail the same way, for ever
            event(_log, "permanent failure; acknowledged", level=logging.ERROR, error=str(exc))


@functions_framework.cloud_event
def on_command(cloud_event: CloudEvent) -> None:
    _entered()
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
        except GatehouseError as exc:  # permanent: redelivery would fail the same way, for ever
            event(
                _log,
                "permanent failure; acknowledged",
                level=logging.ERROR,
                error=str(exc),
                kind=decoded.kind,
            )
